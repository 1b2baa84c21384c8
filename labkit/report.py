"""Tables, plotly figures and the offline HTML report of a run; the only module building figures."""

from __future__ import annotations

import html
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from labkit.secrets import redact

__all__ = [
    "STATUS_ICONS",
    "check_table_html",
    "check_table_text",
    "show",
    "show_figure",
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


def check_table_text(rows: Iterable[Mapping[str, Any]], width: int = 60) -> str:
    """A plain-text table of check results for terminals and logs (redacted)."""
    lines = [f"{'id':<7} {'status':<16} {'subject':<22} check / observed"]
    for row in redact([dict(row) for row in rows]):
        observed = re.sub(r"\s+", " ", str(row.get("observed", "")))[:width]
        title = str(row["title"])[:width]
        lines.append(
            f"{row['id']:<7} {row['status']!s:<16} {str(row.get('subject', ''))[:22]:<22} "
            f"{title}\n{'':<47} -> {observed}"
        )
    return "\n".join(lines)


def show(value: Any) -> Any:
    """Display ``value`` in a notebook with secrets masked; returns it for chaining."""
    from IPython.display import HTML, display  # noqa: PLC0415 - notebooks only

    if hasattr(value, "_repr_html_"):
        display(HTML(redact(value._repr_html_())))  # type: ignore[no-untyped-call]
    else:
        display(redact(value))  # type: ignore[no-untyped-call]
    return value


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
