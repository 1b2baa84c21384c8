"""cluster.reach: which pod a store's endpoint is forwarded to, as a real cluster names them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from labkit.cluster import Cluster
from labkit.cluster.reach import Reach
from labkit.errors import ConnectError
from labkit.stores import Endpoint
from tests.cluster.test_forward import real_redis  # noqa: F401 - a fixture
from tests.kubeapi import KubeApi, data_lab, fixtures


@pytest.fixture
def reach(tmp_path: Path) -> Iterator[tuple[KubeApi, Reach]]:
    with KubeApi() as api:
        data_lab.data_lab(api.store)
        lab = api.lab(tmp_path)
        with Cluster.open(lab) as cluster, Reach(cluster, lab) as opened:
            yield api, opened


def _forwarded_to(api: KubeApi) -> set[str]:
    return {r.path.split("/")[-2] for r in api.requests("GET") if r.path.endswith("/portforward")}


@pytest.mark.parametrize(
    ("named", "pod"),
    [
        ("redis-1.redis-headless.redis.svc.cluster.local", "redis-1"),  # announce-hostnames
        ("10.42.2.60", "redis-2"),  # a pod IP
        ("redis-0", "redis-0"),
    ],
)
def test_the_master_the_sentinels_name_is_that_pods_forward(
    reach: tuple[KubeApi, Reach],
    real_redis: int,  # noqa: F811 - the fixture imported above
    named: str,
    pod: str,
) -> None:
    api, opened = reach
    api.wire.backends[("redis", pod, "6379")] = ("127.0.0.1", real_redis)
    endpoint = opened.redis_master(Endpoint(named, 6379))
    assert endpoint.host == "127.0.0.1" and endpoint.port != real_redis
    with redis.Redis(host=endpoint.host, port=endpoint.port, socket_timeout=5) as client:
        assert client.ping() is True
    assert _forwarded_to(api) == {pod}


def test_a_master_that_is_no_pod_is_named_with_what_the_pods_said(
    reach: tuple[KubeApi, Reach],
) -> None:
    _, opened = reach  # no backends: every pod's Redis is unreachable
    with pytest.raises(
        ConnectError,
        match=r"name 10\.9\.9\.9:6379 as master of mymaster, which is no Redis pod in redis",
    ):
        opened.redis_master(Endpoint("10.9.9.9", 6379))


def test_the_postgres_primary_is_the_ready_pod_labelled_master(
    reach: tuple[KubeApi, Reach],
) -> None:
    api, opened = reach
    assert opened.postgres_primary() == data_lab.PRIMARY
    fixtures.pod_crashing(api.store, "postgres", data_lab.PRIMARY)
    with pytest.raises(ConnectError, match=r"expected one Ready pod .*saw 0 among") as raised:
        opened.postgres_primary()
    assert f"{data_lab.REPLICA} (role replica, ready True)" in str(raised.value)


def test_every_forward_closes_with_the_reach(reach: tuple[KubeApi, Reach]) -> None:
    _, opened = reach
    endpoints = list(opened.sentinels())
    assert len(endpoints) == 3
    opened.close()
    for endpoint in endpoints:
        with pytest.raises(redis.ConnectionError):
            redis.Redis(host=endpoint.host, port=endpoint.port, socket_timeout=1).ping()
