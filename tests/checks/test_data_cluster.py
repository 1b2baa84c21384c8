"""Phase 2-3 data checks on a cluster lab: asked of real servers through the API's port-forward.

The double holds the phase 2-3 lab (tests/kubeapi/data_lab.py); its port-forwards relay
to this session's sandbox (real PostgreSQL 18, Redis with Sentinels, the Shlink
stand-in), so ``SHOW server_version``, ``INFO replication``, ``SENTINEL CKQUORUM`` and
the REST calls run for real, through forwards labkit opened itself. Secrets are
``{kubernetes: ...}`` references read through the double. Broken states: Sentinels
whose quorum cannot be reached (real redis-sentinel processes), no Ready Shlink pod, no
PostgreSQL primary.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import redis

from labkit.checks import Status, run_checks
from labkit.params import Lab, load_lab
from labkit.sandbox import Sandbox
from labkit.shlink import ShlinkClient
from tests.conftest import free_ports
from tests.kubeapi import KubeApi, data_lab, fixtures

pytestmark = pytest.mark.sandbox

DATA_ITEMS = [
    "2.2.5", "2.2.6", "2.2.7", "2.3.1", "2.3.2", "2.3.3", "2.3.4", "2.3.6", "2.3.7",
    "3.2.4", "3.2.5", "3.2.6", "3.2.7", "3.2.8",
]  # fmt: skip

Results = dict[tuple[str, str], tuple[Status, str]]


@pytest.fixture
def double(sandbox: Sandbox, sandbox_lab: Lab) -> Iterator[KubeApi]:
    """The double holding the phase 2-3 lab, its forwards relayed to the session's sandbox."""
    password = sandbox_lab.secret(sandbox_lab.postgres.password).reveal()
    api_key = sandbox_lab.secret(sandbox_lab.shlink.api_key).reveal()
    with KubeApi() as api:
        data_lab.data_lab(api.store, pg_password=password, api_key=api_key)
        data_lab.relay_to(api, sandbox_lab)
        yield api


def _run(api: KubeApi, directory: Path, sandbox_lab: Lab, ids: list[str]) -> Results:
    lab = load_lab(data_lab.cluster_params(api, directory, sandbox_lab))
    assert lab.kind == "homelab" and lab.postgres.password.kind == "kubernetes"
    return {(r.id, r.subject): (r.status, r.observed) for r in run_checks(lab, ids=ids)}


def test_the_data_items_pass_through_the_forwards(
    double: KubeApi, tmp_path: Path, sandbox_lab: Lab
) -> None:
    results = _run(double, tmp_path, sandbox_lab, DATA_ITEMS)
    failed = {key: value for key, value in results.items() if value[0] is not Status.PASS}
    assert failed == {}
    observed = {key: value[1] for key, value in results.items()}
    assert f"PostgreSQL {sandbox_lab.versions.postgresql}" in observed[("2.2.6", "server version")]
    assert "OK 3 usable Sentinels" in observed[("2.3.1", "sentinel quorum")]
    assert "sentinel redis-0" in observed[("2.3.1", "sentinels")]
    forwards = {r.path for r in double.requests("GET") if r.path.endswith("/portforward")}
    assert f"/api/v1/namespaces/postgres/pods/{data_lab.PRIMARY}/portforward" in forwards
    assert {f"/api/v1/namespaces/redis/pods/redis-{i}/portforward" for i in range(3)} <= forwards
    assert any(path.startswith("/api/v1/namespaces/shlink/pods/") for path in forwards)
    slug = observed[("3.2.5", "")].split()[1]  # the probe, deleted through the forward after
    with ShlinkClient.from_lab(sandbox_lab) as client:
        codes = [item["shortCode"] for item in client.list(items_per_page=-1)["shortUrls"]["data"]]
    assert slug.startswith("labkit-check-") and slug not in codes
    secrets = {r.path for r in double.requests("GET") if "/secrets/" in r.path}
    assert "/api/v1/namespaces/postgres/secrets/shlink-db-pguser-shlink" in secrets
    assert "/api/v1/namespaces/shlink/secrets/shlink-secrets" in secrets


