"""Phase 3 checks against the sandbox: they pass when it works, and fail clearly when broken."""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from labkit.checks import run_checks
from labkit.checks.base import Status
from labkit.params import Lab
from labkit.sandbox import Sandbox
from labkit.secrets import SecretRef
from labkit.shlink import ShlinkClient
from tests.conftest import free_ports

pytestmark = pytest.mark.sandbox

API_ITEMS = ["3.2.4", "3.2.5", "3.2.6", "3.2.7", "3.2.8"]


def _with_shlink(lab: Lab, **changes: object) -> Lab:
    return lab.model_copy(update={"shlink": lab.shlink.model_copy(update=changes)})


def _statuses(lab: Lab, ids: list[str]) -> dict[str, Status]:
    return {result.id: result.status for result in run_checks(lab, ids=ids)}


def test_api_checks_pass_against_the_sandbox(sandbox: Sandbox, sandbox_lab: Lab) -> None:
    results = run_checks(sandbox_lab, phase=3)
    statuses = {result.id: result.status for result in results}
    assert {item: statuses[item] for item in API_ITEMS} == dict.fromkeys(API_ITEMS, Status.PASS)
    assert statuses["3.2.1"] == Status.SKIP  # needs a cluster
    assert "302" in results.by_id("3.2.7")[0].observed


def test_the_probe_short_url_is_deleted_after_the_run(sandbox: Sandbox, sandbox_lab: Lab) -> None:
    results = run_checks(sandbox_lab, ids=["3.2.5"])
    slug = results.by_id("3.2.5")[0].observed.split()[1]
    with ShlinkClient.from_lab(sandbox_lab) as client:
        codes = [item["shortCode"] for item in client.list(items_per_page=-1)["shortUrls"]["data"]]
    assert slug.startswith("labkit-check-")
    assert slug not in codes


def test_service_down_fails_with_what_was_seen(sandbox: Sandbox, sandbox_lab: Lab) -> None:
    (port,) = free_ports(1)
    down = _with_shlink(sandbox_lab, base_url=f"http://127.0.0.1:{port}")
    results = run_checks(down, ids=API_ITEMS[:4])
    statuses = {result.id: result.status for result in results}
    assert statuses == dict.fromkeys(API_ITEMS[:4], Status.FAIL)
    assert "no health answer" in results.by_id("3.2.4")[0].observed
    assert f"127.0.0.1:{port}" in results.by_id("3.2.4")[0].observed


def test_wrong_api_key_fails_creation_naming_the_problem(
    sandbox: Sandbox, sandbox_lab: Lab, tmp_path: Path
) -> None:
    key_file = tmp_path / "wrong-key"
    key_file.write_text(f"wrong-{secrets.token_hex(8)}\n")
    wrong = _with_shlink(sandbox_lab, api_key=SecretRef(file=key_file))
    results = run_checks(wrong, ids=["3.2.5", "3.2.6"])
    created = results.by_id("3.2.5")[0]
    assert created.status == Status.FAIL
    assert "401" in created.observed and "invalid-api-key" in created.observed
    assert key_file.read_text().strip() not in created.observed + created.evidence
    assert results.by_id("3.2.6")[0].status == Status.FAIL


def test_cache_off_says_what_it_saw(sandbox: Sandbox, sandbox_lab: Lab) -> None:
    # The running service still caches; the check reads params and reports, without judging.
    off = _with_shlink(sandbox_lab, redirect_cache=False)
    result = run_checks(off, ids=["3.2.8"]).by_id("3.2.8")[0]
    assert result.status == Status.SKIP
    assert "redirect cache is off" in result.observed
    assert "keys in Redis" in result.observed


def test_checks_read_redis_directly_when_no_sentinels_are_listed(
    sandbox: Sandbox, sandbox_lab: Lab
) -> None:
    # As through a port-forward to the homelab: one Redis address, no Sentinels. A replica
    # holds the master's keys, so the probe's cache key is visible there too.
    replica = sandbox_lab.redis.replica_ports[0]
    redis_settings = sandbox_lab.redis.model_copy(update={"sentinel_ports": [], "port": replica})
    lab = sandbox_lab.model_copy(update={"redis": redis_settings})
    result = run_checks(lab, ids=["3.2.8"]).by_id("3.2.8")[0]
    assert result.status == Status.PASS, result.observed


@pytest.fixture
def empty_redis(tmp_path: Path) -> Iterator[int]:
    """A redis-server of this test's own on a free loopback port, holding nothing."""
    (port,) = free_ports(1)
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)


def test_cache_not_populated_fails_with_what_was_seen(
    sandbox: Sandbox, sandbox_lab: Lab, empty_redis: int
) -> None:
    # The params name a Redis the service does not write to: no key appears after a redirect.
    redis_settings = sandbox_lab.redis.model_copy(
        update={"sentinel_ports": [], "port": empty_redis}
    )
    lab = sandbox_lab.model_copy(update={"redis": redis_settings})
    result = run_checks(lab, ids=["3.2.8"]).by_id("3.2.8")[0]
    assert result.status == Status.FAIL
    assert "absent" in result.observed
    assert "0 keys in Redis" in result.observed
