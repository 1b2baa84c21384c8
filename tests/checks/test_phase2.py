"""Phase 2 data-plane checks: pass on the sandbox, fail with a clear observed when broken."""

from __future__ import annotations

import socket
from contextlib import closing
from pathlib import Path

import pytest

from labkit.checks import run_checks
from labkit.checks.base import Context, Status
from labkit.params import Lab, load_lab
from labkit.sandbox import Sandbox
from labkit.sandbox.redis import redis_client, sentinel_master
from labkit.secrets import SecretRef

DATA_PLANE = [
    "2.2.5",
    "2.2.6",
    "2.2.7",
    "2.3.1",
    "2.3.2",
    "2.3.3",
    "2.3.4",
    "2.3.5",
    "2.3.6",
    "2.3.7",
]


def _with(lab: Lab, section: str, **fields: object) -> Lab:
    part = getattr(lab, section).model_copy(update=fields)
    return lab.model_copy(update={section: part})


def _one(lab: Lab, item_id: str, apply: bool = False) -> list[dict[str, str]]:
    return [result.to_dict() for result in run_checks(lab, ids=[item_id], apply=apply)]


def test_every_data_plane_check_passes_on_the_sandbox(sandbox: Sandbox) -> None:
    results = run_checks(sandbox.lab, phase=2, apply=True)
    by_status = {r.id: r.status for r in results}
    failing = [r.to_dict() for r in results if r.id in DATA_PLANE and r.status != Status.PASS]
    assert failing == []
    assert set(DATA_PLANE) <= set(by_status)
    # Cluster-only items are skipped with their reason, never passed.
    assert by_status["2.2.2"] == Status.SKIP
    assert sandbox.status()["healthy"] is True  # the persistence check left the lab as found


def test_persistence_check_restarts_the_master(sandbox: Sandbox) -> None:
    lab = sandbox.lab
    _host, port = sentinel_master(lab, lab.redis.sentinel_ports[0]) or (None, None)
    assert port is not None
    name = f"redis-{port}"
    before = next(e["pid"] for e in sandbox.status()["components"] if e["name"] == name)
    [planned] = _one(lab, "2.3.5")
    assert planned["status"] == "skip"  # without apply it changes nothing
    assert "runs only with apply" in planned["observed"]
    [result] = _one(lab, "2.3.5", apply=True)
    assert result["status"] == "pass", result
    after = next(e["pid"] for e in sandbox.status()["components"] if e["name"] == name)
    assert after != before
    assert "run_id changed" in result["observed"]


def test_wrong_password_fails_the_connect_check(sandbox: Sandbox, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong-password"
    wrong.write_text("definitely-not-the-password\n")
    wrong.chmod(0o600)
    lab = _with(sandbox.lab, "postgres", password=SecretRef(file=wrong))
    [result] = _one(lab, "2.2.5")
    assert result["status"] == "fail"
    assert "password authentication failed for user" in result["observed"]
    assert "definitely-not-the-password" not in str(result)
    assert all(r["status"] == "fail" for r in _one(lab, "2.2.6"))


def test_missing_or_open_secret_file_fails(sandbox: Sandbox, tmp_path: Path) -> None:
    lab = _with(sandbox.lab, "postgres", password=SecretRef(file=tmp_path / "absent"))
    [result] = _one(lab, "2.2.7")
    assert (result["status"], result["observed"]) == ("fail", "missing")
    readable = tmp_path / "readable"
    readable.write_text("a-password-anyone-can-read\n")
    readable.chmod(0o644)
    [result] = _one(_with(sandbox.lab, "postgres", password=SecretRef(file=readable)), "2.2.7")
    assert result["status"] == "fail"
    assert "mode 644" in result["observed"]
    empty = tmp_path / "empty"
    empty.write_text("\n")
    empty.chmod(0o600)
    [result] = _one(_with(sandbox.lab, "postgres", password=SecretRef(file=empty)), "2.2.7")
    assert result["status"] == "fail" and "is 0 characters long" in result["observed"]


def test_a_value_lost_after_2_3_3_wrote_it_fails_2_3_4(sandbox: Sandbox) -> None:
    lab = sandbox.lab
    master = sentinel_master(lab, lab.redis.sentinel_ports[0])
    assert master is not None
    with Context(lab) as context, closing(redis_client(lab, master[1])) as client:
        (written,) = run_checks(lab, ids=["2.3.3"], context=context)
        assert written.status == Status.PASS
        client.delete("test_key")  # lost between the write and the read
        (read,) = run_checks(lab, ids=["2.3.4"], context=context)
    assert (read.status, read.observed) == (Status.FAIL, "None")
    (alone,) = run_checks(lab, ids=["2.3.4"])  # without 2.3.3 in the run it writes first
    assert alone.status == Status.PASS


def test_changed_eviction_policy_fails(sandbox: Sandbox) -> None:
    lab = sandbox.lab
    master = sentinel_master(lab, lab.redis.sentinel_ports[0])
    assert master is not None
    with closing(redis_client(lab, master[1])) as client:
        client.config_set("maxmemory-policy", "noeviction")
        try:
            [result] = _one(lab, "2.3.7")
        finally:
            client.config_set("maxmemory-policy", lab.redis.maxmemory_policy)
    assert result["status"] == "fail"
    assert (result["expected"], result["observed"]) == ("allkeys-lru", "noeviction")


def test_memory_limit_other_than_params_fails(sandbox: Sandbox) -> None:
    [result] = _one(_with(sandbox.lab, "redis", maxmemory="32mb"), "2.3.6")
    assert result["status"] == "fail"
    assert "maxmemory 67108864" in result["observed"]


def test_redis_down_fails_with_the_connection_error(sandbox: Sandbox) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    lab = _with(sandbox.lab, "redis", port=closed_port, sentinel_ports=[])
    for item_id in ("2.3.1", "2.3.2", "2.3.3", "2.3.7"):
        result = _one(lab, item_id)[0]
        assert result["status"] == "fail", (item_id, result)
        assert f"127.0.0.1:{closed_port}" in result["observed"]
        assert "refused" in result["observed"].lower()


def test_homelab_without_its_kubeconfig_fails_naming_it_without_connecting(
    tmp_path: Path,
) -> None:
    """A cluster lab reaches its stores through the cluster: no kubeconfig, no connection."""
    homelab = load_lab(Path(__file__).resolve().parents[2] / "params" / "homelab.yaml")
    k3s = homelab.k3s.model_copy(update={"kubeconfig": tmp_path / "absent.yaml"})
    homelab = homelab.model_copy(update={"k3s": k3s})
    results = run_checks(homelab, ids=["2.2.5", "2.2.7", "2.3.1", "2.3.2", "2.3.5"])
    by_id = {(r.id, r.subject): r for r in results}
    assert by_id[("2.3.5", "")].status is Status.SKIP
    assert "cluster lab" in by_id[("2.3.5", "")].observed
    failed = [r for key, r in by_id.items() if key[0] != "2.3.5"]
    assert failed and {r.status for r in failed} == {Status.FAIL}
    assert all(
        f"kubeconfig {tmp_path / 'absent.yaml'}: cannot be read" in r.observed for r in failed
    )


@pytest.mark.parametrize("item_id", DATA_PLANE)
def test_each_item_is_implemented(item_id: str) -> None:
    from labkit.checks import implemented_ids

    assert item_id in implemented_ids()
