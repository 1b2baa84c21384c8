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


def _slides_notebook(path: Path, output_html: str) -> Path:
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    parameters = nbformat.v4.new_code_cell("apply = False  # parameters-cell-text")
    parameters.metadata["tags"] = ["parameters"]
    first = nbformat.v4.new_markdown_cell("# First slide")
    first.metadata["slideshow"] = {"slide_type": "slide"}
    second = nbformat.v4.new_markdown_cell("## Second slide")
    second.metadata["slideshow"] = {"slide_type": "slide"}
    shown = nbformat.v4.new_code_cell("show()")
    shown.outputs = [
        nbformat.v4.new_output("display_data", data={"text/html": output_html, "text/plain": ""})
    ]
    notebook.cells = [parameters, first, second, shown]
    nbformat.write(notebook, path)
    return path


def test_slides_are_one_offline_file_without_parameters_or_secrets(tmp_path: Path) -> None:
    import plotly.graph_objects as go

    from labkit.report import export_slides

    Secret("slides-secret-4242", "test")
    figure = go.Figure(go.Scatter(x=[1, 2], y=[3, 4]))
    # As plotly's notebook renderer does: plotly.js inline, MathJax asked of a CDN.
    html = figure.to_html(full_html=False, include_plotlyjs=True, include_mathjax="cdn")
    notebook = _slides_notebook(tmp_path / "07-x.ipynb", html + "<p>slides-secret-4242</p>")
    page = export_slides(notebook).read_text()
    assert (tmp_path / "07-x.slides.html").exists()
    assert external_fetches(page) == []  # reveal.js inlined, the CDN script dropped
    assert "Reveal.initialize" in page and page.count("<section") >= 2
    assert "parameters-cell-text" not in page
    assert "slides-secret-4242" not in page and "*****" in page


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        ([], False),
        ([{"metadata": {}}], False),
        ([{"metadata": {"slideshow": {"slide_type": "slide"}}}], True),
    ],
)
def test_has_slides(cells: list[dict[str, Any]], expected: bool) -> None:
    from labkit.report import has_slides

    assert has_slides({"cells": cells}) is expected


def test_runbooks_in_the_report_and_their_html_masks_secrets(tmp_path: Path) -> None:
    from labkit.report import runbook_html

    Secret("runbook-secret-777", "test")
    outcome = {
        "runbook": "backup-restore",
        "title": "Back up and restore PostgreSQL",
        "status": "fail",
        "summary": "the restore differs in ['public.visits']",
        "doc": "docs/runbooks/backup-restore.md",
        "steps": [
            {"step": "dump", "state": "done", "command": "pg_dump", "seen": "runbook-secret-777"}
        ],
        "measured": [{"table": "public.visits", "equal": False}],
    }
    assert "runbook-secret-777" not in runbook_html(outcome)
    assert "public.visits" in runbook_html(outcome)
    (tmp_path / "charts").mkdir()
    run = {"run_id": "r", "lab": "t", "status": "failed", "started_at": "s", "ended_at": "e"}
    (tmp_path / "run.json").write_text(json.dumps(run))
    (tmp_path / "results.json").write_text(json.dumps({"checks": [], "runbooks": [outcome]}))
    (tmp_path / "07-x.slides.html").write_text("<html></html>")
    page = build_report(tmp_path).read_text()
    assert "<h2>Runbooks</h2>" in page and "the restore differs" in page
    assert 'href="07-x.slides.html"' in page


def test_architecture_figure_draws_every_box_and_edge() -> None:
    from labkit.report import architecture_figure

    diagram = {
        "title": "t",
        "boxes": [
            {"id": "a", "label": "A\nfirst", "x": 0, "y": 0, "group": "app"},
            {"id": "b", "label": "B", "x": 2, "y": 0, "group": "cache"},
        ],
        "edges": [{"from": "a", "to": "b", "label": "calls"}],
    }
    figure = architecture_figure(diagram)
    texts = [annotation.text for annotation in figure.layout.annotations]
    assert "A<br>first" in texts and "B" in texts and "<i>calls</i>" in texts
    assert sum(1 for a in figure.layout.annotations if a.showarrow) == 1
