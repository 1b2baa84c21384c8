"""Phase 2 data-plane checks: PostgreSQL as the ``shlink`` user (2.2) and Redis with Sentinel (2.3).

Every check takes its endpoint from the lab's params (``postgres.host/port``,
``redis.host/port/sentinel_ports``), so the same code runs against the sandbox
and, through a port-forward, against the homelab. Only 2.3.5 (persistence
across a restart) needs to restart something; it does that through the
sandbox's API and says ``skip`` with the reason on a lab it cannot restart.
"""

from __future__ import annotations

import os
import stat
import time
import uuid
from contextlib import closing

from labkit import stores
from labkit.checks.base import Context, Outcome, implements
from labkit.errors import ConfigError, ConnectError
from labkit.params import Lab
from labkit.secrets import Secret, resolve
from labkit.stores import Endpoint, PostgresConnection, RedisClient

__all__: list[str] = []  # checks register themselves; nothing here is called directly

_TIMEOUT_S = 3.0
_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}
_TEST_KEY = "test_key"


# -- PostgreSQL (2.2) -----------------------------------------------------------------------


def _postgres_endpoint(lab: Lab) -> str:
    return f"{lab.postgres.user}@{lab.postgres.host}:{lab.postgres.port}/{lab.postgres.database}"


def _postgres_password(lab: Lab) -> Secret | str:
    """The lab user's password, or why it cannot be read here (a reason to skip)."""
    ref = lab.postgres.password
    if ref.kind == "kubernetes":
        return f"the password lives in {ref.describe()}; reading it needs the cluster API"
    return resolve(ref, lab.base_dir)


def _postgres_session(context: Context) -> PostgresConnection | str:
    """One connection as the lab user, shared by 2.2.5/2.2.6; a string says why there is none."""

    def factory() -> PostgresConnection | str:
        lab = context.lab
        password = _postgres_password(lab)
        if isinstance(password, str):
            return password
        try:
            return stores.lab_postgres(lab, timeout_s=_TIMEOUT_S)
        except ConnectError as exc:
            return str(exc)

    def close(connection: object) -> None:
        if isinstance(connection, PostgresConnection):
            connection.close()

    result: PostgresConnection | str = context.resource("postgres.lab_user", factory, close)
    return result


@implements("2.2.5")
def postgres_connect(context: Context) -> Outcome:
    """Connect as the lab user to the lab database and ask who we are."""
    lab = context.lab
    expected = f"a session as {lab.postgres.user} on database {lab.postgres.database}"
    session = _postgres_session(context)
    if isinstance(session, str):
        if session.startswith("the password lives"):
            return Outcome.skip(session, _postgres_endpoint(lab))
        return Outcome.judge(False, expected, session, "psycopg.connect", _postgres_endpoint(lab))
    row = session.execute(
        "SELECT current_user, current_database(), current_setting('server_version')"
    ).fetchone()
    user, database, version = row if row else ("?", "?", "?")
    return Outcome.judge(
        user == lab.postgres.user and database == lab.postgres.database,
        expected,
        f"connected as {user} to {database} (PostgreSQL {version})",
        "SELECT current_user, current_database(), current_setting('server_version')",
        _postgres_endpoint(lab),
    )


