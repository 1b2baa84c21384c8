"""Connections to the lab's data stores: PostgreSQL (psycopg) and Redis (directly or via Sentinel).

The one module that builds their clients (the stand-in Shlink service keeps its own
pool, as Shlink would). Functions take an ``Endpoint`` (host, port) and credentials,
never a lab's sandbox fields, so an endpoint opened elsewhere (a port-forward the
cluster layer opens) is passed the same way as the sandbox's loopback ports. Every
client has timeouts and never retries behind its caller's back; every failure,
connecting or running a command, is a ``ConnectError`` naming the store and the
endpoint. The ``lab_*`` helpers read endpoints and secrets from a lab's params and
refuse an address outside its allow-list.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from labkit.errors import ConnectError
from labkit.params import Lab
from labkit.secrets import Secret, redact

__all__ = [
    "Endpoint",
    "PostgresConnection",
    "RedisClient",
    "Subscription",
    "lab_postgres",
    "lab_redis",
    "lab_redis_master",
    "lab_sentinels",
    "postgres",
    "postgres_errors",
    "redis_client",
    "sentinel_master",
    "sentinel_view",
    "sentinel_views",
]

POSTGRES_TIMEOUT_S = 5.0
REDIS_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Endpoint:
    """Where a store listens: host (name or address) and port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _last_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return str(redact(lines[-1] if lines else type(exc).__name__))


# -- PostgreSQL -----------------------------------------------------------------------------


class PostgresConnection(psycopg.Connection[Any]):
    """A psycopg connection whose ``execute`` failures are ConnectErrors naming the endpoint."""

    endpoint = Endpoint("", 0)

    def execute(self, query: Any, params: Any = None, **options: Any) -> Any:
        """``Connection.execute``; a psycopg or socket error becomes a ConnectError."""
        # Name the statement by its first word only: a composed one may hold a literal secret.
        what = query.split(maxsplit=1)[0] if isinstance(query, str) and query.strip() else "query"
        with postgres_errors(self.endpoint, what):
            return super().execute(query, params, **options)


@contextmanager
def postgres_errors(endpoint: Endpoint, what: str) -> Iterator[None]:
    """Inside, a psycopg or socket error becomes a ConnectError naming ``endpoint`` and ``what``."""
    try:
        yield
    except (psycopg.Error, OSError) as exc:
        raise ConnectError(f"postgres {endpoint}: {what} failed: {_last_line(exc)}") from exc


def postgres(
    endpoint: Endpoint,
    user: str,
    password: Secret,
    dbname: str = "postgres",
    *,
    timeout_s: float = POSTGRES_TIMEOUT_S,
) -> PostgresConnection:
    """A connection (autocommit) as ``user`` to ``dbname``; ConnectError names where it failed."""
    try:
        connection = PostgresConnection.connect(
            host=endpoint.host,
            port=endpoint.port,
            user=user,
            password=password.reveal(),
            dbname=dbname,
            connect_timeout=max(1, math.ceil(timeout_s)),
            autocommit=True,
        )
    except (psycopg.Error, OSError) as exc:
        raise ConnectError(
            f"postgres {user}@{endpoint}/{dbname}: cannot connect ({_last_line(exc)})"
        ) from exc
    connection.endpoint = endpoint
    return connection


def lab_postgres(
    lab: Lab, endpoint: Endpoint | None = None, *, timeout_s: float = POSTGRES_TIMEOUT_S
) -> PostgresConnection:
    """As the lab's user to the lab's database, at ``endpoint`` (default: params' host/port)."""
    settings = lab.postgres
    where = endpoint or Endpoint(settings.host, settings.port)
    lab.require_allowed(where.host)
    password = lab.secret(settings.password)
    return postgres(where, settings.user, password, settings.database, timeout_s=timeout_s)


# -- Redis ----------------------------------------------------------------------------------


class RedisClient(redis.Redis):
    """A redis-py client (str replies) whose every failure is a ConnectError naming the endpoint."""

    endpoint = Endpoint("", 0)

    def execute_command(self, *args: Any, **options: Any) -> Any:
        """``Redis.execute_command``; a Redis or socket error becomes a ConnectError."""
        try:
            return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        except (redis.RedisError, OSError) as exc:
            command = str(args[0]) if args else "command"  # never the arguments: they are data
            raise ConnectError(
                f"redis {self.endpoint}: {command} failed: {type(exc).__name__}: {_last_line(exc)}"
            ) from exc


def redis_client(
    endpoint: Endpoint, password: Secret | None = None, *, timeout_s: float = REDIS_TIMEOUT_S
) -> RedisClient:
    """A client to one Redis instance or Sentinel (connects on first command; one try each)."""
    client = RedisClient(
        host=endpoint.host,
        port=endpoint.port,
        password=password.reveal() if password is not None else None,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        decode_responses=True,
        # One try: a check or a readiness poll reports what it saw now, not after backoff.
        retry=Retry(NoBackoff(), 0),
    )
    client.endpoint = endpoint
    return client


