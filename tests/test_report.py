"""Report: the tracker comes from results; tables mask secrets; the page works offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from labkit.report import build_report, check_table_html, check_table_text, tracker
from labkit.secrets import Secret
from tests.htmlcheck import external_fetches


def _row(item_id: str, status: str, at: str = "2026-11-20T10:00:00+00:00") -> dict[str, Any]:
    return {
        "id": item_id,
        "title": f"item {item_id}",
        "step": item_id.rsplit(".", 1)[0],
        "status": status,
        "expected": "",
        "observed": "",
        "evidence": "",
        "duration_s": 0.0,
        "subject": "",
        "at": at,
    }


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["pass", "pass"], "✅ Complete"),
        (["pass", "fail"], "❌ Failing"),
        (["pass", "error"], "❌ Failing"),
        (["pass", "skip"], "◐ Partial"),
        (["pass", "not implemented"], "◐ Partial"),
        (["skip", "skip"], "⏭️ Skipped here"),
        (["not implemented"], "⬜ Not verified"),
        ([], "⬜ Not verified"),
    ],
)
def test_step_status(statuses: list[str], expected: str) -> None:
    rows = [_row(f"2.3.{i + 1}", status) for i, status in enumerate(statuses)]
    step = next(r for r in tracker(rows) if r["phase"].startswith("Phase 2.3"))
    assert step["status"] == expected


def test_completion_date_is_the_last_all_green_run() -> None:
    history = [
        ("2026-11-01", [_row("2.3.1", "pass")]),
        ("2026-11-05", [_row("2.3.1", "pass")]),
        ("2026-11-09", [_row("2.3.1", "fail")]),
    ]
    step = next(r for r in tracker([_row("2.3.1", "fail")], history) if "2.3" in r["phase"])
    assert step["status"] == "❌ Failing"
    assert step["completed"] == "2026-11-05"


def test_steps_without_checklist_say_so() -> None:
    step = next(r for r in tracker([]) if r["phase"].startswith("Phase 7.1"))
    assert step["status"] == "— No checklist"


def test_tables_mask_secrets() -> None:
    Secret("table-secret-31337", "test")
    row = _row("2.2.5", "pass") | {"evidence": "psql password=table-secret-31337"}
    assert "table-secret-31337" not in check_table_html([row])
    assert "table-secret-31337" not in check_table_text([row | {"observed": "table-secret-31337"}])


def test_report_is_offline_and_complete(tmp_path: Path) -> None:
    (tmp_path / "charts").mkdir()
    (tmp_path / "run.json").write_text(
        json.dumps(
            {
                "run_id": "r1",
                "lab": "t",
                "status": "passed",
                "started_at": "s",
                "ended_at": "e",
                "notebooks": [
                    {
                        "notebook": "00-preflight.ipynb",
                        "output": "00-preflight.ipynb",
                        "status": "ok",
                        "duration_s": 1.0,
                    }
                ],
                "checks": {"pass": 1},
            }
        )
    )
    (tmp_path / "results.json").write_text(
        json.dumps({"checks": [_row("0.1.1", "pass")], "load": []})
    )
    import plotly.graph_objects as go

    go.Figure(go.Scatter(x=[1, 2], y=[3, 4])).write_json(tmp_path / "charts" / "demo.json")
    page = build_report(tmp_path).read_text()
    assert "Current Status Tracker" in page and "0.1.1" in page and "demo" in page
    assert external_fetches(page) == []
    assert "Plotly.newPlot" in page or "Plotly.react" in page
