"""results.json: one documented schema for every check, load and drill result of a run.

Schema ``labkit.results/1``::

    {
      "schema": "labkit.results/1",
      "run_id": str | null, "lab": str, "generated_at": ISO-8601 UTC,
      "checks": [ {id, title, step, status, expected, observed, evidence,
                   duration_s, subject, at} ... ],
      "load":   [ load results (labkit.load's schema: target_rps, achieved_rps, latency_ms ...) ],
      "drills": [ drill results ],
      "plans":  [ {node, step, change, argv, applied, exit_code} ... ]
    }

Notebooks executed by ``labkit run`` add to it through ``record``: the runner
sets ``LABKIT_RUN_DIR`` and ``LABKIT_NOTEBOOK``; each record is appended to
``records/<notebook>.jsonl`` and the runner merges them. Everything is redacted
before it reaches a file.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any, Literal

from labkit.secrets import redact

__all__ = ["KINDS", "SCHEMA", "Kind", "collect", "record", "run_dir", "write_results"]

SCHEMA = "labkit.results/1"
Kind = Literal["checks", "load", "drills", "plans"]
KINDS: tuple[Kind, ...] = ("checks", "load", "drills", "plans")


def run_dir() -> Path | None:
    """The run folder when executing under ``labkit run``, else None (interactive use)."""
    value = os.environ.get("LABKIT_RUN_DIR")
    return Path(value) if value else None


def record(kind: Kind, items: list[dict[str, Any]]) -> Path | None:
    """Append ``items`` to this run's records; a no-op outside ``labkit run``. Returns the file."""
    folder = run_dir()
    if folder is None:
        return None
    notebook = os.environ.get("LABKIT_NOTEBOOK", "interactive")
    path = folder / "records" / f"{notebook}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        for item in items:
            line = {"kind": kind, "notebook": notebook, "item": redact(item)}
            handle.write(json.dumps(line, default=str) + "\n")
    return path


def collect(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Every record written under ``folder/records``, grouped by kind, in notebook order."""
    grouped: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for path in sorted((folder / "records").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            item = dict(entry["item"])
            item.setdefault("notebook", entry["notebook"])
            grouped.setdefault(entry["kind"], []).append(item)
    return grouped


def write_results(
    path: Path,
    lab: str,
    checks: list[dict[str, Any]],
    run_id: str | None = None,
    **others: list[dict[str, Any]],
) -> dict[str, Any]:
    """Write results.json (redacted) and return what was written."""
    document: dict[str, Any] = {
        "schema": SCHEMA,
        "run_id": run_id,
        "lab": lab,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "checks": checks,
        **{kind: others.get(kind, []) for kind in KINDS if kind != "checks"},
    }
    document = redact(document)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    return document
