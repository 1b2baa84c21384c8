"""K3s steps, table-driven: config.yaml per role, token as a Secret, install modes, service."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from fakehost import FakeHost, Reply

from labkit.errors import StepError
from labkit.params import Lab, load_lab
from labkit.secrets import MASK, Secret
from labkit.steps import DiffKind, K3sBinary, K3sConfig, K3sService, Target
from labkit.steps.k3s import CONFIG_FILE, INSTALL_SCRIPT, TOKEN_FILE, desired_config

LOCAL = Path(__file__).resolve().parents[2] / "params" / "local.yaml"
TOKEN = "K10planted-token-value::server:abcdef0123456789"
VERSION = ("/usr/local/bin/k3s", "--version")


def lab_of(**update: object) -> Lab:
    lab = load_lab(LOCAL).model_copy(update={"kind": "homelab", "internet": True})
    k3s = lab.k3s.model_copy(update=update)
    return lab.model_copy(update={"k3s": k3s})


def node(name: str, installed: str | None = None) -> FakeHost:
    number = name[-1]
    host = FakeHost(name, f"10.77.0.1{number}")
    host.answers[VERSION] = (
        Reply(0, f"k3s version {installed} (abc)\ngo version go1.22\n")
        if installed
        else Reply(127, "", "k3s: not found")
    )
    host.answers[("test", "-d", "/var/lib/rancher/k3s/server/db/etcd")] = Reply(
        0 if installed else 1
    )
    return host


def targets(lab: Lab, hosts: list[FakeHost]) -> dict[str, Target]:
    shared: dict[str, object] = {}
    by_name = {h.name: h for h in hosts}
    return {h.name: Target(lab.node(h.name), h, lab, shared, dict(by_name)) for h in hosts}


def test_first_server_config_has_cluster_init_and_same_critical_flags() -> None:
    lab = lab_of()
    first = desired_config(lab, lab.node("k3s-node-01"), None)
    second = desired_config(lab, lab.node("k3s-node-02"), Secret(TOKEN, "test"))
    assert first["cluster-init"] is True and "server" not in first and "token" not in first
    assert second["server"] == "https://10.77.0.11:6443" and "cluster-init" not in second
    for key in ("disable", "tls-san", "write-kubeconfig-mode"):
        assert first[key] == second[key]
    assert first["disable"] == ["traefik"]
    assert first["tls-san"] == ["10.77.0.11", "10.77.0.12", "10.77.0.13"]


def test_joiner_waits_for_token_until_first_server_is_installed() -> None:
    lab = lab_of()
    hosts = [node("k3s-node-01"), node("k3s-node-02")]
    found = targets(lab, hosts)
    verdict = K3sConfig().diff(found["k3s-node-02"])
    assert verdict.kind is DiffKind.CANNOT and "waiting for the cluster token" in verdict.reason
    hosts[0].files[TOKEN_FILE] = TOKEN + "\n"
    verdict = K3sConfig().diff(found["k3s-node-02"])
    assert verdict.kind is DiffKind.CHANGE
    (change,) = verdict.changes
    assert change.argv == ("install", "-D", "-m", "0600", "/dev/stdin", CONFIG_FILE)
    assert isinstance(change.stdin, str) and yaml.safe_load(change.stdin)["token"] == TOKEN
    shown = f"{change!r} {change.before} {change.after} {change.summary} {change.command()}"
    assert TOKEN not in shown and "token" in change.after


def test_config_already_there_is_no_change() -> None:
    lab = lab_of()
    host = node("k3s-node-01")
    wanted = desired_config(lab, lab.node("k3s-node-01"), None)
    host.files[CONFIG_FILE] = yaml.safe_dump(wanted, sort_keys=False)  # key order is irrelevant
    assert K3sConfig().diff(targets(lab, [host])["k3s-node-01"]).kind is DiffKind.NONE


def test_config_drift_names_only_changed_keys() -> None:
    lab = lab_of()
    host = node("k3s-node-01")
    wanted = desired_config(lab, lab.node("k3s-node-01"), None)
    host.files[CONFIG_FILE] = yaml.safe_dump({**wanted, "disable": []})
    (change,) = K3sConfig().diff(targets(lab, [host])["k3s-node-01"]).changes
    assert change.before == "disable=[]" and change.after == "disable=['traefik']"


def test_params_token_is_used_on_every_server(tmp_path: Path) -> None:
    secret_file = tmp_path / "k3s-token"
    secret_file.write_text(TOKEN)
    from labkit.secrets import SecretRef

    lab = lab_of(token=SecretRef(file=secret_file))
    hosts = [node("k3s-node-01"), node("k3s-node-02")]
    found = targets(lab, hosts)
    for name in ("k3s-node-01", "k3s-node-02"):
        (change,) = K3sConfig().diff(found[name]).changes
        assert isinstance(change.stdin, str) and yaml.safe_load(change.stdin)["token"] == TOKEN


@pytest.mark.parametrize(
    ("installed", "kind"),
    [("v1.31.12+k3s1", DiffKind.NONE), ("v1.30.1+k3s1", DiffKind.CHANGE), (None, DiffKind.CHANGE)],
)
def test_binary_installed_detection(installed: str | None, kind: DiffKind) -> None:
    lab = lab_of()
    host = node("k3s-node-01", installed)
    verdict = K3sBinary().diff(targets(lab, [host])["k3s-node-01"])
    assert verdict.kind is kind
    if kind is DiffKind.CHANGE:
        assert verdict.changes[-1].argv == (
            "env",
            "INSTALL_K3S_VERSION=v1.31.12+k3s1",
            "INSTALL_K3S_EXEC=server",
            "sh",
            INSTALL_SCRIPT,
        )


def test_no_internet_and_no_airgap_dir_downloads_nothing() -> None:
    lab = lab_of().model_copy(update={"internet": False})
    verdict = K3sBinary().diff(targets(lab, [node("k3s-node-01")])["k3s-node-01"])
    assert verdict.kind is DiffKind.CANNOT
    assert "k3s.airgap_dir" in verdict.reason and "downloads nothing" in verdict.reason


def test_airgap_uploads_binary_script_images_then_skips_download(tmp_path: Path) -> None:
    (tmp_path / "k3s").write_bytes(b"\x7fELF fake")
    (tmp_path / "install.sh").write_text("#!/bin/sh\n")
    (tmp_path / "k3s-airgap-images-amd64.tar.zst").write_bytes(b"images")
    lab = lab_of(airgap_dir=tmp_path).model_copy(update={"internet": False})
    host = node("k3s-node-01")
    verdict = K3sBinary().diff(targets(lab, [host])["k3s-node-01"])
    uploads = [(c.upload.name if c.upload else None, c.upload_to) for c in verdict.changes]
    assert uploads[:2] == [("k3s", "/usr/local/bin/k3s"), ("install.sh", INSTALL_SCRIPT)]
    assert verdict.changes[-1].argv[:2] == ("env", "INSTALL_K3S_SKIP_DOWNLOAD=true")
    for change in verdict.changes:
        host.answers.setdefault(change.argv, Reply())
        change.apply(host)
    assert host.uploads["/usr/local/bin/k3s"] == b"\x7fELF fake"
    assert "curl" not in {c[0] for c in host.calls}


def test_airgap_dir_without_binary_says_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "install.sh").write_text("#!/bin/sh\n")
    lab = lab_of(airgap_dir=tmp_path)
    verdict = K3sBinary().diff(targets(lab, [node("k3s-node-01")])["k3s-node-01"])
    assert verdict.kind is DiffKind.CANNOT and "install.sh" in verdict.reason


SHOW = ("systemctl", "show", "k3s", "--property=ActiveState", "--property=MainPID")


@pytest.mark.parametrize(
    ("active", "config_mtime", "expected"),
    [
        ("active", "100", []),
        ("active", "300", [("systemctl", "restart", "k3s")]),
        ("failed", "100", [("systemctl", "restart", "k3s")]),
    ],
)
def test_service(active: str, config_mtime: str, expected: list[tuple[str, ...]]) -> None:
    lab = lab_of()
    host = node("k3s-node-01", "v1.31.12+k3s1")
    host.answers[SHOW] = Reply(
        0, f"ActiveState={active}\nMainPID={42 if active == 'active' else 0}\n"
    )
    host.answers[("date", "+%s")] = Reply(0, "1000\n")
    host.answers[("ps", "-o", "etimes=", "-p", "42")] = Reply(0, "    800\n")  # started at 200
    host.answers[("stat", "-c", "%Y", CONFIG_FILE)] = Reply(0, config_mtime + "\n")
    verdict = K3sService().diff(targets(lab, [host])["k3s-node-01"])
    assert [c.argv for c in verdict.changes] == expected


def test_service_without_k3s_cannot() -> None:
    verdict = K3sService().diff(targets(lab_of(), [node("k3s-node-01")])["k3s-node-01"])
    assert verdict.kind is DiffKind.CANNOT


def test_token_change_is_shown_masked() -> None:
    lab = lab_of()
    hosts = [node("k3s-node-01"), node("k3s-node-02")]
    hosts[0].files[TOKEN_FILE] = TOKEN + "\n"
    wanted = desired_config(lab, lab.node("k3s-node-02"), Secret(TOKEN, "test"))
    hosts[1].files[CONFIG_FILE] = yaml.safe_dump({**wanted, "token": "old-token-value"})
    (change,) = K3sConfig().diff(targets(lab, hosts)["k3s-node-02"]).changes
    assert (change.before, change.after) == (f"token={MASK}", f"token={MASK}")


def test_a_broken_config_yaml_names_node_and_file_without_quoting_it() -> None:
    lab = lab_of()
    host = node("k3s-node-01")
    host.files[CONFIG_FILE] = f"token: [{TOKEN}\n"  # unclosed: not YAML
    with pytest.raises(StepError) as raised:
        K3sConfig().diff(targets(lab, [host])["k3s-node-01"])
    message = str(raised.value)
    assert f"k3s-node-01:{CONFIG_FILE} is not valid YAML (line 2)" in message
    assert TOKEN not in message and "fix or remove it" in message


def test_credentials_already_in_config_yaml_are_never_shown() -> None:
    lab = lab_of()
    host = node("k3s-node-01")
    current = {"agent-token": "agent-secret-1234", "etcd-s3-secret-key": "s3-secret-5678"}
    host.files[CONFIG_FILE] = yaml.safe_dump(current)
    (change,) = K3sConfig().diff(targets(lab, [host])["k3s-node-01"]).changes
    shown = f"{change.before} {change.after} {change.command()}"
    assert "agent-token=*****" in change.before and "etcd-s3-secret-key=*****" in change.before
    assert "agent-secret-1234" not in shown and "s3-secret-5678" not in shown