@implements("2.2.6")
def postgres_database_and_user(context: Context) -> list[Outcome]:
    """The lab user can log in and owns the lab database; the server is the pinned major version."""
    lab = context.lab
    session = _postgres_session(context)
    if isinstance(session, str):
        if session.startswith("the password lives"):
            return [Outcome.skip(session, _postgres_endpoint(lab))]
        return [
            Outcome.judge(
                False,
                f"database {lab.postgres.database} owned by login role {lab.postgres.user}",
                session,
                "psycopg.connect",
                _postgres_endpoint(lab),
            )
        ]
    query = (
        "SELECT d.datname, pg_get_userbyid(d.datdba), r.rolcanlogin "
        "FROM pg_database d, pg_roles r WHERE d.datname = %s AND r.rolname = %s"
    )
    row = session.execute(query, (lab.postgres.database, lab.postgres.user)).fetchone()
    owner = row[1] if row else None
    can_login = bool(row and row[2])
    ownership = Outcome.judge(
        row is not None and owner == lab.postgres.user and can_login,
        f"database {lab.postgres.database} owned by login role {lab.postgres.user}",
        f"database {lab.postgres.database} owned by {owner}, login {can_login}"
        if row
        else f"no database {lab.postgres.database} or no role {lab.postgres.user}",
        query.replace("%s", "'{}'").format(lab.postgres.database, lab.postgres.user),
        "database and user",
    )
    version_row = session.execute("SELECT current_setting('server_version_num')::int").fetchone()
    major = int(version_row[0]) // 10000 if version_row else 0
    version = Outcome.judge(
        major == lab.versions.postgresql,
        f"PostgreSQL {lab.versions.postgresql} (versions.postgresql)",
        f"PostgreSQL {major}",
        "SELECT current_setting('server_version_num')",
        "server version",
    )
    return [ownership, version]


@implements("2.2.7")
def postgres_credentials_secret(context: Context) -> Outcome:
    """The secret holding the lab user's password exists, is readable, and is not world-readable."""
    ref = context.lab.postgres.password
    where = ref.describe()
    if ref.kind == "kubernetes":
        return Outcome.skip(f"{where}: checking a Kubernetes secret needs the cluster API", where)
    if ref.kind == "env":
        present = bool(os.environ.get(ref.env or ""))
        return Outcome.judge(
            present, f"{where} is set", "set" if present else "not set", f"env {ref.env}", where
        )
    path = context.lab.path(ref.file) if ref.file else None
    if path is None or not path.is_file():
        return Outcome.judge(False, f"{where} exists", "missing", f"stat {path}", where)
    mode = stat.S_IMODE(path.stat().st_mode)
    try:
        resolve(ref, context.lab.base_dir)  # refuses an empty or too short value, naming it
    except ConfigError as exc:
        return Outcome.judge(False, f"{where} readable", str(exc), f"read {path}", where)
    private = mode & 0o077 == 0
    return Outcome.judge(
        private,
        f"{where} exists, holds a value, mode without group/other access",
        f"present, holds a value, mode {mode:03o}",
        f"stat {path}",
        where,
    )


# -- Redis (2.3) ----------------------------------------------------------------------------


def _client(lab: Lab, endpoint: Endpoint) -> RedisClient:
    return stores.lab_redis(lab, endpoint, timeout_s=_TIMEOUT_S)


def _sentinel_views(lab: Lab) -> dict[str, str]:
    """What each Sentinel says the master is (``host:port``), or its error."""
    for sentinel in stores.lab_sentinels(lab):
        lab.require_allowed(sentinel.host)
    views = stores.sentinel_views(
        stores.lab_sentinels(lab), lab.redis.master_name, timeout_s=_TIMEOUT_S
    )
    return {
        str(where): (
            f"error: {view}"
            if isinstance(view, ConnectError)
            else str(view)
            if view is not None
            else "no master known"
        )
        for where, view in views.items()
    }


def _master(lab: Lab) -> Endpoint:
    """The master endpoint: where the Sentinels agree it is, else ``redis.host:port``."""
    views = set(_sentinel_views(lab).values())
    if len(views) == 1:
        agreed = next(iter(views))
        host, _, port = agreed.rpartition(":")
        if port.isdigit():
            return Endpoint(host.strip("[]"), int(port))
    return Endpoint(lab.redis.host, lab.redis.port)


def _master_client(context: Context) -> tuple[RedisClient, str]:
    def factory() -> tuple[RedisClient, str]:
        master = _master(context.lab)
        return _client(context.lab, master), str(master)

    def close(value: tuple[RedisClient, str]) -> None:
        value[0].close()

    result: tuple[RedisClient, str] = context.resource("redis.master", factory, close)
    return result