def test_persistence_says_why_it_skips_on_a_cluster_lab(
    double: KubeApi, tmp_path: Path, sandbox_lab: Lab
) -> None:
    status, observed = _run(double, tmp_path, sandbox_lab, ["2.3.5"])[("2.3.5", "")]
    assert status is Status.SKIP and "cluster lab" in observed


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after 10 s")


@pytest.fixture
def sentinels_without_quorum(tmp_path: Path, sandbox_lab: Lab) -> Iterator[tuple[int, list[int]]]:
    """A real redis-server and three real Sentinels watching it with quorum 4 (unreachable)."""
    server, sentinel = shutil.which("redis-server"), shutil.which("redis-sentinel")
    if server is None or sentinel is None:
        pytest.skip("redis-server/redis-sentinel are not installed (make system-deps)")
    master, *ports = free_ports(4)
    name = sandbox_lab.redis.master_name
    with ExitStack() as stack:
        processes = []
        command = [server, "--port", str(master), "--bind", "127.0.0.1", "--save", ""]
        processes.append(subprocess.Popen([*command, "--dir", str(tmp_path)]))
        for port in ports:
            config = tmp_path / f"sentinel-{port}.conf"
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
                f"sentinel monitor {name} 127.0.0.1 {master} 4\n"
                f"sentinel down-after-milliseconds {name} 5000\n",
                encoding="utf-8",
            )
            processes.append(subprocess.Popen([sentinel, str(config)]))
        for process in processes:
            stack.callback(process.wait, 10)
            stack.callback(process.terminate)
        for port in (master, *ports):
            _wait_port(port)
        yield master, ports


def test_sentinels_without_quorum_fail_with_what_they_said(
    double: KubeApi,
    tmp_path: Path,
    sandbox_lab: Lab,
    sentinels_without_quorum: tuple[int, list[int]],
) -> None:
    master, ports = sentinels_without_quorum
    double.wire.backends[("redis", "redis-0", "6379")] = ("127.0.0.1", master)
    for index, port in enumerate(ports):
        double.wire.backends[("redis", f"redis-{index}", "26379")] = ("127.0.0.1", port)
    with redis.Redis(port=ports[0], socket_timeout=5) as client:  # it answers, it just cannot agree
        assert client.ping() is True
    results = _run(double, tmp_path, sandbox_lab, ["2.3.1"])
    status, observed = results[("2.3.1", "sentinel quorum")]
    assert status is Status.FAIL
    assert "sentinel redis-0: " in observed and "NOQUORUM" in observed
    assert "quorum" in observed.lower()


def test_no_ready_shlink_pod_fails_the_api_items_naming_the_service(
    double: KubeApi, tmp_path: Path, sandbox_lab: Lab
) -> None:
    for key in [k for k in double.store.objects if k[1] == "pods" and k[2] == "shlink"]:
        fixtures.pod_crashing(double.store, "shlink", key[3])
    results = _run(double, tmp_path, sandbox_lab, ["3.2.4", "3.2.5"])
    for item_id in ("3.2.4", "3.2.5"):
        status, observed = results[(item_id, "")]
        assert status is Status.FAIL
        assert "Service shlink/shlink has no Ready pod" in observed


def test_no_postgres_primary_fails_naming_the_cluster_and_its_pods(
    double: KubeApi, tmp_path: Path, sandbox_lab: Lab
) -> None:
    fixtures.pod_crashing(double.store, "postgres", data_lab.PRIMARY)
    results = _run(double, tmp_path, sandbox_lab, ["2.2.5"])
    ((status, observed),) = [v for k, v in results.items() if k[0] == "2.2.5"]
    assert status is Status.FAIL
    assert "PostgresCluster postgres/shlink-db" in observed
    assert f"{data_lab.PRIMARY} (role master, ready False)" in observed


def test_a_wrong_password_in_the_pgo_secret_fails_the_connection(
    double: KubeApi, tmp_path: Path, sandbox_lab: Lab
) -> None:
    secret = double.store.objects[("", "secrets", "postgres", "shlink-db-pguser-shlink")]
    secret["data"]["password"] = data_lab._b64("not-the-password")
    results = _run(double, tmp_path, sandbox_lab, ["2.2.5"])
    ((status, observed),) = [v for k, v in results.items() if k[0] == "2.2.5"]
    assert status is Status.FAIL and "password authentication failed" in observed
    assert "not-the-password" not in observed
