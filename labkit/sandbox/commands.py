"""``labkit sandbox up|down|status``: start, stop and describe the local lab (status is JSON)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from labkit.arguments import path

__all__ = ["register"]

_DEFAULT_PARAMS = "params/local.yaml"


def _sandbox(arguments: argparse.Namespace) -> Any:
    from labkit.params import load_lab  # noqa: PLC0415 - keep `labkit --help` fast
    from labkit.sandbox import Sandbox  # noqa: PLC0415

    return Sandbox(load_lab(*(arguments.params or [_DEFAULT_PARAMS])))


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _up(arguments: argparse.Namespace) -> int:
    status = _sandbox(arguments).up(progress=_progress)
    print(json.dumps(status, indent=2))
    return 0 if status["healthy"] else 1


def _down(arguments: argparse.Namespace) -> int:
    sandbox = _sandbox(arguments)
    sandbox.down()
    left = [entry["name"] for entry in sandbox.status()["components"] if entry["pid"]]
    if left:
        print(f"labkit: still running after down: {', '.join(left)}", file=sys.stderr)
        return 1
    print(f"sandbox {sandbox.lab.name}: down (data kept in {sandbox.state_dir})", file=sys.stderr)
    return 0


def _status(arguments: argparse.Namespace) -> int:
    status = _sandbox(arguments).status()
    print(json.dumps(status, indent=2))
    return 0 if status["healthy"] else 1


def register(subparsers: Any) -> None:
    """Add ``sandbox up|down|status`` to the ``labkit`` command line."""
    sandbox = subparsers.add_parser("sandbox", help="start/stop/describe the local lab")
    actions = sandbox.add_subparsers(dest="sandbox_command", required=True, metavar="ACTION")
    for name, handler, text in (
        ("up", _up, "start every component (idempotent); prints status JSON; exit 1 if unhealthy"),
        ("down", _down, "stop every component; leaves no process, namespace, bridge or mount"),
        ("status", _status, "print every component's pid, address, role, health as JSON"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument(
            "--params",
            action="append",
            type=path,
            metavar="FILE",
            help=f"params file(s) of a sandbox lab (default {_DEFAULT_PARAMS})",
        )
        action.set_defaults(handler=handler)
