"""`labkit check --phase 2` / `--phase 3` on a homelab-kind params file whose cluster is the double.

The double holds the phase 2-3 lab with its port-forwards relayed to this session's
sandbox, so every item of the phase (cluster objects and data plane) runs for real;
holding a broken lab, the command fails and names the object and what was seen.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from labkit.cli import main
from labkit.params import Lab
from labkit.roadmap import ITEMS
from labkit.sandbox import Sandbox
from tests.kubeapi import KubeApi, data_lab

pytestmark = pytest.mark.sandbox


@pytest.fixture
def double(sandbox: Sandbox, sandbox_lab: Lab) -> Iterator[KubeApi]:
    password = sandbox_lab.secret(sandbox_lab.postgres.password).reveal()
    api_key = sandbox_lab.secret(sandbox_lab.shlink.api_key).reveal()
    with KubeApi() as api:
        data_lab.data_lab(api.store, pg_password=password, api_key=api_key)
        data_lab.relay_to(api, sandbox_lab)
        yield api


def _check(params: Path, phase: str, out: Path) -> tuple[int, list[dict[str, str]]]:
    code = main(["check", "--params", str(params), "--phase", phase, "--json", str(out)])
    return code, json.loads(out.read_text(encoding="utf-8"))["checks"]


@pytest.mark.parametrize("phase", ["2", "3"])
def test_check_passes_every_item_of_the_phase_on_a_healthy_cluster_lab(
    double: KubeApi,
    tmp_path: Path,
    sandbox_lab: Lab,
    phase: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    params = data_lab.cluster_params(double, tmp_path / "lab", sandbox_lab)
    document = yaml.safe_load(params.read_text(encoding="utf-8"))
    assert document["kind"] == "homelab"
    assert Path(document["k3s"]["kubeconfig"]).is_file()
    code, checks = _check(params, phase, tmp_path / "results.json")
    output = capsys.readouterr().out
    assert code == 0, output
    by_status: dict[str, set[str]] = {}
    for row in checks:
        by_status.setdefault(row["status"], set()).add(row["id"])
    cluster_items = {e.id for e in ITEMS if e.id.startswith(f"{phase}.") and e.needs == "cluster"}
    assert cluster_items and cluster_items <= by_status["pass"]
    assert set(by_status) <= {"pass", "skip"}
    # Only persistence (a pod restart) is left to the sandbox; it says so.
    assert by_status.get("skip", set()) <= {"2.3.5"}
    assert "not_implemented" not in output


def test_check_fails_on_a_broken_cluster_lab_naming_the_object(
    double: KubeApi, tmp_path: Path, sandbox_lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    data_lab.postgres_cluster_not_ready(double.store)
    data_lab.external_secret_not_synced(double.store)
    params = data_lab.cluster_params(double, tmp_path / "lab", sandbox_lab)
    code, checks = _check(params, "2", tmp_path / "two.json")
    assert code != 0
    failed = {(r["id"], r["subject"]): r["observed"] for r in checks if r["status"] == "fail"}
    assert "instance1: 1/2 ready" in failed[("2.2.2", "instances")]
    assert data_lab.REPLICA in failed[("2.2.2", "")]
    code, checks = _check(params, "3", tmp_path / "three.json")
    assert code != 0
    failed = {(r["id"], r["subject"]): r["observed"] for r in checks if r["status"] == "fail"}
    assert "Ready=False (SecretSyncedError" in failed[("3.1.2", "shlink-secrets")]
    # Shlink's API key lives in the Secret that was not synced: the API items say so.
    assert "shlink/shlink-secrets" in failed[("3.2.4", "")] or (
        "Secret shlink/shlink-secrets" in failed[("3.2.5", "")]
    )
    capsys.readouterr()
