"""``labkit runbook`` and ``labkit doctor`` on the command line (no lab needed for these)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labkit.cli import main

REPOSITORY = Path(__file__).resolve().parents[2]
HOMELAB = str(REPOSITORY / "params" / "homelab.yaml")
LOCAL = str(REPOSITORY / "params" / "local.yaml")


@pytest.mark.parametrize(
    ("arguments", "code", "shown"),
    [
        (["backup-restore", "--params", LOCAL], 0, "plan only: 4 step(s)"),
        (["scale", "--params", LOCAL, "--replicas", "1"], 0, "kill -TTOU"),
        (["routing", "--params", LOCAL, "--apply"], 0, "routing: skip"),
        (["cache-flush", "--params", HOMELAB, "--apply"], 0, "cache-flush: skip"),
    ],
)
def test_runbook_plans_and_skips(
    arguments: list[str], code: int, shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["runbook", *arguments]) == code
    assert shown in capsys.readouterr().out


def test_runbook_writes_json(tmp_path: Path) -> None:
    target = tmp_path / "outcome.json"
    assert main(["runbook", "routing", "--params", HOMELAB, "--json", str(target)]) == 0
    assert json.loads(target.read_text())["status"] == "skip"


def test_replicas_must_be_a_whole_number(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["runbook", "scale", "--params", LOCAL, "--replicas", "0"])
    assert exit_info.value.code == 2
    assert "must be between 1 and 64 replicas (got '0')" in capsys.readouterr().err


def test_doctor_on_a_cluster_lab_writes_what_it_could(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["doctor", "--params", HOMELAB, "--out", str(tmp_path)]) == 0
    assert "skipped: Kubernetes Events" in capsys.readouterr().out
    assert (tmp_path / "doctor.txt").exists()
