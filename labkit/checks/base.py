"""Check, Outcome, Result, Results: one roadmap checkbox -> one result with evidence."""

from __future__ import annotations

import datetime as dt
import logging
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from labkit.checks.roadmap import Item, Needs, item, items_for
from labkit.errors import LabkitError
from labkit.params import Lab
from labkit.secrets import redact

__all__ = [
    "CAPABILITIES",
    "Context",
    "Outcome",
    "Result",
    "Results",
    "Status",
    "implemented_ids",
    "implements",
    "run_checks",
]

_EXCERPT = 2000  # characters of evidence kept per result
_log = logging.getLogger("labkit.checks")


class Status(StrEnum):
    """What a check concluded."""

    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"
    ERROR = "error"
    NOT_IMPLEMENTED = "not implemented"


# What each kind of lab can offer a check; an item needing something else is skipped with why.
CAPABILITIES: dict[str, dict[Needs, str]] = {
    "sandbox": {
        "params": "",
        "local": "",
        "ssh": "",
        "data": "",
        "load": "",
        "workstation": "",
        "metrics": "",
        "cluster": "needs a Kubernetes API; the sandbox has none",
    },
    "homelab": {
        "params": "",
        "local": "",
        "ssh": "",
        "data": "",
        "load": "",
        "workstation": "",
        "metrics": "",
        "cluster": "",
    },
}


@dataclass(frozen=True)
class Outcome:
    """What a check function returns: status, what it expected, what it saw, and how it looked."""

    status: Status
    expected: str = ""
    observed: str = ""
    evidence: str = ""
    subject: str = ""  # a node, endpoint or component when the item is checked per subject

    @classmethod
    def judge(
        cls, ok: bool, expected: str, observed: str, evidence: str = "", subject: str = ""
    ) -> Outcome:
        """``pass`` when ``ok`` is exactly True, else ``fail``."""
        status = Status.PASS if ok is True else Status.FAIL
        return cls(status, expected, observed, evidence, subject)

    @classmethod
    def skip(cls, reason: str, subject: str = "") -> Outcome:
        """Not applicable here; ``reason`` says why (shown as observed)."""
        return cls(Status.SKIP, "", reason, "", subject)


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


CheckFunction = Callable[["Context"], Outcome | list[Outcome]]
_IMPLEMENTATIONS: dict[str, CheckFunction] = {}


def implements(item_id: str) -> Callable[[CheckFunction], CheckFunction]:
    """Register ``function`` as the implementation of roadmap item ``item_id``."""
    item(item_id)  # raises on an unknown id: a typo must not register a phantom check

    def register(function: CheckFunction) -> CheckFunction:
        if item_id in _IMPLEMENTATIONS and _IMPLEMENTATIONS[item_id] is not function:
            raise LabkitError(f"check {item_id} is implemented twice")
        _IMPLEMENTATIONS[item_id] = function
        return function

    return register


def implemented_ids() -> set[str]:
    """Ids of every roadmap item that has an implementation."""
    _load_implementations()
    return set(_IMPLEMENTATIONS)


def _load_implementations() -> None:
    # Importing the per-phase modules registers their checks.
    from labkit.checks import phases  # noqa: F401, PLC0415


class Context:
    """What a check may use: the lab, plus shared resources created once per run."""

    def __init__(self, lab: Lab, apply: bool = False) -> None:
        self.lab = lab
        self.apply = apply  # checks that must disturb the lab (restart a process) need it
        self._resources: dict[str, Any] = {}
        self._closers: list[Callable[[], None]] = []

    def resource(
        self, name: str, factory: Callable[[], Any], close: Callable[[Any], None] | None = None
    ) -> Any:
        """The shared resource ``name``, made by ``factory`` on first use."""
        if name not in self._resources:
            value = factory()
            self._resources[name] = value
            if close is not None:
                self._closers.append(lambda: close(value))
        return self._resources[name]

    def close(self) -> None:
        """Release every resource made for this run; a failing release is logged, not raised."""
        while self._closers:
            closer = self._closers.pop()
            try:
                closer()
            except Exception as exc:  # results already taken must survive a failing release
                _log.warning("check clean-up failed: %s: %s", type(exc).__name__, redact(str(exc)))

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _excerpt(text: str) -> str:
    text = redact(text)
    return text if len(text) <= _EXCERPT else text[: _EXCERPT - 20] + "\n... (truncated)"


