"""Preflight checks, table-driven: files present or not, pins compatible, addresses allowed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

import pytest

from labkit.checks import Status, run_checks
from labkit.params import Lab, load_lab

REPOSITORY = Path(__file__).resolve().parents[2]


def _lab(tmp_path: Path, extra: str = "", ssh: str = "") -> Lab:
    key = tmp_path / "id_test"
    ssh = ssh or f"{{known_hosts: {tmp_path / 'known_hosts'}}}"
    text = f"""extends: {REPOSITORY / "params" / "local.yaml"}
nodes:
  - {{name: k3s-node-01, address: 10.77.0.11, ssh_user: root, ssh_key: {key}}}
  - {{name: k3s-node-02, address: 10.77.0.12, ssh_user: root, ssh_key: {key}}}
ssh: {ssh}
postgres: {{password: {{env: LABKIT_TEST_PG_PASSWORD}}}}
shlink: {{api_key: {{file: {tmp_path / "api-key"}}}}}
{extra}"""
    (tmp_path / "lab.yaml").write_text(text)
    return load_lab(tmp_path / "lab.yaml")


def _status(lab: Lab, item_id: str) -> list[tuple[str, Status]]:
    return [(r.subject, r.status) for r in run_checks(lab, ids=[item_id])]


def test_files_missing_fail_then_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABKIT_TEST_PG_PASSWORD", raising=False)
    lab = _lab(tmp_path)
    assert _status(lab, "0.1.2") == [("k3s-node-01", Status.FAIL), ("k3s-node-02", Status.FAIL)]
    assert _status(lab, "0.1.3") == [("", Status.FAIL)]
    assert _status(lab, "0.1.6") == [
        ("postgres.password", Status.FAIL),
        ("shlink.api_key", Status.FAIL),
    ]
    (tmp_path / "id_test").write_text("key")
    (tmp_path / "known_hosts").write_text("host ssh-ed25519 AAAA\n")
    (tmp_path / "api-key").write_text("api-key-value-123")
    monkeypatch.setenv("LABKIT_TEST_PG_PASSWORD", "pg-password-456")
    assert {r.status for r in run_checks(lab, ids=["0.1.2", "0.1.3", "0.1.6"])} == {Status.PASS}
    shown = repr(run_checks(lab, ids=["0.1.6"]).to_list())
    assert "api-key-value-123" not in shown and "pg-password-456" not in shown


KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICNtLKvPvcCPorkFHDdsdGH162eg8HOrX1ecywLrrATw"


def _hashed(name: str) -> str:
    """A HashKnownHosts entry for ``name`` (as ``ssh-keygen -H`` writes it)."""
    salt = os.urandom(20)
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def test_known_hosts_must_hold_each_nodes_key_outside_the_sandbox(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    second = lab.nodes[1].model_copy(update={"ssh_port": 2222})
    lab = lab.model_copy(update={"kind": "homelab", "nodes": [lab.nodes[0], second]})
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"10.77.0.11 {KEY}\n10.77.0.12 {KEY}\n")  # node 2's port is 2222
    assert _status(lab, "0.1.3") == [("k3s-node-01", Status.PASS), ("k3s-node-02", Status.FAIL)]
    known_hosts.write_text(f"10.77.0.11 {KEY}\n{_hashed('[10.77.0.12]:2222')} {KEY}\n")
    assert _status(lab, "0.1.3") == [("k3s-node-01", Status.PASS), ("k3s-node-02", Status.PASS)]
    known_hosts.write_text("")
    assert _status(lab, "0.1.3") == [("k3s-node-01", Status.FAIL), ("k3s-node-02", Status.FAIL)]
    tofu = lab.model_copy(update={"ssh": lab.ssh.model_copy(update={"trust_on_first_use": True})})
    assert {status for _, status in _status(tofu, "0.1.3")} == {Status.SKIP}


def test_an_empty_sandbox_known_hosts_fails(tmp_path: Path) -> None:
    (tmp_path / "known_hosts").write_text("# nothing yet\n")
    assert _status(_lab(tmp_path), "0.1.3") == [("", Status.FAIL)]


def test_trust_on_first_use_skips_missing_known_hosts(tmp_path: Path) -> None:
    lab = _lab(tmp_path, ssh="{known_hosts: /nonexistent/kh, trust_on_first_use: true}")
    assert _status(lab, "0.1.3") == [("", Status.SKIP)]


@pytest.mark.parametrize(
    ("pins", "expected"),
    [
        ('{k3s: v1.31.12+k3s1, istio: "1.24.6", pgo: v6.0.3}', {Status.PASS}),
        ('{k3s: v1.33.6+k3s1, istio: "1.24.2", pgo: v6.0.0}', {Status.PASS, Status.FAIL}),
        ('{k3s: v1.29.1+k3s1, istio: "1.24.2", pgo: v6.0.0}', {Status.PASS, Status.FAIL}),
        ('{k3s: v1.27.1+k3s1, istio: "1.24.2", pgo: v6.0.0}', {Status.FAIL}),
    ],
)
def test_version_compatibility(tmp_path: Path, pins: str, expected: set[Status]) -> None:
    lab = _lab(tmp_path, f"versions: {pins}")
    assert {status for _, status in _status(lab, "0.1.4")} == expected


def test_homelab_pins_are_flagged() -> None:
    lab = load_lab(REPOSITORY / "params" / "homelab.yaml")
    results = run_checks(lab, ids=["0.1.4"])
    failed = [r for r in results if r.status == Status.FAIL]
    assert [r.subject for r in failed] == ["istio 1.24.2 on Kubernetes 1.33"]
    assert "1.28 to 1.31" in failed[0].expected


def test_address_outside_allow_list_fails(tmp_path: Path) -> None:
    lab = _lab(tmp_path, 'allow_list: ["10.77.0.11"]')
    assert _status(lab, "0.1.5") == [("k3s-node-01", Status.PASS), ("k3s-node-02", Status.FAIL)]


def test_layered_params_are_reloaded_as_layers(tmp_path: Path) -> None:
    base = _lab(tmp_path)
    (tmp_path / "over.yaml").write_text("redis: {maxmemory: 32mb}\n")
    lab = load_lab(tmp_path / "lab.yaml", tmp_path / "over.yaml")
    assert base.redis.maxmemory != lab.redis.maxmemory == "32mb"
    assert _status(lab, "0.1.1") == [("", Status.PASS)]


def test_params_changed_on_disk_fails(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    assert _status(lab, "0.1.1") == [("", Status.PASS)]
    with (tmp_path / "lab.yaml").open("a") as handle:
        handle.write("redis: {maxmemory: 32mb}\n")
    assert _status(lab, "0.1.1") == [("", Status.FAIL)]
