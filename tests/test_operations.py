"""Notebook 07's calls: the architecture diagram from params; demo mode never applies."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit import operations
from labkit.params import load_lab

REPOSITORY = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("params", ["local.yaml", "homelab.yaml"])
def test_the_diagram_names_the_labs_components(params: str) -> None:
    lab = load_lab(REPOSITORY / "params" / params)
    diagram = operations.diagram(lab)
    ids = {box["id"] for box in diagram["boxes"]}
    assert all(edge["from"] in ids and edge["to"] in ids for edge in diagram["edges"])
    labels = " ".join(box["label"] for box in diagram["boxes"])
    assert "Sentinels" in labels and "standby" in labels
    assert ("Istio" in labels) is (lab.kind != "sandbox")
    assert all(node.name in labels for node in lab.nodes)


def test_demo_mode_shows_plans_even_with_apply(capsys: pytest.CaptureFixture[str]) -> None:
    lab = load_lab(REPOSITORY / "params" / "local.yaml")
    outcome = operations.backup_restore(lab, apply=True, demo=True)  # plans read nothing
    assert outcome.status == "planned"
    assert "demo mode: plan only" in capsys.readouterr().out


def test_runbook_index_points_at_documents_that_exist() -> None:
    index = operations.runbook_index()
    for doc in index["doc"]:
        assert (REPOSITORY / doc).is_file(), doc