def _redis_down(expected: str, endpoint: str, exc: ConnectError) -> Outcome:
    return Outcome.judge(False, expected, str(exc), "redis-py", endpoint)


@implements("2.3.1")
def redis_running(context: Context) -> list[Outcome]:
    """The master answers with all replicas online, and every Sentinel agrees on that master."""
    lab = context.lab
    client, endpoint = _master_client(context)
    expected = f"role master with {lab.redis.replicas} online replica(s)"
    try:
        info = client.info("replication")
    except ConnectError as exc:
        return [_redis_down(expected, endpoint, exc)]
    replicas = [
        value for key, value in info.items() if key.startswith("slave") and isinstance(value, dict)
    ]
    online = [f"{r.get('ip')}:{r.get('port')}" for r in replicas if r.get("state") == "online"]
    outcomes = [
        Outcome.judge(
            info.get("role") == "master" and len(online) == lab.redis.replicas,
            expected,
            f"role {info.get('role')}, online replicas {online or 'none'}",
            "INFO replication",
            endpoint,
        )
    ]
    if not lab.redis.sentinel_ports:
        outcomes.append(Outcome.skip("no redis.sentinel_ports in params to ask", "sentinels"))
        return outcomes
    views = _sentinel_views(lab)
    agreed = set(views.values()) == {endpoint}
    outcomes.append(
        Outcome.judge(
            agreed,
            f"all {len(views)} Sentinels name {endpoint} as master of {lab.redis.master_name}",
            "; ".join(f"{where} -> {view}" for where, view in views.items()),
            f"SENTINEL GET-MASTER-ADDR-BY-NAME {lab.redis.master_name}",
            "sentinels",
        )
    )
    return outcomes


@implements("2.3.2")
def redis_ping(context: Context) -> Outcome:
    """PING the master: PONG."""
    client, endpoint = _master_client(context)
    try:
        answer = client.ping()
    except ConnectError as exc:
        return _redis_down("PONG", endpoint, exc)
    observed = "PONG" if answer in (True, "PONG") else repr(answer)
    return Outcome.judge(observed == "PONG", "PONG", observed, "PING", endpoint)


def _test_value(context: Context) -> str:
    value: str = context.resource("redis.test_value", lambda: f"test_value-{uuid.uuid4().hex[:8]}")
    return value


def _written(context: Context) -> list[str]:
    """The test values this run's 2.3.3 wrote (shared by the checks of one context)."""
    written: list[str] = context.resource("redis.written", list)
    return written


@implements("2.3.3")
def redis_write(context: Context) -> Outcome:
    """SET test_key to a value unique to this run (expires in 10 minutes)."""
    client, endpoint = _master_client(context)
    value = _test_value(context)
    try:
        answer = client.set(_TEST_KEY, value, ex=600)
    except ConnectError as exc:
        return _redis_down("OK", endpoint, exc)
    if answer is True:
        _written(context).append(value)  # 2.3.4 then reads it back, never writes it again
    return Outcome.judge(
        answer is True,
        "OK",
        "OK" if answer is True else repr(answer),
        f"SET {_TEST_KEY} {value}",
        endpoint,
    )


@implements("2.3.4")
def redis_read(context: Context) -> Outcome:
    """GET test_key returns the value this run wrote (by 2.3.3; written here if it did not run).

    After 2.3.3 wrote it, a missing key is a failure (the value was lost), not a reason to
    write it again.
    """
    client, endpoint = _master_client(context)
    value = _test_value(context)
    try:
        if not _written(context):
            client.set(_TEST_KEY, value, ex=600)
        answer = client.get(_TEST_KEY)
    except ConnectError as exc:
        return _redis_down(value, endpoint, exc)
    return Outcome.judge(answer == value, value, repr(answer), f"GET {_TEST_KEY}", endpoint)


