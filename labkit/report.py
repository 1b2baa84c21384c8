"""Tables, plotly figures and the offline HTML report of a run; the only module building figures."""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from labkit.secrets import redact

__all__ = [
    "STATUS_ICONS",
    "build_report",
    "check_table_html",
    "check_table_text",
    "show",
    "show_figure",
    "tracker",
    "tracker_html",
    "tracker_markdown",
]

STATUS_ICONS = {
    "pass": "✅",
    "fail": "❌",
    "skip": "⏭️",
    "error": "💥",
    "not implemented": "⬜",
}
_COLOURS = {
    "pass": "#d9f2d9",
    "fail": "#f8d0d0",
    "skip": "#eeeeee",
    "error": "#f5c26b",
    "not implemented": "#ffffff",
}
_CSS = """
<style>
.labkit-table{border-collapse:collapse;font:13px/1.4 system-ui,sans-serif;margin:.5em 0}
.labkit-table th,.labkit-table td{border:1px solid #ccc;padding:3px 6px;vertical-align:top;
text-align:left}
.labkit-table th{background:#f4f4f4}
.labkit-table details summary{cursor:pointer;color:#555}
.labkit-table pre{white-space:pre-wrap;margin:0;max-width:60em;font-size:12px}
</style>
"""


def _cell(value: Any) -> str:
    return html.escape(str(value))


def check_table_html(rows: Iterable[Mapping[str, Any]]) -> str:
    """An HTML table of check results (redacted), one row per result, evidence folded."""
    body = []
    for row in redact([dict(row) for row in rows]):
        status = str(row["status"])
        evidence = row.get("evidence") or ""
        folded = (
            f"<details><summary>evidence</summary><pre>{_cell(evidence)}</pre></details>"
            if evidence
            else ""
        )
        body.append(
            f'<tr style="background:{_COLOURS.get(status, "#fff")}">'
            f"<td>{_cell(row['id'])}</td><td>{_cell(row['title'])}</td>"
            f"<td>{_cell(row.get('subject', ''))}</td>"
            f"<td>{STATUS_ICONS.get(status, '')} {_cell(status)}</td>"
            f"<td>{_cell(row.get('expected', ''))}</td><td>{_cell(row.get('observed', ''))}"
            f"{folded}</td><td>{float(row.get('duration_s', 0.0)):.3f}s</td></tr>"
        )
    head = (
        "<tr><th>id</th><th>check</th><th>subject</th><th>status</th><th>expected</th>"
        "<th>observed</th><th>took</th></tr>"
    )
    return f'{_CSS}<table class="labkit-table">{head}{"".join(body)}</table>'


def check_table_text(rows: Iterable[Mapping[str, Any]], width: int = 90) -> str:
    """A plain-text table of check results for terminals and logs (redacted)."""
    lines = [f"{'id':<7} {'status':<17} check", f"{'':<7} {'':<17} -> subject: observed"]
    for row in redact([dict(row) for row in rows]):
        status = str(row["status"])
        observed = re.sub(r"\s+", " ", str(row.get("observed", "")))
        subject = f"{row['subject']}: " if row.get("subject") else ""
        lines.append(f"{row['id']:<7} {STATUS_ICONS.get(status, '')} {status:<15} {row['title']}")
        lines.append(f"{'':<7} {'':<17} -> {(subject + observed)[:width]}")
    return "\n".join(lines)


def show(value: Any) -> Any:
    """Display ``value`` in a notebook with secrets masked; returns it for chaining."""
    from IPython.display import HTML, display  # noqa: PLC0415 - notebooks only

    if hasattr(value, "_repr_html_"):
        display(HTML(redact(value._repr_html_())))  # type: ignore[no-untyped-call]
    else:
        display(redact(value))  # type: ignore[no-untyped-call]
    return value


_TRACKER_ICONS = {
    "complete": "✅ Complete",
    "failing": "❌ Failing",
    "partial": "◐ Partial",
    "skipped": "⏭️ Skipped here",
    "not verified": "⬜ Not verified",
    "no checklist": "— No checklist",
}


