"""Runbooks that run: each runbook of docs/runbooks/ as labkit calls, plan first, apply to change.

One call per runbook, as notebook 07 makes them; each returns an ``Outcome``
(``planned`` without ``apply``, ``pass``/``fail`` judged from what it measured,
``skip`` with why when this lab cannot run it) and records it for results.json:

* ``scale``: the shortener's workers (sandbox) / the Deployment's replicas (cluster),
  throughput measured before and after;
* ``backup_restore``: a snapshot-consistent dump restored into a fresh database, row
  counts and checksums compared table by table;
* ``flush_cache``: the redirect cache flushed under load, the hit ratio's drop and
  recovery measured;
* ``routing``: Istio routing (cluster only);
* ``doctor``: the troubleshooting evidence (``labkit doctor``).
"""

from __future__ import annotations

from pathlib import Path

from labkit.params import Lab
from labkit.runbooks.backup import BackupRestore
from labkit.runbooks.base import Action, Outcome, Runbook, perform
from labkit.runbooks.cache import CacheFlush
from labkit.runbooks.doctor import Report
from labkit.runbooks.routing import Routing
from labkit.runbooks.scale import Scale

__all__ = [
    "Action",
    "Outcome",
    "Report",
    "Runbook",
    "backup_restore",
    "doctor",
    "flush_cache",
    "perform",
    "routing",
    "scale",
]


def scale(
    lab: Lab,
    replicas: int,
    apply: bool = False,
    rate: float = 300.0,
    duration_s: float = 3.0,
    restore: bool = True,
) -> Outcome:
    """Scale Shlink to ``replicas`` (sandbox: workers) with throughput measured before and after."""
    return perform(Scale(lab, replicas, rate, duration_s, restore), apply)


def backup_restore(lab: Lab, apply: bool = False, keep: bool = False) -> Outcome:
    """Back up PostgreSQL, restore into a fresh database, compare counts and checksums."""
    return perform(BackupRestore(lab, keep), apply)


def flush_cache(
    lab: Lab, apply: bool = False, rate: float = 200.0, duration_s: float = 6.0
) -> Outcome:
    """Flush the redirect cache under load; the hit ratio's drop and recovery measured."""
    return perform(CacheFlush(lab, rate, duration_s), apply)


def routing(lab: Lab, apply: bool = False) -> Outcome:
    """Change Istio routing (a canary weight): cluster only, so a skip with why on the sandbox."""
    return perform(Routing(lab), apply)


def doctor(lab: Lab, out: Path | None = None) -> Report:
    """Collect troubleshooting evidence into ``out`` (default: the run folder's ``doctor/``)."""
    from labkit.runbooks.doctor import collect, default_folder, write  # noqa: PLC0415

    report = collect(lab)
    write(lab, report, out or default_folder(lab))
    return report
