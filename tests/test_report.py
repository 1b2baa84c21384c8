"""Report: the tracker comes from results; tables mask secrets; the page works offline."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from labkit.report import (
    LONG_TABLE,
    build_report,
    check_table_html,
    check_table_text,
    drill_timeline_figure,
    table,
    tracker,
)
from labkit.secrets import Secret
from tests.chartcheck import log_axis_problems
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


_EMOJI = re.compile("[\U0001f300-\U0001faff\u2600-\u27bf\u2b1c\u23ed\u25d0]")


def test_status_marks_render_without_emoji_fonts(tmp_path: Path) -> None:
    """report.html's marks are text in CSS badges: no emoji a machine may lack a font for."""
    test_report_is_offline_and_complete(tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert _EMOJI.findall(page) == []
    assert '<span class="labkit-badge labkit-pass">pass</span>' in page  # the check
    assert '<span class="labkit-badge labkit-ok">ok</span>' in page  # the notebook
    assert "labkit-partial" in page or "labkit-not-verified" in page  # the tracker


@pytest.mark.parametrize(("count", "folded"), [(LONG_TABLE, False), (LONG_TABLE + 1, True)])
def test_long_check_tables_fold_with_their_count_never_cut(count: int, folded: bool) -> None:
    rows = [_row(f"2.3.{i}", "pass" if i % 3 else "skip") for i in range(count)]
    page = check_table_html(rows)
    assert page.count("<tr ") == count  # every row is there
    assert ('<details class="labkit-long" open>' in page) == folded
    if folded:
        passed = sum(1 for i in range(count) if i % 3)
        assert f"{count} results: {count - passed} skip, {passed} pass" in page


def test_tables_have_a_stable_column_layout() -> None:
    page = check_table_html([_row("1.2.3", "fail")])
    assert "table-layout:fixed" in page and "<colgroup>" in page
    assert '<td class="labkit-nowrap">1.2.3</td>' in page  # ids and "took" never wrap


def test_a_long_reference_table_is_folded_with_its_count() -> None:
    shown = table([{"id": str(i), "item": "x" * 200} for i in range(107)], what="roadmap items")
    page = shown._repr_html_()
    assert "<summary>107 roadmap items (click to unfold)</summary>" in page
    assert page.count("<tr>") == 108 and "x" * 200 in page  # not cut, not ellipsised
    assert len(shown.to_frame()) == 107


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


def test_a_drill_second_without_answers_is_a_gap_on_the_log_latency_axis() -> None:
    # During a failover every request of a second can fail: its P99 is no number (it was
    # plotted as 0, which a log axis cannot show; seen in a full run's postgres drill).
    rows = [
        {"t_s": float(second), "requests": 10, "ok": ok, "failed": 10 - ok, "p99_ms": p99}
        for second, (ok, p99) in enumerate([(10, 12.0), (0, 0.0), (0, 0.0), (10, 900.0)])
    ]
    entry = {"scenario": "postgres-primary", "timeline": rows, "fault": {"at_s": 1.0}}
    figure = json.loads(drill_timeline_figure(entry).to_json())
    assert log_axis_problems(figure) == []
    (latency,) = [trace for trace in figure["data"] if trace["name"] == "P99 ms"]
    assert latency["y"] == [12.0, None, None, 900.0]