def _step_status(rows: list[Mapping[str, Any]]) -> str:
    statuses = {str(row["status"]) for row in rows}
    if not rows:
        return "not verified"
    if statuses & {"fail", "error"}:
        return "failing"
    if statuses == {"pass"}:
        return "complete"
    if "pass" in statuses:
        return "partial"
    return "skipped" if statuses == {"skip"} else "not verified"


def tracker(
    checks: list[Mapping[str, Any]],
    history: list[tuple[str, list[Mapping[str, Any]]]] | None = None,
) -> list[dict[str, str]]:
    """The roadmap's Current Status Tracker, generated from results.

    ``history`` is (date, checks) of earlier runs of the same lab, oldest first; the
    completion date is the last date where every check of that step passed.
    """
    from labkit.checks.roadmap import STEPS, items_for  # noqa: PLC0415

    rows = []
    for step, title in STEPS.items():
        step_items = [entry for entry in items_for() if entry.step == step]
        mine = [row for row in checks if str(row.get("step")) == step]
        status = _step_status(mine) if step_items else "no checklist"
        completed = ""
        for date, earlier in history or []:
            theirs = [row for row in earlier if str(row.get("step")) == step]
            if theirs and _step_status(theirs) == "complete":
                completed = date
        if status == "complete" and not completed and checks:
            completed = str(mine[0].get("at", ""))[:10]
        counts: dict[str, int] = {}
        for row in mine:
            counts[str(row["status"])] = counts.get(str(row["status"]), 0) + 1
        if step_items:
            notes = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "not run"
        else:
            notes = "the roadmap lists no validation checklist"
        phase = "Preflight" if step.startswith("0.") else f"Phase {step}: {title}"
        rows.append(
            {
                "phase": phase,
                "status": _TRACKER_ICONS[status],
                "completed": completed,
                "notes": notes,
            }
        )
    return rows


def tracker_html(rows: list[dict[str, str]]) -> str:
    """The status tracker as an HTML table."""
    body = "".join(
        f"<tr><td>{_cell(r['phase'])}</td><td>{_cell(r['status'])}</td>"
        f"<td>{_cell(r['completed'])}</td><td>{_cell(r['notes'])}</td></tr>"
        for r in rows
    )
    head = "<tr><th>Phase</th><th>Status</th><th>Completion Date</th><th>Notes</th></tr>"
    return f'{_CSS}<table class="labkit-table">{head}{body}</table>'


def tracker_markdown(rows: list[dict[str, str]]) -> str:
    """The status tracker in the roadmap's own Markdown table format."""
    lines = [
        "| Phase | Status | Completion Date | Notes |",
        "|-------|--------|-----------------|-------|",
    ]
    lines += [f"| {r['phase']} | {r['status']} | {r['completed']} | {r['notes']} |" for r in rows]
    return "\n".join(lines)


