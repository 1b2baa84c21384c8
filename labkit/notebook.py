"""What a lab-book notebook calls: open the lab, run a phase's checks, show and record results.

Notebooks stay thin: one call per cell. Headless runs (``labkit run``) set
``LABKIT_RUN_DIR``; then every result shown here is also recorded for
results.json and the report.
"""

from __future__ import annotations

import os
from pathlib import Path

from labkit import kernel
from labkit.checks import Results, run_checks
from labkit.params import Lab, load_lab
from labkit.report import Table, show, table
from labkit.results import record

# In a kernel, a LabkitError raised by any cell shows as its message, not a traceback.
kernel.install()

PARAMS_OVERRIDE = "LABKIT_PARAMS_OVERRIDE"

__all__ = [
    "PARAMS_OVERRIDE",
    "check",
    "compatibility",
    "coverage",
    "describe",
    "headless",
    "open_lab",
    "show",
]


def headless() -> bool:
    """True when running under ``labkit run`` (never wait for a click then)."""
    return bool(os.environ.get("LABKIT_RUN_DIR"))


def open_lab(params_file: str | Path | list[str]) -> Lab:
    """Load and validate the lab (one file, or layers in order); set plotly up for offline HTML."""
    import plotly.io as pio  # noqa: PLC0415 - only notebooks need plotly configured

    # plotly >= 6 emits only a JSON mimetype by default, which nbconvert drops.
    pio.renderers.default = "plotly_mimetype+notebook"
    files = params_file if isinstance(params_file, list) else [params_file]
    # The test suite points the committed notebooks (run by nbval, which cannot inject
    # parameters) at a private sandbox; `labkit run` clears this for its kernels.
    override = os.environ.get(PARAMS_OVERRIDE, "")
    return load_lab(*([override] if override else files))


def check(
    lab: Lab, phase: int | None = None, ids: list[str] | None = None, apply: bool = False
) -> Results:
    """Run checks, record them for the run, return them (a cell ending with it shows a table)."""
    results = run_checks(lab, phase=phase, ids=ids, apply=apply)
    record("checks", results.to_list())
    return results


def describe(lab: Lab) -> Table:
    """The lab at a glance: nodes, where each component runs, version pins (a table)."""
    rows = [
        {
            "what": f"node {n.name}",
            "where": f"{n.ssh_user}@{n.address}:{n.ssh_port}",
            "detail": n.role,
        }
        for n in lab.nodes
    ]
    rows += [
        {
            "what": "postgresql",
            "where": f"{lab.postgres.host}:{lab.postgres.port}",
            "detail": f"{lab.versions.postgresql}, db {lab.postgres.database}",
        },
        {
            "what": "redis",
            "where": f"{lab.redis.host}:{lab.redis.port}",
            "detail": f"{lab.redis.replicas} replicas, {lab.redis.sentinels} sentinels",
        },
        {
            "what": "shlink",
            "where": lab.shlink.base_url,
            "detail": f"redirect cache {'on' if lab.shlink.redirect_cache else 'off'}",
        },
    ]
    rows += [
        {"what": f"pin {name}", "where": "", "detail": str(value)}
        for name, value in lab.versions.model_dump().items()
    ]
    return table(rows, {"what": "14em", "where": "40%"})


def coverage() -> Table:
    """Every roadmap checklist item: its id, words, what it needs, and whether labkit checks it."""
    from labkit.checks import ITEMS, implemented_ids  # noqa: PLC0415

    done = implemented_ids()
    rows = [
        {
            "id": entry.id,
            "item": entry.title,
            "needs": entry.needs,
            "checked by labkit": "yes" if entry.id in done else "not implemented",
        }
        for entry in ITEMS
    ]
    checked = sum(row["checked by labkit"] == "yes" for row in rows)
    return table(
        rows,
        {"id": "4.5em", "needs": "9em", "checked by labkit": "11em"},
        what=f"roadmap items, {checked} checked by labkit",
    )


def compatibility(lab: Lab) -> Table:
    """The version-compatibility rules that apply to this lab's pins, with their sources."""
    from labkit.compat import evaluate  # noqa: PLC0415

    return table(
        [
            {
                "pin": verdict.subject,
                "supported": verdict.expected,
                "verdict": "ok" if verdict.ok else "NOT SUPPORTED",
                "source": verdict.rule.source,
            }
            for verdict in evaluate(lab.versions)
        ],
        {"pin": "16em", "supported": "14em", "verdict": "9em"},
    )
