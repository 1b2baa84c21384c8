"""Run the registered checks: one roadmap item -> its results, as an ordered ``Results`` table."""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterable, Iterator
from typing import Any

from labkit.checks import phases  # noqa: F401 - importing the per-phase modules registers their checks
from labkit.checks.base import Context, Outcome, implementations
from labkit.errors import LabkitError
from labkit.params import Lab
from labkit.results import Result, Status
from labkit.roadmap import Item, Needs, items_for
from labkit.secrets import redact

__all__ = ["CAPABILITIES", "Results", "implemented_ids", "run_checks"]

_EXCERPT = 2000  # characters of evidence kept per result

# What each kind of lab can offer a check; an item needing something else is skipped with why.
CAPABILITIES: dict[str, dict[Needs, str]] = {
    "sandbox": {
        "params": "",
        "local": "",
        "ssh": "",
        "data": "",
        "load": "",
        "workstation": "",
        "metrics": "",  # the sandbox runs its own Prometheus and Alertmanager
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


def implemented_ids() -> set[str]:
    """Ids of every roadmap item that has an implementation."""
    return set(implementations())


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
    function = implementations().get(entry.id)
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
        from labkit.report import check_table_html  # noqa: PLC0415 - report is heavy

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
    wanted = set(ids) if ids is not None else None
    entries = [e for e in items_for(phase) if wanted is None or e.id in wanted]
    own = context is None
    context = context or Context(lab, apply=apply)
    try:
        return Results(result for entry in entries for result in _run_one(entry, context))
    finally:
        if own:
            context.close()