def _history(run_dir: Path, lab: str) -> list[tuple[str, list[Mapping[str, Any]]]]:
    """Checks of earlier runs of ``lab`` in the sibling folders, oldest first."""
    earlier = []
    for other in sorted(run_dir.parent.glob("*/results.json")):
        if other.parent == run_dir:
            continue
        try:
            document = json.loads(other.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if document.get("lab") == lab and document.get("generated_at"):
            earlier.append((str(document["generated_at"])[:10], document.get("checks", [])))
    return sorted(earlier, key=lambda pair: pair[0])


def _load_table_html(load: list[Mapping[str, Any]]) -> str:
    if not load:
        return "<p>No load results in this run.</p>"
    head = (
        "<tr><th>scenario / target</th><th>target rps</th><th>achieved rps</th><th>requests</th>"
        "<th>p50 ms</th><th>p99 ms</th><th>errors</th><th>generator limited</th></tr>"
    )
    body = []
    for row in load:
        latency = row.get("latency_ms", {}).get("corrected", {})
        errors = sum(int(v) for v in (row.get("errors") or {}).values())
        body.append(
            f"<tr><td>{_cell(row.get('scenario') or row.get('url', ''))}</td>"
            f"<td>{_cell(row.get('target_rps', ''))}</td><td>{_cell(row.get('achieved_rps', ''))}"
            f"</td><td>{_cell(row.get('requests', ''))}</td><td>{_cell(latency.get('p50', ''))}"
            f"</td><td>{_cell(latency.get('p99', ''))}</td><td>{errors}</td>"
            f"<td>{_cell(row.get('generator_limited', ''))}</td></tr>"
        )
    return f'<table class="labkit-table">{head}{"".join(body)}</table>'


def build_report(run_dir: Path) -> Path:
    """Write ``report.html`` for a run folder: one page, viewable offline, charts included."""
    import plotly.io as pio  # noqa: PLC0415
    from plotly.offline import get_plotlyjs  # noqa: PLC0415

    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    checks = results.get("checks", [])
    rows = tracker(checks, _history(run_dir, str(run.get("lab"))))
    notebook_rows = "".join(
        f'<tr><td><a href="{_cell(n["output"])}">{_cell(n["notebook"])}</a></td>'
        f"<td>{'✅' if n['status'] == 'ok' else '❌'} {_cell(n['status'])}</td>"
        f"<td>{_cell(n.get('duration_s', ''))}s</td><td>{_cell(n.get('error', ''))}</td></tr>"
        for n in run.get("notebooks", [])
    )
    charts = []
    for index, path in enumerate(sorted((run_dir / "charts").glob("*.json"))):
        figure = pio.from_json(path.read_text(encoding="utf-8"))
        charts.append(
            f"<h3>{_cell(path.stem)}</h3>"
            + figure.to_html(full_html=False, include_plotlyjs=False, div_id=f"chart-{index}")
        )
    script = f"<script>{get_plotlyjs()}</script>" if charts else ""
    counts = ", ".join(f"{n} {s}" for s, n in run.get("checks", {}).items() if n)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>labkit run {_cell(run["run_id"])}</title>
{_CSS}{script}
<style>body{{font:14px/1.5 system-ui,sans-serif;margin:1.5em;max-width:95em}}
.badge{{padding:2px 8px;border-radius:4px;color:#fff}}
.passed{{background:#2a8f2a}}.failed{{background:#c0392b}}.broken{{background:#8e44ad}}</style>
</head><body>
<h1>labkit run {_cell(run["run_id"])}
<span class="badge {_cell(run["status"])}">{_cell(run["status"])}</span></h1>
<p>Lab <b>{_cell(run["lab"])}</b> ({_cell(run.get("lab_kind", ""))}) from
{_cell(", ".join(run.get("params", [])))}; {_cell(run["started_at"])} to
{_cell(run["ended_at"])}; checks: {_cell(counts or "none")}.</p>
{"".join(f"<p>{_cell(note)}</p>" for note in run.get("notes", []))}
<h2>Current Status Tracker</h2>{tracker_html(rows)}
<h2>Notebooks</h2><table class="labkit-table">
<tr><th>notebook</th><th>status</th><th>took</th><th>error</th></tr>{notebook_rows}</table>
<h2>Checks</h2>{check_table_html(checks)}
<h2>Load</h2>{_load_table_html(results.get("load", []))}
<h2>Charts</h2>{"".join(charts) or "<p>No charts in this run.</p>"}
<h2>Versions</h2><pre>{_cell(json.dumps(run.get("versions", {}), indent=1))}</pre>
</body></html>
"""
    target = run_dir / "report.html"
    target.write_text(redact(page), encoding="utf-8")
    return target


def _charts_dir() -> Path | None:
    run = os.environ.get("LABKIT_RUN_DIR")
    return Path(run) / "charts" if run else None


def show_figure(figure: Any, name: str) -> Path | None:
    """Show a plotly figure inline and, under ``labkit run``, save it to ``charts/<name>``.

    Saves ``<name>.json`` (the figure, for the report) and ``<name>.html`` (standalone,
    sharing one ``plotly.min.js`` in the folder). Returns the HTML path when saved.
    """
    figure.show()
    folder = _charts_dir()
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    (folder / f"{slug}.json").write_text(redact(figure.to_json()), encoding="utf-8")
    target = folder / f"{slug}.html"
    figure.write_html(target, include_plotlyjs="directory", div_id=slug, full_html=True)
    return target
