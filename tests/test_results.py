"""results.json: records from notebooks are collected in order, redacted, in one schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labkit.results import SCHEMA, collect, record, write_results
from labkit.secrets import Secret

_CHECK = {
    "id": "0.1.1",
    "title": "params valid",
    "step": "0.1",
    "status": "pass",
    "expected": "",
    "observed": "",
    "evidence": "",
    "duration_s": 0.0,
}


def test_record_is_a_no_op_outside_a_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABKIT_RUN_DIR", raising=False)
    assert record("checks", [{"id": "0.1.1"}]) is None


def test_records_are_collected_per_kind_in_notebook_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABKIT_RUN_DIR", str(tmp_path))
    monkeypatch.setenv("LABKIT_NOTEBOOK", "02-stateful-services")
    record("checks", [{**_CHECK, "id": "2.3.2"}])
    monkeypatch.setenv("LABKIT_NOTEBOOK", "00-preflight")
    record("checks", [_CHECK, {**_CHECK, "id": "0.1.2"}])
    record("load", [{"target_rps": 1000}])
    records = collect(tmp_path)
    grouped = records.by_kind
    assert [c["id"] for c in grouped["checks"]] == ["0.1.1", "0.1.2", "2.3.2"]
    assert grouped["checks"][0]["notebook"] == "00-preflight"
    assert grouped["load"] == [{"target_rps": 1000, "notebook": "00-preflight"}]
    assert grouped["drills"] == [] and grouped["plans"] == []
    assert records.skipped == []


def _line(kind: str, item: object, notebook: object = "01-x") -> str:
    return json.dumps({"kind": kind, "notebook": notebook, "item": item})


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ('{"kind": "checks", "notebook": "01-x", "it', "not JSON (Unterminated string"),
        ("[1, 2]", "not a record (an object with kind, notebook and item)"),
        (_line("checks", "pass"), "not a record"),
        (_line("checks", _CHECK, notebook=None), "not a record"),
        (_line("verdicts", {"id": "x"}), "unknown kind 'verdicts'; expected one of checks,"),
        (
            _line("checks", {k: v for k, v in _CHECK.items() if k != "status"}),
            "check 0.1.1 has no status",
        ),
        (_line("checks", {"status": "pass"}), "a check has no id, title, step, expected"),
        (
            _line("checks", {**_CHECK, "status": "passed"}),
            "check 0.1.1 has status 'passed'; expected one of pass, fail, skip, error, not impl",
        ),
    ],
)
def test_a_bad_record_is_skipped_with_its_file_and_line(
    tmp_path: Path, line: str, why: str
) -> None:
    (tmp_path / "records").mkdir()
    good = _line("checks", _CHECK)
    (tmp_path / "records" / "01-x.jsonl").write_text(f"{good}\n\n{line}\n{good}\n")
    records = collect(tmp_path)
    assert [check["id"] for check in records.by_kind["checks"]] == ["0.1.1", "0.1.1"]
    (skipped,) = records.skipped
    assert skipped.startswith("records/01-x.jsonl line 3: skipped, ")
    assert why in skipped


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
        "runbooks",
    }
