"""The command line: `labkit check` prints the table, writes results.json, exits by the results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labkit.cli import main

REPOSITORY = Path(__file__).resolve().parent.parent


def test_check_phase_0_prints_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "results.json"
    code = main(
        [
            "check",
            "--params",
            str(REPOSITORY / "params" / "homelab.yaml"),
            "--phase",
            "0",
            "--json",
            str(target),
        ]
    )
    out = capsys.readouterr().out
    document = json.loads(target.read_text())
    assert document["schema"] == "labkit.results/1"
    ids = {row["id"] for row in document["checks"]}
    assert ids == {"0.1.1", "0.1.2", "0.1.3", "0.1.4", "0.1.5", "0.1.6"}
    # The homelab's Istio 1.24.2 on Kubernetes 1.33 is outside Istio's supported range.
    assert code == 1
    assert "istio 1.24.2 on Kubernetes 1.33" in out
    assert "homelab:" in out


def test_unknown_phase_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["check", "--params", "params/local.yaml", "--phase", "9"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
