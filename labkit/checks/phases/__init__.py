"""One module per roadmap phase; importing them registers their checks."""

from labkit.checks.phases import preflight

__all__ = ["preflight"]
