"""results.json: records from notebooks are collected in order, redacted, in one schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labkit.results import SCHEMA, collect, record, write_results
from labkit.secrets import Secret


def test_record_is_a_no_op_outside_a_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABKIT_RUN_DIR", raising=False)
    assert record("checks", [{"id": "0.1.1"}]) is None


def test_records_are_collected_per_kind_in_notebook_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABKIT_RUN_DIR", str(tmp_path))
    monkeypatch.setenv("LABKIT_NOTEBOOK", "02-stateful-services")
    record("checks", [{"id": "2.3.2"}])
    monkeypatch.setenv("LABKIT_NOTEBOOK", "00-preflight")
    record("checks", [{"id": "0.1.1"}, {"id": "0.1.2"}])
    record("load", [{"target_rps": 1000}])
    grouped = collect(tmp_path)
    assert [c["id"] for c in grouped["checks"]] == ["0.1.1", "0.1.2", "2.3.2"]
    assert grouped["checks"][0]["notebook"] == "00-preflight"
    assert grouped["load"] == [{"target_rps": 1000, "notebook": "00-preflight"}]
    assert grouped["drills"] == [] and grouped["plans"] == []


def test_write_results_masks_secrets(tmp_path: Path) -> None:
    Secret("results-secret-2718", "test")
    document = write_results(
        tmp_path / "results.json",
        lab="t",
        checks=[{"id": "2.2.5", "evidence": "password=results-secret-2718"}],
        run_id="r",
        load=[{"url": "http://results-secret-2718@127.0.0.1/"}],
    )
    text = (tmp_path / "results.json").read_text()
    assert "results-secret-2718" not in text
    assert json.loads(text) == document
    assert document["schema"] == SCHEMA
    assert set(document) == {
        "schema",
        "run_id",
        "lab",
        "generated_at",
        "checks",
        "load",
        "drills",
        "plans",
    }