def _wait_replicas(client: RedisClient, wanted: int, timeout_s: float) -> int:
    """Poll the restarted master until ``wanted`` replicas are online again; returns how many."""
    deadline = time.monotonic() + timeout_s
    online = 0
    while time.monotonic() < deadline:
        try:
            info = client.info("replication")
        except ConnectError:
            info = {}
        online = sum(
            1
            for key, item in info.items()
            if key.startswith("slave") and isinstance(item, dict) and item.get("state") == "online"
        )
        if online >= wanted:
            break
        time.sleep(0.2)
    return online


@implements("2.3.5")
def redis_persistence(context: Context) -> Outcome:
    """Write a key, restart the master through the sandbox, and read the key back."""
    lab = context.lab
    if lab.kind != "sandbox":
        return Outcome.skip(
            "restarting a Redis pod needs the cluster API; not available to this check yet"
        )
    if not context.apply:
        return Outcome.skip("restarts the Redis master to prove it: runs only with apply")
    from labkit.sandbox import Sandbox  # noqa: PLC0415 - the sandbox only exists on a sandbox lab

    master = _master(lab)
    endpoint = str(master)
    key, value = "labkit:persistence", uuid.uuid4().hex
    expected = f"{key} = {value} after a restart, still master"
    try:
        with closing(_client(lab, master)) as client:
            client.set(key, value)
            before = client.info("server").get("run_id")
            persistence = client.info("persistence")
        Sandbox(lab).restart_redis(master.port)
        with closing(_client(lab, master)) as client:
            after_info = client.info("server")
            answer = client.get(key)
            role = client.info("replication").get("role")
            online = _wait_replicas(client, lab.redis.replicas, 30.0)
            client.delete(key)
    except ConnectError as exc:
        return _redis_down(expected, endpoint, exc)
    restarted = after_info.get("run_id") != before
    return Outcome.judge(
        restarted and answer == value and role == "master",
        expected,
        f"restarted: {restarted} (run_id changed), {key} = {answer!r}, role {role}, "
        f"{online} replica(s) back online",
        f"SET {key}; restart {endpoint} (aof_enabled {persistence.get('aof_enabled')}); GET {key}",
        endpoint,
    )


def _bytes(size: str) -> int:
    lowered = size.lower()
    for unit in ("kb", "mb", "gb", "b"):
        if lowered.endswith(unit):
            return int(lowered[: -len(unit)]) * _UNITS[unit]
    return int(lowered)


@implements("2.3.6")
def redis_memory_limit(context: Context) -> Outcome:
    """maxmemory is what params say, and the memory in use is under it."""
    lab = context.lab
    client, endpoint = _master_client(context)
    limit = _bytes(lab.redis.maxmemory)
    expected = f"maxmemory {limit} ({lab.redis.maxmemory}), used_memory below it"
    try:
        configured = int(str(client.config_get("maxmemory").get("maxmemory", 0)))
        used = int(str(client.info("memory").get("used_memory", 0)))
    except ConnectError as exc:
        return _redis_down(expected, endpoint, exc)
    return Outcome.judge(
        configured == limit and 0 < used < configured,
        expected,
        f"maxmemory {configured}, used_memory {used}",
        "CONFIG GET maxmemory; INFO memory",
        endpoint,
    )


@implements("2.3.7")
def redis_eviction_policy(context: Context) -> Outcome:
    """CONFIG GET maxmemory-policy matches params."""
    lab = context.lab
    client, endpoint = _master_client(context)
    try:
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy")
    except ConnectError as exc:
        return _redis_down(lab.redis.maxmemory_policy, endpoint, exc)
    return Outcome.judge(
        policy == lab.redis.maxmemory_policy,
        lab.redis.maxmemory_policy,
        str(policy),
        "CONFIG GET maxmemory-policy",
        endpoint,
    )
