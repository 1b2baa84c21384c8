"""The Cluster a check run shares: opened on first use, closed when the run ends."""

from __future__ import annotations

from typing import TYPE_CHECKING

from labkit.cluster.client import Cluster

if TYPE_CHECKING:
    from labkit.checks.base import Context

__all__ = ["cluster_for"]


def cluster_for(context: Context) -> Cluster:
    """The lab's Cluster for this check run (one per run; closed by ``context.close()``)."""
    opened: Cluster = context.resource("cluster", lambda: Cluster.open(context.lab), Cluster.close)
    return opened
