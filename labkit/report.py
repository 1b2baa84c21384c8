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
    "changes_phrase",
    "check_table_html",
    "check_table_text",
    "load_errors_figure",
    "load_spectrum_figure",
    "load_targets_figure",
    "load_timeseries_figure",
    "load_verdict_figure",
    "plan_html",
    "promql_figure",
    "red_figure",
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
        legend={"orientation": "h", "y": -0.25},
    )
    return figure


def load_timeseries_figure(entries: Iterable[Mapping[str, Any]]) -> Any:
    """Throughput (responses/s) and corrected p99 per second, one colour per run."""
    import plotly.graph_objects as go  # noqa: PLC0415
    from plotly.subplots import make_subplots  # noqa: PLC0415

    figure = make_subplots(
        rows=2, cols=1, shared_xaxes=True, subplot_titles=("throughput", "p99 latency")
    )
    for index, entry in enumerate(entries):
        colour = _LOAD_COLOURS[index % len(_LOAD_COLOURS)]
        series = entry.get("timeseries", [])
        seconds = [row["second"] for row in series]
        label = _load_label(entry)
        figure.add_trace(
            go.Scatter(
                x=seconds,
                y=[row["responses"] for row in series],
                name=label,
                line={"color": colour},
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
                line={"color": colour},
                legendgroup=label,
                showlegend=False,
            ),
            row=2,
            col=1,
        )
    figure.update_yaxes(title_text="responses / s", row=1, col=1, rangemode="tozero")
    figure.update_yaxes(title_text="ms", row=2, col=1, rangemode="tozero")
    figure.update_xaxes(title_text="second of the measured run", row=2, col=1)
    figure.update_layout(title="Throughput and p99 over time", legend={"orientation": "h"})
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


def load_targets_figure(verdicts: Iterable[Mapping[str, Any]]) -> Any:
    """Measured as a share of each target's bound (100% = the limit), coloured by verdict."""
    import plotly.graph_objects as go  # noqa: PLC0415

    colours = {"pass": "#2a8f2a", "fail": "#c0392b"}
    rows = [v for v in verdicts if v.get("value") is not None and v.get("limit")]
    labels = [f"{v['scenario']} @ {float(v['rate']):.0f}/s · {v['target']}" for v in rows]
    shares = [100 * float(v["value"]) / float(v["limit"]) for v in rows]
    figure = go.Figure(
        go.Bar(
            x=shares,
            y=labels,
            orientation="h",
            marker_color=[colours.get(str(v["status"]), "#999999") for v in rows],
            customdata=[[v["measured"], v["expected"], v["status"]] for v in rows],
            hovertemplate="%{customdata[0]} (target %{customdata[1]}): %{customdata[2]}"
            "<extra></extra>",
        )
    )
    figure.add_vline(x=100, line_dash="dash", annotation_text="target bound")
    figure.update_layout(
        title="Measured vs target (share of the bound; for hit ratio, above 100% is good)",
        xaxis={"title": "% of the target's bound", "type": "log"},
        height=max(300, 28 * len(rows) + 120),
        margin={"l": 360},
    )
    return figure


def load_verdict_figure(verdicts: Iterable[Mapping[str, Any]]) -> Any:
    """The verdict table (target, expected, measured, verdict) as a figure for the report."""
    import plotly.graph_objects as go  # noqa: PLC0415

    rows = list(verdicts)
    fills = [_COLOURS.get(str(v["status"]).split(" ")[0], "#eeeeee") for v in rows]
    columns = [
        [str(v["scenario"]) for v in rows],
        [f"{float(v['rate']):.0f}" for v in rows],
        [str(v["target"]) for v in rows],
        [str(v["expected"]) for v in rows],
        [str(v["measured"]) for v in rows],
        [str(v["status"]) for v in rows],
    ]
    figure = go.Figure(
        go.Table(
            header={"values": ["scenario", "rate /s", "target", "expected", "measured", "verdict"]},
            cells={"values": columns, "fill_color": [fills] * len(columns), "align": "left"},
        )
    )
    figure.update_layout(title="ADR targets: verdict", height=max(250, 26 * len(rows) + 120))
    return figure


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
