"""One module per roadmap phase; importing them registers their checks."""

from labkit.checks.phases import (
    cluster1,
    cluster2,
    cluster3,
    phase1,
    phase2,
    phase3,
    phase4,
    phase5,
    phase6,
    preflight,
)

__all__ = [
    "cluster1",
    "cluster2",
    "cluster3",
    "phase1",
    "phase2",
    "phase3",
    "phase4",
    "phase5",
    "phase6",
    "preflight",
]