def _result(entry: Item, outcome: Outcome, duration: float) -> Result:
    return Result(
        id=entry.id,
        title=entry.title,
        step=entry.step,
        status=outcome.status,
        expected=_excerpt(outcome.expected),
        observed=_excerpt(outcome.observed),
        evidence=_excerpt(outcome.evidence),
        duration_s=round(duration, 4),
        subject=outcome.subject,
    )


def _run_one(entry: Item, context: Context) -> list[Result]:
    reason = CAPABILITIES[context.lab.kind].get(entry.needs, "")
    if reason:
        return [_result(entry, Outcome.skip(reason), 0.0)]
    function = _IMPLEMENTATIONS.get(entry.id)
    if function is None:
        return [_result(entry, Outcome(Status.NOT_IMPLEMENTED, observed="no check yet"), 0.0)]
    started = time.perf_counter()
    try:
        outcomes = function(context)
    except LabkitError as exc:
        outcomes = Outcome(Status.ERROR, observed=str(exc))
    except Exception as exc:  # a check that crashes is recorded as error, with where it broke
        where = traceback.extract_tb(exc.__traceback__)[-1]
        outcomes = Outcome(
            Status.ERROR,
            observed=f"{type(exc).__name__}: {exc}",
            evidence=f"{where.filename}:{where.lineno} in {where.name}",
        )
    duration = time.perf_counter() - started
    if isinstance(outcomes, Outcome):
        outcomes = [outcomes]
    if not outcomes:
        outcomes = [Outcome(Status.ERROR, observed="the check returned no outcome")]
    share = duration / len(outcomes)
    return [_result(entry, outcome, share) for outcome in outcomes]


class Results:
    """An ordered set of check results that shows itself as a table and serialises to JSON."""

    def __init__(self, results: Iterable[Result] = ()) -> None:
        self._results = list(results)

    def __iter__(self) -> Iterator[Result]:
        return iter(self._results)

    def __len__(self) -> int:
        return len(self._results)

    def __add__(self, other: Results) -> Results:
        return Results([*self._results, *other._results])

    def counts(self) -> dict[str, int]:
        """How many results have each status (every status listed, zeros included)."""
        counts = {str(status): 0 for status in Status}
        for result in self._results:
            counts[str(result.status)] += 1
        return counts

    @property
    def exit_code(self) -> int:
        """0 when nothing failed or errored, else 1."""
        bad = {Status.FAIL, Status.ERROR}
        return 1 if any(result.status in bad for result in self._results) else 0

    def by_id(self, item_id: str) -> list[Result]:
        """Every result recorded for ``item_id`` (one per subject)."""
        return [result for result in self._results if result.id == item_id]

    def to_list(self) -> list[dict[str, Any]]:
        """JSON-ready list (redacted)."""
        return [redact(result.to_dict()) for result in self._results]

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per result."""
        import pandas as pd  # noqa: PLC0415 - pandas is heavy; only tables need it

        return pd.DataFrame(self.to_list())

    def _repr_html_(self) -> str:
        from labkit.report import check_table_html  # noqa: PLC0415 - report imports checks

        return check_table_html(self.to_list())

    def __repr__(self) -> str:
        counts = ", ".join(f"{count} {name}" for name, count in self.counts().items() if count)
        return f"Results({counts or 'empty'})"


def run_checks(
    lab: Lab,
    phase: int | None = None,
    ids: Iterable[str] | None = None,
    context: Context | None = None,
    apply: bool = False,
) -> Results:
    """Run the registry's items for ``phase`` (or ``ids``) against ``lab``, in roadmap order."""
    _load_implementations()
    wanted = set(ids) if ids is not None else None
    entries = [e for e in items_for(phase) if wanted is None or e.id in wanted]
    own = context is None
    context = context or Context(lab, apply=apply)
    try:
        return Results(result for entry in entries for result in _run_one(entry, context))
    finally:
        if own:
            context.close()
