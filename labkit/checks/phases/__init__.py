"""One module per roadmap phase; importing them registers their checks."""

from labkit.checks.phases import phase1, phase2, phase3, phase5, phase6, preflight

__all__ = ["phase1", "phase2", "phase3", "phase5", "phase6", "preflight"]
