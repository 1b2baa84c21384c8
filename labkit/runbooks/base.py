"""The shape every runbook shares: steps shown first, run only with ``apply``, judged by a measure.

A runbook is an operation, not a desired state: its plan lists each step of
``docs/runbooks/<name>.md`` with the command an operator would type; ``perform``
shows that plan unless ``apply`` is set, runs the steps in order (each records
what it saw and how long it took), always runs the steps marked ``always`` (the
ones that put the lab back), then judges the outcome from what was measured.
A step that cannot run on this lab (a cluster step on the sandbox) makes the
whole runbook ``skip`` with why; nothing is run then.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from labkit.errors import LabkitError
from labkit.results import record
from labkit.secrets import redact

__all__ = ["Action", "Outcome", "Runbook", "perform"]


@dataclass(frozen=True)
class Action:
    """One step: what it does, the command as an operator would type it, the call that does it.

    ``run`` returns what it saw (one line); ``cannot`` (non-empty) says why the step
    cannot run on this lab. ``always`` steps run even after an earlier step failed.
    """

    step: str
    command: str
    run: Callable[[], str] | None = field(default=None, compare=False)
    cannot: str = ""
    always: bool = False


@dataclass
class Outcome:
    """What a runbook planned, did and measured; status: planned, pass, fail or skip."""

    runbook: str
    title: str
    lab: str
    status: str
    summary: str
    doc: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    measured: list[dict[str, Any]] = field(default_factory=list)
    series: dict[str, Any] = field(default_factory=dict)  # timelines for a chart

    @property
    def ok(self) -> bool:
        """False only when the runbook ran and its measure failed."""
        return self.status != "fail"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (redacted): the results.json ``runbooks`` entry."""
        data: dict[str, Any] = redact(
            {
                "runbook": self.runbook,
                "title": self.title,
                "lab": self.lab,
                "status": self.status,
                "summary": self.summary,
                "doc": self.doc,
                "steps": self.steps,
                "measured": self.measured,
                "series": self.series,
            }
        )
        return data

    def text(self) -> str:
        """A terminal rendering: status and summary, each step, each measured row."""
        lines = [f"{self.runbook}: {self.status}: {self.summary}"]
        for row in self.steps:
            seen = f" -> {row['seen']}" if row.get("seen") else ""
            lines.append(f"  [{row['state']}] {row['step']}{seen}")
            lines.append(f"      $ {row['command']}")
        lines += ["  " + ", ".join(f"{k}: {v}" for k, v in row.items()) for row in self.measured]
        text: str = redact("\n".join(lines))
        return text

    def _repr_html_(self) -> str:
        from labkit.report import runbook_html  # noqa: PLC0415 - report imports plotly lazily

        return runbook_html(self.to_dict())


class Runbook:
    """A runbook on one lab: its steps (``actions``) and its judge over what they measured."""

    name = "runbook"
    title = "runbook"
    doc = "docs/runbooks/README.md"

    def __init__(self, lab_name: str) -> None:
        self.lab_name = lab_name
        self.measured: list[dict[str, Any]] = []
        self.series: dict[str, Any] = {}

    def actions(self) -> list[Action]:
        """The steps in order (reads nothing, changes nothing)."""
        raise NotImplementedError

    def judge(self) -> tuple[bool, str]:
        """After the steps ran: did the measure hold, and a one-line why."""
        raise NotImplementedError


def _row(action: Action, state: str, seen: str = "", took_s: float = 0.0) -> dict[str, Any]:
    return {
        "step": action.step,
        "command": action.command,
        "state": state,
        "seen": seen,
        "took_s": round(took_s, 3),
    }


def _outcome(runbook: Runbook, status: str, summary: str, rows: list[dict[str, Any]]) -> Outcome:
    return Outcome(
        runbook.name,
        runbook.title,
        runbook.lab_name,
        status,
        summary,
        runbook.doc,
        rows,
        runbook.measured,
        runbook.series,
    )


def _finish(outcome: Outcome, progress: Callable[[str], None]) -> Outcome:
    record("runbooks", [outcome.to_dict()])
    progress(redact(f"{outcome.runbook}: {outcome.status}: {outcome.summary}"))
    return outcome


def perform(
    runbook: Runbook, apply: bool = False, progress: Callable[[str], None] = print
) -> Outcome:
    """Plan ``runbook``; with ``apply`` run its steps, then judge what they measured."""
    actions = runbook.actions()
    cannot = [action for action in actions if action.cannot]
    if cannot:
        rows = [_row(a, "cannot" if a.cannot else "not run", a.cannot) for a in actions]
        reasons = "; ".join(dict.fromkeys(action.cannot for action in cannot))
        return _finish(_outcome(runbook, "skip", reasons, rows), progress)
    if not apply:
        rows = [_row(action, "planned") for action in actions]
        summary = f"plan only: {len(actions)} step(s); set apply = True to run them"
        return _finish(_outcome(runbook, "planned", summary, rows), progress)
    rows = []
    failure = ""
    for action in actions:
        if failure and not action.always:
            rows.append(_row(action, "not run", "an earlier step failed"))
            continue
        started = time.monotonic()
        progress(redact(f"{runbook.name}: {action.step}"))
        try:
            seen = action.run() if action.run is not None else ""
        except LabkitError as exc:
            rows.append(_row(action, "failed", str(exc), time.monotonic() - started))
            failure = failure or f"{action.step}: {exc}"
            continue
        rows.append(_row(action, "done", seen, time.monotonic() - started))
    if failure:
        return _finish(_outcome(runbook, "fail", failure, rows), progress)
    held, why = runbook.judge()
    return _finish(_outcome(runbook, "pass" if held else "fail", why, rows), progress)
