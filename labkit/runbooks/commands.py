"""``labkit doctor`` (troubleshooting evidence) and ``labkit runbook`` (plan, or apply)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from labkit.arguments import count, path, text

__all__ = ["register"]

_RUNBOOKS = ("scale", "backup-restore", "cache-flush", "routing")


def _doctor(arguments: argparse.Namespace) -> int:
    from labkit.params import load_lab  # noqa: PLC0415 - keep `labkit --help` fast
    from labkit.runbooks import doctor  # noqa: PLC0415

    lab = load_lab(*arguments.params)
    report = doctor(lab, Path(arguments.out) if arguments.out else None)
    print(report.text())
    return 0 if report.healthy else 1


def _runbook(arguments: argparse.Namespace) -> int:
    from labkit import runbooks  # noqa: PLC0415
    from labkit.params import load_lab  # noqa: PLC0415

    lab = load_lab(*arguments.params)
    apply = bool(arguments.apply)
    if arguments.name == "scale":
        replicas = arguments.replicas or lab.shlink.workers + 1
        outcome = runbooks.scale(lab, replicas, apply=apply)
    elif arguments.name == "backup-restore":
        outcome = runbooks.backup_restore(lab, apply=apply)
    elif arguments.name == "cache-flush":
        outcome = runbooks.flush_cache(lab, apply=apply)
    else:
        outcome = runbooks.routing(lab, apply=apply)
    print(outcome.text())
    if arguments.json:
        Path(arguments.json).write_text(json.dumps(outcome.to_dict(), indent=2) + "\n")
    return 1 if outcome.status == "fail" else 0


# Workers (sandbox) or Pods (cluster) of the shortener: a lab of three small nodes runs a few.
_MAX_REPLICAS = 64


def register(subparsers: Any) -> None:
    """Add ``doctor`` and ``runbook`` to the ``labkit`` command line."""
    doctor = subparsers.add_parser(
        "doctor", help="collect troubleshooting evidence (status, recent errors, data plane)"
    )
    doctor.add_argument("--params", action="append", required=True, type=path, metavar="FILE")
    doctor.add_argument(
        "--out",
        type=path,
        metavar="DIR",
        help="folder for the evidence (default outputs/doctor-<time>-<lab>)",
    )
    doctor.set_defaults(handler=_doctor)

    runbook = subparsers.add_parser(
        "runbook", help="a runbook of docs/runbooks: the plan, or with --apply run and measure it"
    )
    runbook.add_argument("name", type=text("runbook name", longest=64), choices=_RUNBOOKS)
    runbook.add_argument("--params", action="append", required=True, type=path, metavar="FILE")
    runbook.add_argument("--apply", action="store_true", help="run it (default: the plan only)")
    runbook.add_argument(
        "--replicas",
        type=count(1, _MAX_REPLICAS, "replicas", "a homelab's shortener needs no more"),
        metavar="N",
        help="scale: workers/replicas (default +1)",
    )
    runbook.add_argument("--json", type=path, metavar="FILE", help="write the outcome as JSON")
    runbook.set_defaults(handler=_runbook)
