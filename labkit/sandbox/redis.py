"""The sandbox's Redis: one master, ``replicas`` replicas and ``sentinels`` Sentinels on loopback.

Data nodes listen on ``lab.redis.port`` (the initial master) and
``replica_ports``; Sentinels on ``sentinel_ports``, watching ``master_name``
with the params' quorum and ``down_after_ms``. ``maxmemory``,
``maxmemory-policy`` and ``appendonly`` come from params. Configuration files
are rewritten from params whenever a process is (re)started, so a sandbox that
was down starts again with the master on ``lab.redis.port``; while it runs,
Sentinel decides who is master and ``redis_status`` reports that.

Binaries: the system's ``redis-server`` / ``redis-sentinel``
(``apt-get install -y redis-server redis-sentinel``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

from labkit import stores
from labkit.errors import ConnectError, LabkitError
from labkit.params import Lab
from labkit.sandbox import processes
from labkit.secrets import resolve

__all__ = [
    "data_ports",
    "managed",
    "redis_client",
    "redis_status",
    "rejoin",
    "restart_redis",
    "sentinel_master",
    "start_redis",
    "stop_redis",
    "stop_redis_instance",
]


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise LabkitError(
            f"sandbox redis: {name} not found on PATH; run: apt-get install -y redis-server "
            "redis-sentinel (Debian/Ubuntu)"
        )
    return found


def data_ports(lab: Lab) -> list[int]:
    """Ports of the data nodes: the configured master first, then the replicas."""
    return [lab.redis.port, *lab.redis.replica_ports]


def managed(state_dir: Path, name: str) -> processes.Managed:
    """The supervised process ``redis-<port>`` or ``sentinel-<port>``."""
    return processes.Managed(
        name, state_dir / "run" / f"{name}.pid", state_dir / "logs" / f"{name}.log"
    )


def _password(lab: Lab) -> str | None:
    if lab.redis.password is None:
        return None
    return resolve(lab.redis.password, lab.base_dir).reveal()


def redis_client(
    lab: Lab, port: int, host: str | None = None, timeout_s: float = 2.0
) -> stores.RedisClient:
    """A client to one of the sandbox's instances (data node or Sentinel) with short timeouts."""
    endpoint = stores.Endpoint(host or lab.redis.host, port)
    sentinel = port in lab.redis.sentinel_ports
    return stores.lab_redis(lab, endpoint, sentinel=sentinel, timeout_s=timeout_s)


