"""The roadmap's validation checklists as code: a registry, results, and the checks per phase."""

from labkit.checks.base import Context, Outcome, implements
from labkit.checks.runner import CAPABILITIES, Results, implemented_ids, run_checks
from labkit.results import Result, Status
from labkit.roadmap import ITEMS, STEPS, Item, item, items_for

__all__ = [
    "CAPABILITIES",
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
