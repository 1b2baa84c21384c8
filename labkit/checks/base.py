"""What a check is made of: its Outcome, the Context it may use, the registry of implementations.

A per-phase module registers a function for a roadmap item with ``@implements("1.2.3")``;
``labkit.checks.runner`` runs them and turns each Outcome into a recorded ``Result``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labkit.errors import LabkitError
from labkit.params import Lab
from labkit.results import Result, Status
from labkit.roadmap import item
from labkit.secrets import redact

__all__ = [
    "Context",
    "Outcome",
    "Result",
    "Status",
    "cluster_for",
    "implementations",
    "implements",
]

if TYPE_CHECKING:
    from labkit.cluster.client import Cluster

_log = logging.getLogger("labkit.checks")


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


CheckFunction = Callable[["Context"], Outcome | list[Outcome]]
_IMPLEMENTATIONS: dict[str, CheckFunction] = {}


def implementations() -> dict[str, CheckFunction]:
    """Roadmap item id -> its registered check (those of the modules imported so far)."""
    return dict(_IMPLEMENTATIONS)


def implements(item_id: str) -> Callable[[CheckFunction], CheckFunction]:
    """Register ``function`` as the implementation of roadmap item ``item_id``."""
    item(item_id)  # raises on an unknown id: a typo must not register a phantom check

    def register(function: CheckFunction) -> CheckFunction:
        if item_id in _IMPLEMENTATIONS and _IMPLEMENTATIONS[item_id] is not function:
            raise LabkitError(f"check {item_id} is implemented twice")
        _IMPLEMENTATIONS[item_id] = function
        return function

    return register


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


def cluster_for(context: Context) -> Cluster:
    """The lab's Cluster for this check run: opened on first use, closed with the context."""
    from labkit.cluster.client import Cluster  # noqa: PLC0415 - the kubernetes client on demand

    opened: Cluster = context.resource("cluster", lambda: Cluster.open(context.lab), Cluster.close)
    return opened
