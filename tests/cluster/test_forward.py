"""open_service: a real Redis reached through a port-forward over the double's websocket."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis

from labkit.cluster import Cluster
from labkit.errors import ConnectError, NotFound
from tests.conftest import free_ports
from tests.kubeapi import KubeApi, fixtures


@pytest.fixture
def real_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A redis-server on a free loopback port, no persistence; stopped after."""
    program = shutil.which("redis-server")
    if program is None:
        pytest.skip("redis-server is not installed (make system-deps installs it)")
    (port,) = free_ports(1)
    directory = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [
            program,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield port
    process.terminate()
    process.wait(timeout=10)


def _redis_in_cluster(api: KubeApi, backend_port: int | None) -> None:
    labels = {"app.kubernetes.io/name": "redis"}
    api.store.put(fixtures.namespace("redis"))
    api.store.put(fixtures.pod("redis-0", "redis", "redis:7.4", labels, ip="10.42.1.30"))
    api.store.put(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "redis", "namespace": "redis"},
            "spec": {
                "selector": labels,
                "ports": [{"name": "redis", "port": 6379, "targetPort": 6379}],
            },
        }
    )
    if backend_port is not None:
        api.wire.backends[("redis", "redis-0", "6379")] = ("127.0.0.1", backend_port)


def test_redis_answers_through_the_forward_and_it_closes_after(
    api: KubeApi, cluster: Cluster, real_redis: int
) -> None:
    _redis_in_cluster(api, real_redis)
    with cluster.open_service("redis", "redis", 6379) as (host, port):
        assert host == "127.0.0.1"
        assert port != real_redis
        client = redis.Redis(host=host, port=port, socket_timeout=5)
        assert client.ping() is True
        client.set("test_key", "x" * 200_000)  # larger than one websocket frame
        assert client.get("test_key") == b"x" * 200_000
        second = redis.Redis(host=host, port=port, socket_timeout=5)  # its own stream
        assert second.get("test_key") == b"x" * 200_000
        client.close()
        second.close()
    forwards = [r for r in api.requests("GET") if r.path.endswith("/portforward")]
    assert forwards and all(r.query == {"ports": "6379"} for r in forwards)
    assert all(r.path == "/api/v1/namespaces/redis/pods/redis-0/portforward" for r in forwards)
    with pytest.raises(OSError):
        socket.create_connection((host, port), timeout=1)


def test_a_service_without_ready_pods_is_named(api: KubeApi, cluster: Cluster) -> None:
    _redis_in_cluster(api, None)
    fixtures.pod_crashing(api.store, "redis", "redis-0")
    with pytest.raises(ConnectError, match=r"Service redis/redis has no Ready pod"):
        cluster.open_service("redis", "redis", 6379).__enter__()


def test_an_unknown_service_port_is_named(api: KubeApi, cluster: Cluster) -> None:
    _redis_in_cluster(api, None)
    with pytest.raises(NotFound, match=r"has no port 26379 \(ports: \['redis:6379'\]\)"):
        cluster.open_service("redis", "redis", 26379).__enter__()


def test_a_pod_that_refuses_closes_the_local_connection(api: KubeApi, cluster: Cluster) -> None:
    _redis_in_cluster(api, free_ports(1)[0])  # nothing listens there
    with cluster.open_service("redis", "redis", 6379) as (host, port):
        client = redis.Redis(host=host, port=port, socket_timeout=5)
        with pytest.raises(redis.ConnectionError):
            client.ping()
        client.close()