def _write_private(path: Path, text: str) -> None:
    """Write a config file of mode 600: it may hold the Redis password."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


def _data_config(lab: Lab, state_dir: Path, port: int) -> Path:
    directory = state_dir / "redis" / str(port)
    lines = [
        f"bind {lab.redis.host}",
        f"port {port}",
        "daemonize no",
        'logfile ""',
        f"dir {directory}",
        f"appendonly {'yes' if lab.redis.appendonly else 'no'}",
        "appendfsync everysec",
        f"maxmemory {lab.redis.maxmemory}",
        f"maxmemory-policy {lab.redis.maxmemory_policy}",
        "save 60 1000",
    ]
    if port != lab.redis.port:
        lines.append(f"replicaof {lab.redis.host} {lab.redis.port}")
    password = _password(lab)
    if password:
        lines += [f'requirepass "{password}"', f'masterauth "{password}"']
    path = directory / "redis.conf"
    _write_private(path, "\n".join(lines) + "\n")
    return path


def _sentinel_config(lab: Lab, state_dir: Path, port: int) -> Path:
    directory = state_dir / "redis" / f"sentinel-{port}"
    name = lab.redis.master_name
    lines = [
        f"bind {lab.redis.host}",
        f"port {port}",
        "daemonize no",
        'logfile ""',
        f"dir {directory}",
        f"sentinel monitor {name} {lab.redis.host} {lab.redis.port} {lab.redis.sentinel_quorum}",
        f"sentinel down-after-milliseconds {name} {lab.redis.down_after_ms}",
        # A short failover timeout keeps a sandbox drill within seconds, not minutes.
        f"sentinel failover-timeout {name} {max(3 * lab.redis.down_after_ms, 10_000)}",
        f"sentinel parallel-syncs {name} 1",
    ]
    password = _password(lab)
    if password:
        lines.append(f'sentinel auth-pass {name} "{password}"')
    path = directory / "sentinel.conf"
    _write_private(path, "\n".join(lines) + "\n")
    return path


def _ping(lab: Lab, port: int) -> bool:
    try:
        with closing(redis_client(lab, port, timeout_s=1.0)) as client:
            return client.ping() is True
    except ConnectError:
        return False


def _pinger(lab: Lab, port: int) -> Callable[[], bool]:
    return lambda: _ping(lab, port)


def _replica_linked(lab: Lab, port: int) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            with closing(redis_client(lab, port, timeout_s=1.0)) as client:
                info = client.info("replication")
        except ConnectError:
            return False
        return info.get("role") == "master" or info.get("master_link_status") == "up"

    return ready


def sentinel_master(lab: Lab, port: int) -> tuple[str, int] | None:
    """The master address one Sentinel reports for ``master_name`` (None when it knows none)."""
    sentinel = stores.Endpoint(lab.redis.host, port)
    lab.require_allowed(sentinel.host)
    master = stores.sentinel_view(sentinel, lab.redis.master_name, timeout_s=1.0)
    return (master.host, master.port) if master is not None else None


def _sentinels_agree(lab: Lab) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            views = set()
            for port in lab.redis.sentinel_ports:
                with closing(redis_client(lab, port, timeout_s=1.0)) as client:
                    master = client.sentinel_master(lab.redis.master_name)
                if not isinstance(master, dict):
                    return False  # redis-py parses a known master into a dict
                fields = master
                # Each Sentinel must have found the others, or a quorum could not form.
                if int(fields.get("num-other-sentinels", 0)) < len(lab.redis.sentinel_ports) - 1:
                    return False
                views.add((fields.get("ip"), fields.get("port")))
        except ConnectError:
            return False
        return len(views) == 1

    return ready


def _start_data_node(lab: Lab, state_dir: Path, port: int, timeout_s: float) -> None:
    name = f"redis-{port}"
    if managed(state_dir, name).pid is None:
        config = _data_config(lab, state_dir, port)
        processes.start(
            name,
            [_binary("redis-server"), str(config)],
            state_dir,
            listens=[(lab.redis.host, port)],
        )
    process = managed(state_dir, name)
    processes.poll_until(
        f"{name} on {lab.redis.host}:{port}", _pinger(lab, port), timeout_s, process
    )


def start_redis(lab: Lab, state_dir: Path, progress: Callable[[str], None] = print) -> None:
    """Bring the master, replicas and Sentinels up (idempotent) and wait until they agree."""
    timeout_s = lab.sandbox.startup_timeout_s if lab.sandbox else 60.0
    ports = data_ports(lab)
    down = [port for port in ports if managed(state_dir, f"redis-{port}").pid is None]
    if down:
        progress(f"redis: starting data nodes on {lab.redis.host}:{','.join(map(str, down))}")
    for port in ports:
        _start_data_node(lab, state_dir, port, timeout_s)
    for port in lab.redis.replica_ports:
        processes.poll_until(
            f"redis-{port} replication link",
            _replica_linked(lab, port),
            timeout_s,
            managed(state_dir, f"redis-{port}"),
        )
    missing = [
        p for p in lab.redis.sentinel_ports if managed(state_dir, f"sentinel-{p}").pid is None
    ]
    if missing:
        progress(f"redis: starting sentinels on {','.join(map(str, missing))}")
    for port in missing:
        config = _sentinel_config(lab, state_dir, port)
        processes.start(
            f"sentinel-{port}",
            [_binary("redis-sentinel"), str(config)],
            state_dir,
            listens=[(lab.redis.host, port)],
        )
    for port in lab.redis.sentinel_ports:
        processes.poll_until(
            f"sentinel-{port} on {lab.redis.host}:{port}",
            _pinger(lab, port),
            timeout_s,
            managed(state_dir, f"sentinel-{port}"),
        )
    if lab.redis.sentinel_ports:
        processes.poll_until(
            "redis sentinels (discovering each other and agreeing on the master)",
            _sentinels_agree(lab),
            timeout_s,
            interval_s=0.25,
        )


def stop_redis_instance(state_dir: Path, name: str) -> bool:
    """Stop one instance by name (``redis-<port>``/``sentinel-<port>``); True if it was running."""
    return processes.stop(managed(state_dir, name), timeout_s=15.0)


def stop_redis(lab: Lab, state_dir: Path) -> None:
    """Stop the Sentinels first (so they start no failover), then the data nodes."""
    for port in lab.redis.sentinel_ports:
        stop_redis_instance(state_dir, f"sentinel-{port}")
    for port in reversed(data_ports(lab)):
        stop_redis_instance(state_dir, f"redis-{port}")


def restart_redis(lab: Lab, state_dir: Path, port: int) -> None:
    """Restart the data node on ``port`` with its own data (SIGTERM flushes the AOF first)."""
    name = f"redis-{port}"
    if port not in data_ports(lab):
        raise LabkitError(f"sandbox redis: no data node on port {port}; ports: {data_ports(lab)}")
    timeout_s = lab.sandbox.startup_timeout_s if lab.sandbox else 60.0
    process = managed(state_dir, name)
    config = state_dir / "redis" / str(port) / "redis.conf"
    stop_redis_instance(state_dir, name)
    # Restart from the config on disk: a node Sentinel made a replica must come back a replica.
    processes.start(
        name, [_binary("redis-server"), str(config)], state_dir, listens=[(lab.redis.host, port)]
    )
    processes.poll_until(
        f"{name} on {lab.redis.host}:{port}", _pinger(lab, port), timeout_s, process
    )


def _describe_data(lab: Lab, state_dir: Path, port: int) -> dict[str, Any]:
    name = f"redis-{port}"
    process = managed(state_dir, name)
    entry = processes.describe(
        process, "redis", f"{lab.redis.host}:{port}", listen=(lab.redis.host, port)
    )
    if entry["pid"] is None:
        return entry
    try:
        with closing(redis_client(lab, port, timeout_s=1.0)) as client:
            info = client.info("replication")
    except ConnectError as exc:
        entry["detail"] = f"not answering: {exc}"
        return entry
    if info.get("role") == "master":
        entry["role"] = "master"
        entry["healthy"] = True
        entry["detail"] = f"{info.get('connected_slaves', 0)} connected replica(s)"
    else:
        link = info.get("master_link_status")
        entry["role"] = "replica"
        entry["healthy"] = link == "up"
        entry["detail"] = (
            f"replica of {info.get('master_host')}:{info.get('master_port')}, link {link}"
        )
    return entry


def _describe_sentinel(lab: Lab, state_dir: Path, port: int) -> dict[str, Any]:
    name = f"sentinel-{port}"
    process = managed(state_dir, name)
    entry = processes.describe(
        process, "sentinel", f"{lab.redis.host}:{port}", "sentinel", (lab.redis.host, port)
    )
    if entry["pid"] is None:
        return entry
    try:
        master = sentinel_master(lab, port)
    except ConnectError as exc:
        entry["detail"] = f"not answering: {exc}"
        return entry
    entry["healthy"] = master is not None
    entry["detail"] = f"master {master[0]}:{master[1]}" if master else "knows no master"
    return entry


def redis_status(lab: Lab, state_dir: Path) -> list[dict[str, Any]]:
    """One JSON-ready entry per instance; a data node's role is what it reports itself."""
    entries = [_describe_data(lab, state_dir, port) for port in data_ports(lab)]
    entries += [_describe_sentinel(lab, state_dir, port) for port in lab.redis.sentinel_ports]
    return entries