def sentinel_view(
    sentinel: Endpoint, master_name: str, *, timeout_s: float = REDIS_TIMEOUT_S
) -> Endpoint | None:
    """Where one Sentinel says ``master_name``'s master is (None when it knows no such master)."""
    with closing(redis_client(sentinel, timeout_s=timeout_s)) as client:
        reply = client.sentinel_get_master_addr_by_name(master_name)
    if not isinstance(reply, tuple | list) or len(reply) != 2:
        return None  # redis-py answers False or None when the Sentinel knows no such master
    return Endpoint(str(reply[0]), int(reply[1]))


def sentinel_views(
    sentinels: Sequence[Endpoint], master_name: str, *, timeout_s: float = REDIS_TIMEOUT_S
) -> dict[Endpoint, Endpoint | ConnectError | None]:
    """Each Sentinel's answer: the master's endpoint, None (it knows none), or why it failed."""
    views: dict[Endpoint, Endpoint | ConnectError | None] = {}
    for sentinel in sentinels:
        try:
            views[sentinel] = sentinel_view(sentinel, master_name, timeout_s=timeout_s)
        except ConnectError as exc:
            views[sentinel] = exc
    return views


def sentinel_master(
    sentinels: Sequence[Endpoint], master_name: str, *, timeout_s: float = REDIS_TIMEOUT_S
) -> Endpoint:
    """The master every answering Sentinel names; ConnectError when none answers or they differ."""
    views = sentinel_views(sentinels, master_name, timeout_s=timeout_s)
    named = {view for view in views.values() if isinstance(view, Endpoint)}
    if len(named) == 1:
        return named.pop()
    seen = "; ".join(f"{where} -> {view or 'no master known'}" for where, view in views.items())
    problem = "disagree" if named else "name no master"
    raise ConnectError(
        f"redis sentinels {problem} for {master_name} ({seen}); "
        "check that the Sentinels run and watch that name (`labkit sandbox status`)"
    )


def lab_sentinels(lab: Lab) -> list[Endpoint]:
    """The Sentinels params list (``redis.host`` with each of ``redis.sentinel_ports``)."""
    return [Endpoint(lab.redis.host, port) for port in lab.redis.sentinel_ports]


def lab_redis(
    lab: Lab, endpoint: Endpoint, *, sentinel: bool = False, timeout_s: float = REDIS_TIMEOUT_S
) -> RedisClient:
    """A client to ``endpoint`` with the lab's Redis password (none for a Sentinel)."""
    lab.require_allowed(endpoint.host)
    ref = lab.redis.password
    password = lab.secret(ref) if ref is not None and not sentinel else None
    return redis_client(endpoint, password, timeout_s=timeout_s)


def lab_redis_master(
    lab: Lab,
    *,
    sentinels: Sequence[Endpoint] | None = None,
    reach: Callable[[Endpoint], Endpoint] | None = None,
    timeout_s: float = REDIS_TIMEOUT_S,
) -> RedisClient:
    """A client to the lab's Redis master: the one its Sentinels name, else ``redis.host:port``.

    ``sentinels`` replaces where params say the Sentinels listen, and ``reach`` maps the
    master they name to where this machine reaches it (both for endpoints another layer
    opened, such as port-forwards into a cluster).
    """
    asked = list(sentinels) if sentinels is not None else lab_sentinels(lab)
    for sentinel in asked:
        lab.require_allowed(sentinel.host)
    if asked:
        master = sentinel_master(asked, lab.redis.master_name, timeout_s=timeout_s)
    else:
        master = Endpoint(lab.redis.host, lab.redis.port)
    return lab_redis(lab, reach(master) if reach else master, timeout_s=timeout_s)


class Subscription:
    """Messages on pub/sub channels of one Redis or Sentinel (a Sentinel's ``+switch-master``)."""

    def __init__(self, client: RedisClient, channels: Sequence[str]) -> None:
        self.client = client
        self.pubsub = client.pubsub()
        try:
            self.pubsub.subscribe(*channels)
        except (redis.RedisError, OSError) as exc:
            raise ConnectError(
                f"redis {client.endpoint}: SUBSCRIBE failed: {type(exc).__name__}: "
                f"{_last_line(exc)}"
            ) from exc

    def next(self, timeout_s: float) -> tuple[str, str] | None:
        """The next ``(channel, data)`` within ``timeout_s``, or None; ConnectError when lost."""
        try:
            message = self.pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout_s)
        except (redis.RedisError, OSError) as exc:
            raise ConnectError(
                f"redis {self.client.endpoint}: subscription lost: {_last_line(exc)}"
            ) from exc
        if not message or message.get("type") != "message":
            return None
        return str(message["channel"]), str(message["data"])

    def close(self) -> None:
        """Unsubscribe and close both connections (errors on the way out do not matter)."""
        for closer in (self.pubsub.close, self.client.close):
            try:
                closer()
            except (redis.RedisError, OSError):
                continue
