"""The roadmap's validation checklists as code: a registry, results, and the checks per phase."""

from labkit.checks.base import (
    Context,
    Outcome,
    Result,
    Results,
    Status,
    implemented_ids,
    implements,
    run_checks,
)
from labkit.checks.roadmap import ITEMS, STEPS, Item, item, items_for

__all__ = [
    "ITEMS",
    "STEPS",
    "Context",
    "Item",
    "Outcome",
    "Result",
    "Results",
    "Status",
    "implemented_ids",
    "implements",
    "item",
    "items_for",
    "run_checks",
]
