"""The Cluster a check run shares: opened on first use, closed when the run ends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from labkit.cluster.client import Cluster
from labkit.params import Lab

__all__ = ["cluster_for"]


class _Context(Protocol):
    """What this needs of labkit.checks' Context (not imported: checks import this package)."""

    lab: Lab

    def resource(
        self, name: str, factory: Callable[[], Any], close: Callable[[Any], None] | None = ...
    ) -> Any: ...


def cluster_for(context: _Context) -> Cluster:
    """The lab's Cluster for this check run (one per run; closed by ``context.close()``)."""
    opened: Cluster = context.resource("cluster", lambda: Cluster.open(context.lab), Cluster.close)
    return opened
