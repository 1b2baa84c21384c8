"""Redis master + replicas + Sentinels from the system's redis-server, on ports of their own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest

from labkit.params import Lab, load_lab
from labkit.sandbox import processes, redis


@pytest.fixture
def cluster(
    tmp_path: Path, private_sandbox_params: Callable[..., Path]
) -> Iterator[tuple[Lab, Path]]:
    """Redis with Sentinel of this test's own (nothing else of the sandbox)."""
    lab = load_lab(private_sandbox_params(tmp_path, name="redis-test"))
    state_dir = lab.path(lab.sandbox.state_dir) if lab.sandbox else tmp_path
    try:
        redis.start_redis(lab, state_dir, lambda m: None)
        yield lab, state_dir
    finally:
        redis.stop_redis(lab, state_dir)


def _roles(lab: Lab, state_dir: Path) -> dict[str, str | None]:
    return {entry["name"]: entry["role"] for entry in redis.redis_status(lab, state_dir)}


def test_master_replicas_and_sentinels_from_params(cluster: tuple[Lab, Path]) -> None:
    lab, state_dir = cluster
    roles = _roles(lab, state_dir)
    assert roles[f"redis-{lab.redis.port}"] == "master"
    assert [roles[f"redis-{port}"] for port in lab.redis.replica_ports] == ["replica", "replica"]
    for port in lab.redis.sentinel_ports:
        assert redis.sentinel_master(lab, port) == (lab.redis.host, lab.redis.port)
    with closing(redis.redis_client(lab, lab.redis.port)) as client:
        config = client.config_get("*")
    assert config["maxmemory-policy"] == lab.redis.maxmemory_policy
    assert config["appendonly"] == "yes"
    assert config["bind"] == "127.0.0.1"
    assert int(config["maxmemory"]) == 64 * 1024 * 1024


def test_restart_keeps_data_and_pid_changes(cluster: tuple[Lab, Path]) -> None:
    lab, state_dir = cluster
    before = redis.managed(state_dir, f"redis-{lab.redis.port}").pid
    with closing(redis.redis_client(lab, lab.redis.port)) as client:
        client.set("kept", "yes")
    redis.restart_redis(lab, state_dir, lab.redis.port)
    assert redis.managed(state_dir, f"redis-{lab.redis.port}").pid not in (None, before)
    with closing(redis.redis_client(lab, lab.redis.port)) as client:
        assert client.get("kept") == "yes"


def test_killing_the_master_makes_sentinels_promote_a_replica(cluster: tuple[Lab, Path]) -> None:
    lab, state_dir = cluster
    with closing(redis.redis_client(lab, lab.redis.port)) as client:
        client.set("before", "failover")
        client.wait(2, 5000)
    redis.stop_redis_instance(state_dir, f"redis-{lab.redis.port}")

    def promoted() -> bool:
        views = {redis.sentinel_master(lab, port) for port in lab.redis.sentinel_ports}
        return len(views) == 1 and next(iter(views)) != (lab.redis.host, lab.redis.port)

    # down_after_ms (2 s in local.yaml) plus the election: well inside 30 s.
    processes.poll_until("sentinels promote a replica", promoted, 30.0, interval_s=0.2)
    master = redis.sentinel_master(lab, lab.redis.sentinel_ports[0])
    assert master is not None and master[1] in lab.redis.replica_ports
    with closing(redis.redis_client(lab, master[1])) as client:
        assert client.info("replication")["role"] == "master"
        assert client.get("before") == "failover"
    entry = next(
        e for e in redis.redis_status(lab, state_dir) if e["name"] == f"redis-{lab.redis.port}"
    )
    assert entry["healthy"] is False
    assert "crashed" not in entry["detail"]  # stopped on purpose: no pidfile left behind


def test_stop_leaves_no_process(cluster: tuple[Lab, Path]) -> None:
    lab, state_dir = cluster
    pids = [entry["pid"] for entry in redis.redis_status(lab, state_dir)]
    assert all(pids)
    redis.stop_redis(lab, state_dir)
    assert not any(processes.alive(pid) for pid in pids)
    assert all(entry["pid"] is None for entry in redis.redis_status(lab, state_dir))
