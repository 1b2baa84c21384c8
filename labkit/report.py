"""Tables, plotly figures and the offline HTML report of a run; the only module building figures."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from labkit import environment
from labkit.secrets import redact

__all__ = [
    "LONG_TABLE",
    "Table",
    "application_table_html",
    "application_table_text",
    "architecture_figure",
    "badge",
    "build_report",
    "cache_flush_figure",
    "changes_phrase",
    "check_table_html",
    "check_table_text",
    "doctor_html",
    "drill_timeline_figure",
    "drills_table_html",
    "export_slides",
    "has_slides",
    "load_errors_figure",
    "load_spectrum_figure",
    "load_targets_figure",
    "load_timeseries_figure",
    "load_verdict_table",
    "plan_html",
    "promql_figure",
    "red_figure",
    "runbook_html",
    "runbooks_html",
    "scale_figure",
    "show",
    "show_figure",
    "table",
    "tracker",
    "tracker_html",
    "tracker_markdown",
]

_COLOURS = {
    "pass": "#e3f4e3",
    "fail": "#fbe0e0",
    "skip": "#f3f3f3",
    "error": "#fbe7c6",
    "not implemented": "#ffffff",
}
# Plain text in CSS badges, never emoji: a machine without an emoji font shows empty boxes.
# `table.labkit-table.labkit-table td` (the class twice on purpose) outranks JupyterLab's
# `:not(.jp-RenderedMarkdown).jp-RenderedHTMLCommon td` (right-aligned cells); a fixed
# layout with set column widths keeps ids and "took" readable while long text wraps
# inside its column; node, step and status names in the plan and evidence tables never
# wrap (they were squeezed to "k3s-/node-/02").
_CSS = """
<style>
table.labkit-table{border-collapse:collapse;font:13px/1.4 system-ui,sans-serif;margin:.5em 0}
table.labkit-fixed{table-layout:fixed;width:100%}
table.labkit-table.labkit-table th,table.labkit-table.labkit-table td{border:1px solid #ccc;
padding:3px 6px;vertical-align:top;text-align:left;white-space:normal;overflow-wrap:break-word;
word-break:normal}
table.labkit-table th{background:#f4f4f4}
table.labkit-plan.labkit-plan td:nth-child(-n+3),
table.labkit-evidence.labkit-evidence td:nth-child(-n+2){white-space:nowrap}
table.labkit-table.labkit-table td.labkit-nowrap{white-space:nowrap;overflow:hidden}
table.labkit-table details summary{cursor:pointer;color:#555}
table.labkit-table pre{white-space:pre-wrap;overflow-wrap:anywhere;margin:0;font-size:12px}
details.labkit-long>summary{cursor:pointer;font:13px/1.6 system-ui,sans-serif;color:#333}
.labkit-badge{display:inline-block;padding:0 6px;border-radius:3px;font:600 11px/1.6
system-ui,sans-serif;white-space:nowrap;color:#fff;background:#7f8c8d}
.labkit-pass,.labkit-ok,.labkit-complete,.labkit-passed{background:#2a8f2a}
.labkit-fail,.labkit-failing,.labkit-failed{background:#c0392b}
.labkit-error,.labkit-broken,.labkit-timeout,.labkit-dead-kernel,.labkit-interrupted{
background:#b9540c}
.labkit-partial{background:#2c6fad}
.labkit-not-implemented,.labkit-not-verified,.labkit-no-checklist{background:#fff;color:#555;
box-shadow:inset 0 0 0 1px #999}
.labkit-note{color:#555;font-size:12px}
</style>
"""
LONG_TABLE = 20  # rows; a longer table is folded under a summary with its count


def _cell(value: Any) -> str:
    return html.escape(str(value))


def badge(status: str, label: str | None = None) -> str:
    """A status mark as a coloured plain-text badge (renders without emoji fonts)."""
    kind = re.sub(r"[^a-z0-9]+", "-", status.lower().split(" (")[0]).strip("-") or "none"
    return f'<span class="labkit-badge labkit-{kind}">{_cell(label or status)}</span>'


def _colgroup(widths: list[str]) -> str:
    return "<colgroup>" + "".join(f'<col style="width:{w}">' for w in widths) + "</colgroup>"


def _folded(table: str, rows: int, summary: str, open_: bool) -> str:
    """A table over LONG_TABLE rows inside <details> with its count; shorter ones as they are."""
    if rows <= LONG_TABLE:
        return table
    state = " open" if open_ else ""
    return (
        f'<details class="labkit-long"{state}><summary>{_cell(summary)} '
        f"(click to {'fold' if open_ else 'unfold'})</summary>{table}</details>"
    )


def _counts(rows: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for row in rows:
        counts[str(row["status"])] = counts.get(str(row["status"]), 0) + 1
    return ", ".join(f"{n} {s}" for s, n in counts.items())


def check_table_html(rows: Iterable[Mapping[str, Any]]) -> str:
    """An HTML table of check results (redacted), one row per result, evidence folded."""
    body = []
    results = redact([dict(row) for row in rows])
    for row in results:
        status = str(row["status"])
        evidence = row.get("evidence") or ""
        folded = (
            f"<details><summary>evidence</summary><pre>{_cell(evidence)}</pre></details>"
            if evidence
            else ""
        )
        body.append(
            f'<tr style="background:{_COLOURS.get(status, "#fff")}">'
            f'<td class="labkit-nowrap">{_cell(row["id"])}</td><td>{_cell(row["title"])}</td>'
            f"<td>{_cell(row.get('subject', ''))}</td>"
            f"<td>{badge(status)}</td>"
            f"<td>{_cell(row.get('expected', ''))}</td><td>{_cell(row.get('observed', ''))}"
            f'{folded}</td><td class="labkit-nowrap">{float(row.get("duration_s", 0.0)):.2f}s'
            "</td></tr>"
        )
    head = (
        "<tr><th>id</th><th>check</th><th>subject</th><th>status</th><th>expected</th>"
        "<th>observed</th><th>took</th></tr>"
    )
    widths = ["4.5em", "24%", "8.5em", "8.5em", "17%", "auto", "4.5em"]
    table = (
        f'<table class="labkit-table labkit-fixed">{_colgroup(widths)}{head}{"".join(body)}</table>'
    )
    summary = f"{len(results)} results: {_counts(results)}"
    return _CSS + _folded(table, len(results), summary, open_=True)


def check_table_text(rows: Iterable[Mapping[str, Any]], width: int = 90) -> str:
    """A plain-text table of check results for terminals and logs (redacted)."""
    lines = [f"{'id':<7} {'status':<15} check", f"{'':<7} {'':<15} -> subject: observed"]
    for row in redact([dict(row) for row in rows]):
        status = str(row["status"])
        observed = re.sub(r"\s+", " ", str(row.get("observed", "")))
        subject = f"{row['subject']}: " if row.get("subject") else ""
        lines.append(f"{row['id']:<7} {status:<15} {row['title']}")
        lines.append(f"{'':<7} {'':<15} -> {(subject + observed)[:width]}")
    return "\n".join(lines)


class Table:
    """Rows shown as one HTML table (folded with its count when long); ``to_frame`` for pandas."""

    def __init__(self, rows: list[dict[str, Any]], html_text: str) -> None:
        self.rows = rows
        self._html = html_text

    def __len__(self) -> int:
        return len(self.rows)

    def _repr_html_(self) -> str:
        return self._html

    def __repr__(self) -> str:
        columns = ", ".join(self.rows[0]) if self.rows else ""
        return f"Table({len(self.rows)} rows: {columns})"

    def to_frame(self) -> Any:
        """The rows as a pandas DataFrame."""
        import pandas as pd  # noqa: PLC0415 - pandas is heavy; only analysis needs it

        return pd.DataFrame(self.rows)


def table(
    rows: list[dict[str, Any]],
    widths: Mapping[str, str] | None = None,
    what: str = "rows",
    open_: bool = False,
) -> Table:
    """A Table of ``rows`` (redacted): columns from the first row, ``widths`` per column name.

    Over LONG_TABLE rows it is folded under "<count> <what>" (open when ``open_``), never cut.
    """
    rows = redact([dict(row) for row in rows])
    columns = list(rows[0]) if rows else []
    sizes = [(widths or {}).get(column, "auto") for column in columns]
    head = "<tr>" + "".join(f"<th>{_cell(column)}</th>" for column in columns) + "</tr>"
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(row.get(column, ''))}</td>" for column in columns) + "</tr>"
        for row in rows
    )
    html_text = f'<table class="labkit-table labkit-fixed">{_colgroup(sizes)}{head}{body}</table>'
    return Table(rows, _CSS + _folded(html_text, len(rows), f"{len(rows)} {what}", open_))


_APP_COLUMNS = ("name", "sync", "health", "revision", "message", "failing")


def _app_good(row: Mapping[str, Any]) -> bool:
    return row.get("sync") == "Synced" and row.get("health") == "Healthy"


def application_table_html(rows: Iterable[Mapping[str, Any]]) -> str:
    """An HTML table of ArgoCD Applications: sync, health, revision, last message, failing."""
    body = "".join(
        f'<tr style="background:{_COLOURS["pass" if _app_good(row) else "fail"]}">'
        + "".join(f"<td>{_cell(row.get(column, ''))}</td>" for column in _APP_COLUMNS)
        + "</tr>"
        for row in redact([dict(row) for row in rows])
    )
    head = "".join(f"<th>{column}</th>" for column in _APP_COLUMNS)
    return f'{_CSS}<table class="labkit-table"><tr>{head}</tr>{body}</table>'


def application_table_text(rows: Iterable[Mapping[str, Any]], width: int = 60) -> str:
    """A plain-text table of ArgoCD Applications (redacted)."""
    lines = [f"{'application':<22} {'sync':<10} {'health':<12} {'revision':<9} message"]
    for row in redact([dict(row) for row in rows]):
        message = re.sub(r"\s+", " ", str(row.get("message", "")))[:width]
        lines.append(
            f"{row.get('name', ''):<22} {row.get('sync', ''):<10} {row.get('health', ''):<12} "
            f"{str(row.get('revision', ''))[:8]:<9} {message}"
        )
        if row.get("failing"):
            lines.append(f"{'':<22} failing: {row['failing']}")
    return "\n".join(lines)


_PLAN_COLOURS = {"none": "#d9f2d9", "change": "#fff3c4", "cannot": "#eeeeee"}
# A command wraps only between words: a path or a flag cut in two cannot be copied or read.
_COMMAND_STYLE = (
    "white-space:pre-wrap;word-break:keep-all;overflow-wrap:normal;"
    "font:12px/1.4 monospace;margin:0 0 2px 0"
)


def changes_phrase(count: int) -> str:
    """``1 change``, ``3 changes``."""
    return f"{count} change{'' if count == 1 else 's'}"


def plan_html(
    lab: str,
    phase: str | None,
    pending: int,
    rows: Iterable[Mapping[str, str]],
    evidence: Iterable[Mapping[str, Any]] = (),
) -> str:
    """A plan as HTML: a summary line, one row per (node, step), then evidence of what was done."""
    body = "".join(
        f'<tr style="background:{_PLAN_COLOURS.get(row["status"], "#fff")}">'
        f"<td>{_cell(row['node'])}</td><td>{_cell(row['step'])}</td>"
        f"<td>{_cell(row['status'])}</td><td>{_cell(row['detail'])}</td><td>"
        + "".join(
            f'<div style="{_COMMAND_STYLE}">{_cell(command)}</div>'
            for command in str(row["commands"]).splitlines()
        )
        + "</td></tr>"
        for row in redact([dict(row) for row in rows])
    )
    table = (
        '<table class="labkit-table labkit-plan"><tr><th>node</th><th>step</th><th>status</th>'
        f"<th>what / why</th><th>commands</th></tr>{body}</table>"
    )
    scope = f"phase {phase}" if phase else "every phase"
    summary = (
        f'<p class="labkit-plan-summary"><b>{_cell(lab)}</b>, {_cell(scope)}: '
        f"{changes_phrase(pending)} pending</p>"
    )
    done = list(redact([dict(item) for item in evidence]))
    return _CSS + summary + table + (_evidence_html(done) if done else "")


def _evidence_html(evidence: list[dict[str, Any]]) -> str:
    keys = ("node", "step", "before", "after", "argv", "exit_code", "error")
    rows = "".join(
        "<tr>" + "".join(f"<td>{_cell(item.get(key, ''))}</td>" for key in keys) + "</tr>"
        for item in evidence
    )
    head = "".join(
        f"<th>{name}</th>"
        for name in ("node", "step", "before", "after", "command", "exit", "error")
    )
    return (
        f'<p class="labkit-evidence-summary">Evidence of {changes_phrase(len(evidence))}</p>'
        f'<table class="labkit-table labkit-evidence"><tr>{head}</tr>{rows}</table>'
    )


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
    from labkit.roadmap import STEPS, items_for  # noqa: PLC0415

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
                "status": _TRACKER_ICONS[status],  # the roadmap's own Markdown marks
                "state": status,
                "completed": completed,
                "notes": notes,
            }
        )
    return rows


def tracker_html(rows: list[dict[str, str]]) -> str:
    """The status tracker as an HTML table."""
    body = "".join(
        f"<tr><td>{_cell(r['phase'])}</td>"
        f"<td>{badge(r['state'], r['status'].split(' ', 1)[-1])}</td>"
        f"<td>{_cell(r['completed'])}</td><td>{_cell(r['notes'])}</td></tr>"
        for r in rows
    )
    head = "<tr><th>Phase</th><th>Status</th><th>Completion Date</th><th>Notes</th></tr>"
    widths = _colgroup(["30em", "10em", "9em", "auto"])
    return f'{_CSS}<table class="labkit-table labkit-fixed">{widths}{head}{body}</table>'


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
            f"<tr><td>{_cell(_step_name(row))}</td>"
            f"<td>{_cell(row.get('target_rps', ''))}</td><td>{_cell(row.get('achieved_rps', ''))}"
            f"</td><td>{_cell(row.get('requests', ''))}</td><td>{_cell(latency.get('p50', ''))}"
            f"</td><td>{_cell(latency.get('p99', ''))}</td><td>{errors}</td>"
            f"<td>{_cell(row.get('generator_limited', ''))}</td></tr>"
        )
    return f'<h3>Every step</h3><table class="labkit-table">{head}{"".join(body)}</table>'


def _step_name(row: Mapping[str, Any]) -> str:
    if row.get("name") == "baseline":
        return f"baseline ({row.get('scenario', '')})"
    return str(row.get("scenario") or row.get("url", ""))


def _adr_html(run_dir: Path) -> str:
    path = run_dir / "adr.md"
    if not path.exists():
        return ""
    text = path.read_text(encoding="utf-8")
    return (
        '<h2>ADR from measured data</h2><p>Written to <a href="adr.md">adr.md</a>:</p>'
        f'<pre style="white-space:pre-wrap">{_cell(text)}</pre>'
    )


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
        f"<td>{badge(str(n['status']))}</td>"
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
    verdicts = load_verdict_table(results.get("load", []))
    verdict_html = f"<h3>Against the ADR targets</h3>{verdicts._repr_html_()}" if verdicts else ""
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
<h2>Notebooks</h2><table class="labkit-table labkit-fixed">
{_colgroup(["14em", "8em", "6em", "auto"])}
<tr><th>notebook</th><th>status</th><th>took</th><th>error</th></tr>{notebook_rows}</table>
<h2>Checks</h2>{check_table_html(checks)}
<h2>Load</h2>{verdict_html}{_load_table_html(results.get("load", []))}
<h2>Drills</h2>{drills_table_html(results.get("drills", []))}
{_adr_html(run_dir)}
<h2>Runbooks</h2>{runbooks_html(results.get("runbooks", []))}
{_slides_links(run_dir)}
<h2>Charts</h2>{"".join(charts) or "<p>No charts in this run.</p>"}
<h2>Versions</h2><pre>{_cell(json.dumps(run.get("versions", {}), indent=1))}</pre>
</body></html>
"""
    target = run_dir / "report.html"
    target.write_text(redact(page), encoding="utf-8")
    return target


def _charts_dir() -> Path | None:
    run = environment.run_dir()
    return run / "charts" if run else None


def _slides_links(run_dir: Path) -> str:
    """Links to the run's static slideshows (``<notebook>.slides.html``), if any."""
    slides = sorted(run_dir.glob("*.slides.html"))
    if not slides:
        return ""
    links = "".join(
        f'<li><a href="{_cell(path.name)}">{_cell(path.name)}</a></li>' for path in slides
    )
    return f"<h2>Slides</h2><p>Open offline in a browser (reveal.js inlined).</p><ul>{links}</ul>"


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


# ============================================================================================
# Load figures (labkit.load, issue 5). Inputs are results.json ``load`` entries and verdict
# dicts (plain data), so the report can rebuild them from any run folder.
# ============================================================================================

_LOAD_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]


def _load_label(entry: Mapping[str, Any]) -> str:
    name = entry.get("scenario") or entry.get("name") or entry.get("url", "load")
    return f"{name} @ {float(entry.get('target_rps', 0)):.0f}/s"


def load_spectrum_figure(entries: Iterable[Mapping[str, Any]]) -> Any:
    """HDR latency percentile spectrum (x = 1/(1-p), log): corrected solid, uncorrected dotted."""
    import plotly.graph_objects as go  # noqa: PLC0415 - plotly is heavy; only charts need it

    figure = go.Figure()
    for index, entry in enumerate(entries):
        colour = _LOAD_COLOURS[index % len(_LOAD_COLOURS)]
        for kind, dash in (("corrected", "solid"), ("uncorrected", "dot")):
            points = entry.get("spectrum", {}).get(kind, [])
            if not points:
                continue
            figure.add_scatter(
                x=[1 / (1 - min(p, 99.9999) / 100) for p, _ in points],
                y=[value for _, value in points],
                customdata=[p for p, _ in points],
                mode="lines",
                line={"color": colour, "dash": dash, "shape": "hv"},
                name=f"{_load_label(entry)} {kind}",
                hovertemplate="p%{customdata:.4f}: %{y:.3f} ms<extra></extra>",
            )
    ticks = [1, 2, 10, 100, 1000, 10000, 100000]
    figure.update_layout(
        title="Latency by percentile (corrected = from the intended send time)",
        xaxis={
            "type": "log",
            "title": "percentile",
            "tickvals": ticks,
            "ticktext": ["0%", "50%", "90%", "99%", "99.9%", "99.99%", "99.999%"],
        },
        yaxis={"title": "latency (ms)", "rangemode": "tozero"},
        legend={"title": {"text": "step"}},  # right of the plot: clear of both axis titles
    )
    return figure


def _line_styles(entries: list[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """A colour per scenario and a dash per step of it, so a dozen runs stay apart."""
    colours: dict[str, str] = {}
    steps: dict[str, int] = {}
    dashes = ["solid", "dash", "dot", "dashdot", "longdash"]
    styles = []
    for entry in entries:
        scenario = str(entry.get("scenario") or entry.get("name") or "")
        colour = colours.setdefault(scenario, _LOAD_COLOURS[len(colours) % len(_LOAD_COLOURS)])
        step = steps.get(scenario, 0)
        steps[scenario] = step + 1
        styles.append((colour, dashes[step % len(dashes)]))
    return styles


def load_timeseries_figure(entries: Iterable[Mapping[str, Any]]) -> Any:
    """Throughput (responses/s) and corrected p99 per second: colour per scenario, dash per step."""
    import plotly.graph_objects as go  # noqa: PLC0415
    from plotly.subplots import make_subplots  # noqa: PLC0415

    figure = make_subplots(
        rows=2, cols=1, shared_xaxes=True, subplot_titles=("throughput", "p99 latency")
    )
    entries = list(entries)
    for entry, (colour, dash) in zip(entries, _line_styles(entries), strict=True):
        series = entry.get("timeseries", [])
        seconds = [row["second"] for row in series]
        label = _load_label(entry)
        figure.add_trace(
            go.Scatter(
                x=seconds,
                y=[row["responses"] for row in series],
                name=label,
                line={"color": colour, "dash": dash},
                legendgroup=label,
            ),
            row=1,
            col=1,
        )
        figure.add_trace(
            go.Scatter(
                x=seconds,
                y=[row["p99_ms"] for row in series],
                name=f"{label} p99",
                line={"color": colour, "dash": dash},
                legendgroup=label,
                showlegend=False,
            ),
            row=2,
            col=1,
        )
    figure.update_yaxes(title_text="responses / s", row=1, col=1, rangemode="tozero")
    figure.update_yaxes(title_text="ms", row=2, col=1, rangemode="tozero")
    figure.update_xaxes(title_text="second of the measured run", row=2, col=1)
    # The legend stands right of the plot (plotly's vertical default): a horizontal one sits
    # where the x axis title is and the two overlap.
    figure.update_layout(
        title="Throughput and p99 over time",
        legend={"title": {"text": "scenario @ step"}},
        height=620,
    )
    return figure


def load_errors_figure(entries: Iterable[Mapping[str, Any]]) -> Any:
    """Failed requests per second (no response, 4xx, 5xx), one colour per run."""
    import plotly.graph_objects as go  # noqa: PLC0415

    figure = go.Figure()
    for index, entry in enumerate(entries):
        series = entry.get("timeseries", [])
        figure.add_bar(
            x=[row["second"] for row in series],
            y=[row["errors"] for row in series],
            name=f"{_load_label(entry)} ({sum(row['errors'] for row in series)} errors)",
            marker_color=_LOAD_COLOURS[index % len(_LOAD_COLOURS)],
        )
    figure.update_layout(
        title="Errors over time",
        barmode="group",
        xaxis={"title": "second of the measured run"},
        yaxis={"title": "errors / s", "rangemode": "tozero"},
    )
    return figure


_RATIO_CAP = 3.0  # the target chart's axis ends here; a bar beyond it is marked off scale


def load_targets_figure(verdicts: Iterable[Mapping[str, Any]]) -> Any:
    """Each measured figure as a ratio to its target's bound (1 = the bound), linear axis.

    Coloured by verdict; every bar is labelled with its measured value, so a zero (an
    error rate of 0 %) is visible as a label at 0, and a bar past 3x the bound is cut at
    the axis end and labelled with its real ratio.
    """
    import plotly.graph_objects as go  # noqa: PLC0415

    colours = {"pass": "#2a8f2a", "fail": "#c0392b"}
    rows = [v for v in verdicts if v.get("value") is not None and v.get("limit")]
    labels = [f"{v['scenario']} @ {float(v['rate']):.0f}/s · {v['target']}" for v in rows]
    ratios = [float(v["value"]) / float(v["limit"]) for v in rows]
    status = [str(v["status"]).split(" ")[0] for v in rows]
    texts = [
        f"{str(v['measured']).strip()} · {state}"
        + (f" (x{ratio:.3g}, off scale)" if ratio > _RATIO_CAP else "")
        for v, ratio, state in zip(rows, ratios, status, strict=True)
    ]
    figure = go.Figure(
        go.Bar(
            x=[min(ratio, _RATIO_CAP) for ratio in ratios],
            y=labels,
            orientation="h",
            marker_color=[colours.get(state, "#999999") for state in status],
            text=texts,
            textposition="outside",
            cliponaxis=False,
            customdata=[
                [v["measured"], v["expected"], state] for v, state in zip(rows, status, strict=True)
            ],
            hovertemplate="%{customdata[0]} (target %{customdata[1]}): %{customdata[2]}"
            "<extra></extra>",
            showlegend=False,
        )
    )
    figure.add_vline(
        x=1, line_dash="dash", annotation_text="target bound", annotation_position="top"
    )
    figure.update_layout(
        title="Measured / target bound (latency, errors: left of 1 is good; hit ratio: right)",
        xaxis={"title": "measured / target bound", "type": "linear", "range": [0, _RATIO_CAP]},
        yaxis={"automargin": True, "autorange": "reversed"},
        height=max(300, 26 * len(rows) + 140),
        margin={"r": 280, "t": 90},
    )
    return figure


def _scenario_verdicts(load: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Each scenario's first ladder entry (it carries the scenario's verdicts), not baseline."""
    first: dict[str, Mapping[str, Any]] = {}
    for entry in load:
        if entry.get("name") == "baseline" or not entry.get("verdicts"):
            continue
        first.setdefault(str(entry.get("scenario")), entry)
    return first


def load_verdict_table(load: Iterable[Mapping[str, Any]]) -> Table:
    """The one verdict table: a row per scenario step, a column per target, pass/fail badges.

    ``load`` is results.json ``load`` entries (each scenario's entries carry its verdicts,
    its highest good step and why its ladder stopped), so the notebook and the report
    show the same table.
    """
    scenarios = _scenario_verdicts(load)
    verdicts = [v for entry in scenarios.values() for v in entry["verdicts"]]
    targets: dict[str, str] = {}
    for verdict in verdicts:
        targets.setdefault(str(verdict["target"]), str(verdict["expected"]))
    cells: dict[tuple[str, float], dict[str, Mapping[str, Any]]] = {}
    for verdict in verdicts:
        step = (str(verdict["scenario"]), float(verdict["rate"]))
        cells.setdefault(step, {})[str(verdict["target"])] = verdict
    head = "<tr><th>scenario</th><th>step /s</th>" + "".join(
        f'<th>{_cell(target)}<br><span class="labkit-note">{_cell(expected)}</span></th>'
        for target, expected in targets.items()
    )
    body = []
    for (scenario, rate), row in cells.items():
        tds = []
        for target in targets:
            verdict = row.get(target)
            if verdict is None:
                tds.append('<td class="labkit-note" title="not measured in this scenario">—</td>')
                continue
            status = str(verdict["status"])
            state = status.split(" ", maxsplit=1)[0]
            note = str(verdict.get("note") or "")
            tds.append(
                f'<td style="background:{_COLOURS.get(state, "#f3f3f3")}">{badge(state)} '
                f"{_cell(verdict['measured'])}"
                + (f'<br><span class="labkit-note">{_cell(note)}</span>' if note else "")
                + "</td>"
            )
        body.append(f"<tr><td>{_cell(scenario)}</td><td>{rate:.0f}</td>{''.join(tds)}</tr>")
    widths = ["8em", "5em"] + ["auto"] * len(targets)
    table_html = (
        f'<table class="labkit-table labkit-fixed">{_colgroup(widths)}{head}{"".join(body)}</table>'
    )
    notes = []
    for name, entry in scenarios.items():
        good = entry.get("highest_good_rps")
        line = f"{name}: highest step with every target held and the generator keeping up: " + (
            f"{float(good):.0f}/s" if good is not None else "none"
        )
        if entry.get("stopped"):
            line += f"; ladder stopped early: {entry['stopped']}"
        notes.append(f"<li>{_cell(line)}</li>")
    rows = [
        {key: v.get(key) for key in ("scenario", "rate", "target", "expected", "measured")}
        | {"status": v["status"]}
        for v in verdicts
    ]
    if not rows:
        return Table([], "<p>No load ran, so there are no verdicts.</p>")
    return Table(rows, f"{_CSS}{table_html}<ul>{''.join(notes)}</ul>")


def red_figure(frames: Mapping[str, Any], title: str) -> Any:
    """RED from PromQL: request rate, error rate and latency quantiles over time.

    ``frames`` maps ``rate``, ``errors`` and ``p50``/``p95``/``p99`` to long DataFrames
    (time, series, value) as ``labkit.observe.series_frame`` makes them.
    """
    import plotly.graph_objects as go  # noqa: PLC0415
    from plotly.subplots import make_subplots  # noqa: PLC0415

    figure = make_subplots(
        rows=2, cols=1, shared_xaxes=True, subplot_titles=("rate and errors", "latency")
    )
    for name, frame in frames.items():
        row = 2 if name.startswith("p") else 1
        for series, part in frame.groupby("series") if len(frame) else []:
            label = name if series == name else f"{name} {series}"
            figure.add_trace(
                go.Scatter(x=part["time"], y=part["value"], name=label, mode="lines"),
                row=row,
                col=1,
            )
    figure.update_yaxes(title_text="requests / s", row=1, col=1, rangemode="tozero")
    figure.update_yaxes(title_text="ms", row=2, col=1, rangemode="tozero")
    figure.update_layout(title=title, legend={"orientation": "h"})
    return figure


def promql_figure(frame: Any, title: str, unit: str) -> Any:
    """One PromQL range result (a long DataFrame: time, series, value) as lines."""
    import plotly.graph_objects as go  # noqa: PLC0415

    figure = go.Figure()
    for series, part in frame.groupby("series") if len(frame) else []:
        figure.add_trace(go.Scatter(x=part["time"], y=part["value"], name=series, mode="lines"))
    figure.update_yaxes(title_text=unit, rangemode="tozero")
    figure.update_layout(title=title, legend={"orientation": "h"})
    return figure


# ============================================================================================
# Drill figures and table (labkit.drills, issue 14). Inputs are results.json ``drills`` entries.
# ============================================================================================


def drill_timeline_figure(entry: Mapping[str, Any]) -> Any:
    """Throughput, failed requests and P99 per bucket of one drill, the fault marked."""
    import plotly.graph_objects as go  # noqa: PLC0415
    from plotly.subplots import make_subplots  # noqa: PLC0415

    rows = entry.get("timeline", [])
    bucket = rows[1]["t_s"] - rows[0]["t_s"] if len(rows) > 1 else 1.0
    times = [row["t_s"] for row in rows]
    figure = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        subplot_titles=("answered and failed requests per second", "P99 latency"),
    )
    figure.add_trace(
        go.Bar(
            x=times, y=[row["ok"] / bucket for row in rows], name="ok / s", marker_color="#2ca02c"
        ),
        row=1,
        col=1,
    )
    figure.add_trace(
        go.Bar(
            x=times,
            y=[row["failed"] / bucket for row in rows],
            name="failed / s",
            marker_color="#d62728",
        ),
        row=1,
        col=1,
    )
    figure.add_trace(
        go.Scatter(
            x=times,
            # A second with no answer has no latency: a gap, not a 0 (which a log axis drops).
            y=[row["p99_ms"] if row["ok"] else None for row in rows],
            name="P99 ms",
            line={"color": "#1f77b4"},
        ),
        row=2,
        col=1,
    )
    target = entry.get("measured", {}).get("p99_target_ms")
    if target:
        figure.add_hline(y=target, line_dash="dot", line_color="#555", row=2, col=1)
    fault = entry.get("fault", {})
    if "at_s" in fault:
        figure.add_vline(x=fault["at_s"], line_dash="dash", line_color="#d62728")
        figure.add_annotation(
            x=fault["at_s"],
            y=1.06,
            yref="paper",
            text="fault",
            showarrow=False,
            font={"color": "#d62728"},
        )
    promoted = entry.get("failover", {}).get("promoted_s")
    if promoted is not None and "at_s" in fault:
        figure.add_vline(x=fault["at_s"] + promoted, line_dash="dot", line_color="#9467bd")
    figure.update_layout(
        barmode="stack",
        title=f"Drill {entry.get('scenario', '')}: {fault.get('action', '')}",
        legend={"orientation": "h"},
    )
    figure.update_xaxes(
        title_text="seconds from the start of the load (warm-up included)", row=2, col=1
    )
    figure.update_yaxes(title_text="requests / s", row=1, col=1, rangemode="tozero")
    figure.update_yaxes(title_text="ms", row=2, col=1, rangemode="tozero", type="log")
    return figure


def _figure(value: Any) -> str:
    return "—" if value is None else _cell(value)


def drills_table_html(drills: list[Mapping[str, Any]]) -> str:
    """One row per drill: fault, error window, recovery, writes lost, failover, restored."""
    if not drills:
        return "<p>No drills in this run.</p>"
    head = (
        "<tr><th>drill</th><th>status</th><th>fault</th><th>failed after the fault</th>"
        "<th>error window s</th><th>first success s</th><th>P99 back under target s</th>"
        "<th>writes acknowledged / lost</th><th>failover</th><th>restored</th></tr>"
    )
    body = []
    for entry in drills:
        measured = entry.get("measured", {})
        writes = entry.get("writes", {})
        verdicts = entry.get("verdicts", [])
        held = all(verdict.get("ok") for verdict in verdicts)
        status = entry.get("status", "")
        if status == "done":  # a plain-text badge: emoji need a font the reader may lack
            failed = ", ".join(str(v.get("what")) for v in verdicts if not v.get("ok"))
            mark = badge("pass", "held") if held else f"{badge('fail', 'failed')} {_cell(failed)}"
        else:
            mark = _cell(f"{status}: {entry.get('reason', '')}")
        if measured.get("saturated_before_fault"):
            mark += _cell(
                f" (the lab was saturated before the fault: P99 {measured.get('p99_before_ms')} "
                "ms; the figures after it include that backlog)"
            )
        body.append(
            f"<tr><td>{_cell(entry.get('scenario', ''))}</td><td>{mark}</td>"
            f"<td>{_cell(entry.get('fault', {}).get('action', ''))}</td>"
            f"<td>{_cell(measured.get('failed', ''))} "
            f"{_cell(measured.get('failed_by_category', ''))}</td>"
            f"<td>{_figure(measured.get('error_window_s'))}</td>"
            f"<td>{_figure(measured.get('first_success_s'))}</td>"
            f"<td>{_figure(measured.get('p99_recovered_s'))}</td>"
            f"<td>{_cell(writes.get('acknowledged', ''))} / {_cell(writes.get('lost', ''))} "
            f"{_cell(writes.get('lost_codes') or '')}</td>"
            f"<td>{_cell(entry.get('failover', {}).get('summary', ''))}</td>"
            f"<td>{_cell('; '.join(entry.get('restored', {}).get('actions', [])))} "
            f"{_cell(entry.get('restored', {}).get('checks', ''))}</td></tr>"
        )
    return f'<table class="labkit-table">{head}{"".join(body)}</table>'


# ============================================================================================
# Runbooks, doctor and the demo's figures (notebook 07). Inputs are plain dicts: the
# results.json ``runbooks`` entries, doctor.json, and the architecture's boxes and edges.
# ============================================================================================

_RUNBOOK_STATES = {
    "pass": "#d9f2d9",
    "fail": "#f8d0d0",
    "skip": "#eeeeee",
    "planned": "#fff3c4",
}


def _rows_html(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return ""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    head = "".join(f"<th>{_cell(column)}</th>" for column in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(row.get(column, ''))}</td>" for column in columns) + "</tr>"
        for row in rows
    )
    return f'<table class="labkit-table"><tr>{head}</tr>{body}</table>'


def runbook_html(outcome: Mapping[str, Any]) -> str:
    """One runbook's outcome: status and summary, its steps (command, what was seen), measures."""
    outcome = redact(dict(outcome))
    status = str(outcome.get("status", ""))
    steps = [
        {
            "step": row.get("step", ""),
            "state": row.get("state", ""),
            "command": row.get("command", ""),
            "seen": row.get("seen", ""),
            "took s": row.get("took_s", ""),
        }
        for row in outcome.get("steps", [])
    ]
    return (
        f'{_CSS}<div><p style="background:{_RUNBOOK_STATES.get(status, "#fff")};padding:4px">'
        f"<b>{_cell(outcome.get('title', ''))}</b> ({_cell(outcome.get('runbook', ''))}, "
        f"{_cell(outcome.get('doc', ''))}): {badge(status)} — "
        f"{_cell(outcome.get('summary', ''))}</p>"
        f"{_rows_html(steps)}{_rows_html(list(outcome.get('measured', [])))}</div>"
    )


def runbooks_html(outcomes: list[Mapping[str, Any]]) -> str:
    """The report's runbooks section: each outcome, or a sentence when none ran."""
    if not outcomes:
        return "<p>No runbooks in this run.</p>"
    return "".join(runbook_html(outcome) for outcome in outcomes)


def doctor_html(report: Mapping[str, Any]) -> str:
    """doctor's evidence: findings, component status, recent errors, data-plane facts."""
    report = redact(dict(report))
    findings = report.get("findings", [])
    listed = "".join(f"<li>{_cell(item)}</li>" for item in findings) or "<li>no findings</li>"
    components = [
        {
            "component": entry.get("name", ""),
            "role": entry.get("role", ""),
            "address": entry.get("address", ""),
            "healthy": entry.get("healthy", ""),
            "detail": entry.get("detail", ""),
        }
        for entry in report.get("components", [])
    ]
    errors = [
        {"component": name, "recent lines": len(lines), "last": lines[-1] if lines else ""}
        for name, lines in report.get("errors", {}).items()
    ]
    plane = [
        {"source": name, "facts": json.dumps(facts, default=str)}
        for name, facts in report.get("data_plane", {}).items()
    ]
    skipped = "".join(f"<p>skipped: {_cell(reason)}</p>" for reason in report.get("skipped", []))
    where = f"<p>evidence in {_cell(report['folder'])}</p>" if report.get("folder") else ""
    return (
        f"{_CSS}<p><b>doctor</b>: lab {_cell(report.get('lab', ''))} at "
        f"{_cell(report.get('at', ''))}</p><ul>{listed}</ul>{_rows_html(components)}"
        f"{_rows_html(errors)}{_rows_html(plane)}{skipped}{where}"
    )


def cache_flush_figure(series: Mapping[str, Any], threshold: float | None = None) -> Any:
    """Hit ratio per sampling interval around the flush (t = 0), requests per interval beneath."""
    import plotly.graph_objects as go  # noqa: PLC0415
    from plotly.subplots import make_subplots  # noqa: PLC0415

    rows = list(series.get("hit_ratio", []))
    figure = make_subplots(
        rows=2, cols=1, shared_xaxes=True, subplot_titles=("hit ratio", "requests per interval")
    )
    times = [row["t_s"] for row in rows]
    figure.add_trace(
        go.Scatter(
            x=times,
            y=[row["hit_ratio"] for row in rows],
            mode="lines+markers",
            name="hit ratio",
            line={"shape": "hv"},
        ),
        row=1,
        col=1,
    )
    figure.add_trace(
        go.Bar(x=times, y=[row["requests"] for row in rows], name="requests"), row=2, col=1
    )
    figure.add_vline(x=0, line_dash="dash", annotation_text="flush")
    if threshold is not None:
        figure.add_hline(y=threshold, line_dash="dot", row=1, col=1, annotation_text="recovered")
    figure.update_yaxes(range=[0, 1.05], row=1, col=1)
    figure.update_xaxes(title_text="seconds from the flush", row=2, col=1)
    figure.update_layout(title="Redirect cache flushed under load", showlegend=False)
    return figure


def scale_figure(measured: Sequence[Mapping[str, Any]]) -> Any:
    """Throughput and p99 at each worker count the scale runbook measured."""
    import plotly.graph_objects as go  # noqa: PLC0415
    from plotly.subplots import make_subplots  # noqa: PLC0415

    labels = [f"{row['when']}: {row['workers']} worker(s)" for row in measured]
    figure = make_subplots(rows=1, cols=2, subplot_titles=("answered / s", "p99 ms"))
    figure.add_trace(go.Bar(x=labels, y=[row["achieved_rps"] for row in measured]), row=1, col=1)
    figure.add_trace(go.Bar(x=labels, y=[row["p99_ms"] for row in measured]), row=1, col=2)
    offered = measured[0]["target_rps"] if measured else 0
    figure.update_layout(title=f"Scaling at {offered}/s offered", showlegend=False)
    return figure


_GROUP_COLOURS = {
    "client": "#dfe7fd",
    "edge": "#fde2cf",
    "app": "#d9f2d9",
    "cache": "#f8d0d0",
    "database": "#e3d7f5",
    "node": "#eeeeee",
    "observe": "#fff3c4",
}


def architecture_figure(diagram: Mapping[str, Any]) -> Any:
    """Boxes and arrows (``boxes``: id, label, x, y, group; ``edges``: from, to, label)."""
    import plotly.graph_objects as go  # noqa: PLC0415

    boxes = {box["id"]: box for box in diagram.get("boxes", [])}
    figure = go.Figure()
    for edge in diagram.get("edges", []):
        start, end = boxes[edge["from"]], boxes[edge["to"]]
        figure.add_annotation(
            x=end["x"],
            y=end["y"],
            ax=start["x"],
            ay=start["y"],
            xref="x",
            yref="y",
            axref="x",
            ayref="y",
            showarrow=True,
            arrowhead=3,
            arrowwidth=1.5,
            standoff=28,
            startstandoff=28,
            text="",
        )
        if edge.get("label"):
            figure.add_annotation(
                x=(start["x"] + end["x"]) / 2,
                y=(start["y"] + end["y"]) / 2,
                text=f"<i>{html.escape(str(edge['label']))}</i>",
                showarrow=False,
                font={"size": 10, "color": "#555"},
                bgcolor="rgba(255,255,255,0.8)",
            )
    for box in boxes.values():
        figure.add_annotation(
            x=box["x"],
            y=box["y"],
            text=html.escape(str(box["label"])).replace("\n", "<br>"),
            showarrow=False,
            bordercolor="#666",
            borderwidth=1,
            borderpad=8,
            bgcolor=_GROUP_COLOURS.get(str(box.get("group")), "#ffffff"),
            font={"size": 12},
        )
    xs = [box["x"] for box in boxes.values()] or [0]
    ys = [box["y"] for box in boxes.values()] or [0]
    figure.update_xaxes(visible=False, range=[min(xs) - 0.8, max(xs) + 0.8])
    figure.update_yaxes(visible=False, range=[min(ys) - 0.8, max(ys) + 0.8])
    figure.update_layout(
        title=str(diagram.get("title", "Architecture")),
        plot_bgcolor="white",
        height=460,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
    )
    return figure


# ============================================================================================
# Static slideshows: an executed notebook whose cells carry slideshow metadata becomes one
# self-contained reveal.js page (``<notebook>.slides.html``) that opens offline.
# ============================================================================================

_SLIDES_TEMPLATES = Path(__file__).resolve().parent / "data" / "nbconvert"
_IMPORT = re.compile(r"@import\s+url\([^)]*\)\s*;?")
# A script fetched from the network (plotly's notebook output asks a CDN for MathJax, which
# no cell here needs): dropped, so that the page makes no request when it is opened.
_REMOTE_SCRIPT = re.compile(r"<script\b[^>]*\bsrc=\"https?://[^\"]*\"[^>]*>\s*</script>", re.I)


def _reveal_assets() -> dict[str, str]:
    """reveal.js's script, styles and notes plugin, read from the sphinx-revealjs package."""
    import importlib.util  # noqa: PLC0415

    spec = importlib.util.find_spec("sphinx_revealjs")  # its files only; never imported
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "reveal.js's files come from the sphinx-revealjs package, which is not installed: "
            "run `make .venv/.installed`"
        )
    root = Path(next(iter(spec.submodule_search_locations))) / "_static" / "revealjs"

    def read(relative: str, script: bool) -> str:
        text = (root / relative).read_text(encoding="utf-8")
        # Inline text must not end its own element early; a font @import would be fetched.
        return text.replace("</script", "<\\/script") if script else _IMPORT.sub("", text)

    return {
        "js": read("dist/reveal.js", True),
        "notes": read("plugin/notes/notes.js", True),
        "css": read("dist/reveal.css", False),
        "theme": read("dist/theme/white.css", False),
    }


def has_slides(notebook: Mapping[str, Any]) -> bool:
    """True when some cell of the notebook (nbformat JSON) carries a slide type."""
    return any(
        cell.get("metadata", {}).get("slideshow", {}).get("slide_type")
        for cell in notebook.get("cells", [])
    )


def export_slides(notebook: Path) -> Path:
    """Write ``<notebook>.slides.html`` beside an executed notebook: reveal.js, all inlined."""
    import nbformat  # noqa: PLC0415
    from nbconvert import SlidesExporter  # noqa: PLC0415

    node = nbformat.read(notebook, as_version=4)  # type: ignore[no-untyped-call]
    for cell in node.cells:  # parameters (the notebook's and papermill's) are not slides
        if {"parameters", "injected-parameters"} & set(cell.metadata.get("tags", [])):
            cell.metadata["slideshow"] = {"slide_type": "skip"}
    exporter = SlidesExporter(  # type: ignore[no-untyped-call]
        template_name="labkit-slides", extra_template_basedirs=[str(_SLIDES_TEMPLATES)]
    )
    body, _ = exporter.from_notebook_node(
        node, resources={"labkit_reveal": _reveal_assets(), "metadata": {"name": notebook.stem}}
    )
    target = notebook.with_name(f"{notebook.stem}.slides.html")
    target.write_text(redact(_REMOTE_SCRIPT.sub("", body)), encoding="utf-8")
    return target