def rejoin(lab: Lab, state_dir: Path, port: int) -> str:
    """Start a data node that was lost again and wait until it replicates from the master
    the Sentinels name (they turn a returning old master into a replica); returns that master.
    """
    timeout_s = lab.sandbox.startup_timeout_s if lab.sandbox else 60.0
    name = f"redis-{port}"
    process = managed(state_dir, name)
    if process.pid is None:
        config = state_dir / "redis" / str(port) / "redis.conf"
        processes.start(name, [_binary("redis-server"), str(config)], state_dir)
    processes.poll_until(
        f"{name} on {lab.redis.host}:{port}", _pinger(lab, port), timeout_s, process
    )
    master: list[tuple[str, int]] = []

    def replicating() -> bool:
        named = sentinel_master(lab, lab.redis.sentinel_ports[0])
        if named is None or named[1] == port:
            return False
        with closing(redis_client(lab, port, timeout_s=1.0)) as client:
            info = client.info("replication")
        master[:] = [named]
        return (
            info.get("role") == "slave"
            and int(info.get("master_port", 0)) == named[1]
            and info.get("master_link_status") == "up"
        )

    def quiet(check: Callable[[], bool]) -> Callable[[], bool]:
        def run() -> bool:
            try:
                return check()
            except ConnectError:
                return False

        return run

    processes.poll_until(
        f"{name} replicating from the master the Sentinels name",
        quiet(replicating),
        timeout_s,
        process,
        interval_s=0.2,
    )
    processes.poll_until(
        "redis sentinels agreeing on the master", _sentinels_agree(lab), timeout_s, interval_s=0.25
    )
    return f"{master[0][0]}:{master[0][1]}"
