"""Kubeconfig: parsed rewrite (not string replacement), saved 0600, unchanged on rerun."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from fakehost import FakeHost

from labkit.errors import StepError
from labkit.params import load_lab
from labkit.steps import DiffKind, Kubeconfig, Target
from labkit.steps.kubeconfig import K3S_KUBECONFIG, rewrite_kubeconfig

LOCAL = Path(__file__).resolve().parents[2] / "params" / "local.yaml"
K3S_YAML = {
    "apiVersion": "v1",
    "clusters": [
        {
            "cluster": {
                # Raw text "default" inside data that must survive: a string replacement
                # of the names would change it.
                "certificate-authority-data": "LS0tdefault-ca-data-default==",
                "server": "https://127.0.0.1:6443",
            },
            "name": "default",
        }
    ],
    "contexts": [{"context": {"cluster": "default", "user": "default"}, "name": "default"}],
    "current-context": "default",
    "kind": "Config",
    "users": [{"name": "default", "user": {"client-key-data": "c2VjcmV0LWtleS1kZWZhdWx0"}}],
}


def test_rewrite_sets_server_and_names_but_keeps_data() -> None:
    out = rewrite_kubeconfig(K3S_YAML, "https://10.77.0.11:6443", "sandbox")
    assert out["clusters"][0]["cluster"]["server"] == "https://10.77.0.11:6443"
    assert out["clusters"][0]["cluster"]["certificate-authority-data"] == (
        "LS0tdefault-ca-data-default=="
    )
    assert out["contexts"] == [
        {"context": {"cluster": "sandbox", "user": "sandbox"}, "name": "sandbox"}
    ]
    assert out["current-context"] == "sandbox" and out["users"][0]["name"] == "sandbox"
    assert K3S_YAML["current-context"] == "default"  # the input is not modified


def test_rewrite_refuses_unexpected_shape() -> None:
    with pytest.raises(StepError, match="exactly one entry under 'clusters'"):
        rewrite_kubeconfig({**K3S_YAML, "clusters": []}, "https://x:6443", "lab")


def test_fetch_save_0600_then_nothing_to_do(tmp_path: Path) -> None:
    lab = load_lab(LOCAL)
    lab = lab.model_copy(
        update={"k3s": lab.k3s.model_copy(update={"kubeconfig": tmp_path / "kc.yaml"})}
    )
    host = FakeHost("k3s-node-01", "10.77.0.11", files={K3S_KUBECONFIG: yaml.safe_dump(K3S_YAML)})
    target = Target(lab.node("k3s-node-01"), host, lab)
    verdict = Kubeconfig().diff(target)
    assert verdict.kind is DiffKind.CHANGE
    for change in verdict.changes:
        change.apply(host)
    saved = tmp_path / "kc.yaml"
    assert saved.stat().st_mode & 0o777 == 0o600
    assert yaml.safe_load(saved.read_text())["current-context"] == lab.name
    assert Kubeconfig().diff(target).kind is DiffKind.NONE
    saved.chmod(0o644)
    assert Kubeconfig().diff(target).kind is DiffKind.CHANGE


def test_no_k3s_yet_cannot(tmp_path: Path) -> None:
    lab = load_lab(LOCAL)
    verdict = Kubeconfig().diff(Target(lab.node("k3s-node-01"), FakeHost(), lab))
    assert verdict.kind is DiffKind.CANNOT and K3S_KUBECONFIG in verdict.reason
