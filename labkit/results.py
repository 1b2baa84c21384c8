"""results.json: one documented schema for every check, load and drill result of a run.

Schema ``labkit.results/1``::

    {
      "schema": "labkit.results/1",
      "run_id": str | null, "lab": str, "generated_at": ISO-8601 UTC,
      "checks": [ {id, title, step, status, expected, observed, evidence,
                   duration_s, subject, at} ... ],
      "load":   [ load results (labkit.load's schema: target_rps, achieved_rps, latency_ms ...) ],
      "drills": [ {kind: "drill", scenario, what, lab, status (done|skip), reason,
                   rate_rps, duration_s, fault: {action, at_s}, measured: {requests,
                   failed, failed_by_category, error_window_s, first_failure_s,
                   last_failure_s, first_success_s, p99_recovered_s, p99_target_ms,
                   p99_before_ms, p99_after_ms}, timeline: [{t_s, requests, ok, failed,
                   p99_ms}], writes: {acknowledged, lost, lost_codes, lost_after_restore},
                   failover: {summary, ... the components' own times}, restored: {ok,
                   actions, checks, problems}, verdicts: [{what, expected, measured, ok}],
                   load: {achieved_rps, requests, errors, generator_limited}} ... ],
      "plans":  [ {node, step, change, argv, applied, exit_code} ... ],
      "runbooks": [ {runbook, title, lab, status, summary, doc, steps, measured, series} ... ]
    }

Notebooks executed by ``labkit run`` add to it through ``record``: the runner
sets ``LABKIT_RUN_DIR`` and ``LABKIT_NOTEBOOK``; each record is appended to
``records/<notebook>.jsonl`` and the runner merges them. Everything is redacted
before it reaches a file. A line that is not a whole record (a truncated write, a
check without its status) is skipped by ``collect``, which says which file and line.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from labkit.environment import notebook_name, run_dir
from labkit.secrets import redact

__all__ = [
    "KINDS",
    "SCHEMA",
    "Kind",
    "Records",
    "Result",
    "Status",
    "collect",
    "record",
    "run_dir",
    "write_results",
]

SCHEMA = "labkit.results/1"


class Status(StrEnum):
    """What a check concluded."""

    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"
    ERROR = "error"
    NOT_IMPLEMENTED = "not implemented"


@dataclass(frozen=True)
class Result:
    """A check's result as recorded in results.json (secrets already masked)."""

    id: str
    title: str
    step: str
    status: Status
    expected: str
    observed: str
    evidence: str
    duration_s: float
    subject: str = ""
    at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the results.json ``checks`` entry)."""
        data = asdict(self)
        data["status"] = str(self.status)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Result:
        """Inverse of ``to_dict``."""
        return cls(**{**data, "status": Status(data["status"])})


Kind = Literal["checks", "load", "drills", "plans", "runbooks"]
KINDS: tuple[Kind, ...] = ("checks", "load", "drills", "plans", "runbooks")
# What a check needs to be counted and shown: Result's fields without a default.
_CHECK_FIELDS = tuple(
    f.name for f in fields(Result) if f.default is MISSING and f.default_factory is MISSING
)
_STATUSES = tuple(str(status) for status in Status)


def record(kind: Kind, items: list[dict[str, Any]]) -> Path | None:
    """Append ``items`` to this run's records; a no-op outside ``labkit run``. Returns the file."""
    folder = run_dir()
    if folder is None:
        return None
    notebook = notebook_name()
    path = folder / "records" / f"{notebook}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        for item in items:
            line = {"kind": kind, "notebook": notebook, "item": redact(item)}
            handle.write(json.dumps(line, default=str) + "\n")
    return path


@dataclass(frozen=True)
class Records:
    """A run's records grouped by kind, in notebook order, and the lines that were skipped."""

    by_kind: dict[str, list[dict[str, Any]]]
    skipped: list[str]  # "records/<file> line N: skipped, why" for each unreadable line


def collect(folder: Path) -> Records:
    """Every record under ``folder/records``; a line that is not a whole record is skipped."""
    by_kind: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    skipped: list[str] = []
    for path in sorted((folder / "records").glob("*.jsonl")):
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                kind, item = _parse(line)
            except ValueError as exc:
                skipped.append(f"records/{path.name} line {number}: skipped, {exc}")
                continue
            by_kind[kind].append(item)
    return Records(by_kind, skipped)


def _parse(line: str) -> tuple[str, dict[str, Any]]:
    """One records line as (kind, item); a ValueError says what is wrong with it."""
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg}: column {exc.colno}); a truncated write?") from exc
    if not (
        isinstance(entry, dict)
        and isinstance(entry.get("notebook"), str)
        and isinstance(entry.get("item"), dict)
    ):
        raise ValueError("not a record (an object with kind, notebook and item)")
    kind = entry.get("kind")
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    item = dict(entry["item"])
    if kind == "checks":
        _validate_check(item)
    item.setdefault("notebook", entry["notebook"])
    return kind, item


def _validate_check(item: dict[str, Any]) -> None:
    """Raise ValueError when a check record lacks a field or has an unknown status."""
    name = f"check {item['id']}" if "id" in item else "a check"
    missing = [name for name in _CHECK_FIELDS if name not in item]
    if missing:
        raise ValueError(f"{name} has no {', '.join(missing)}")
    if item["status"] not in _STATUSES:
        raise ValueError(
            f"{name} has status {item['status']!r}; expected one of {', '.join(_STATUSES)}"
        )


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
