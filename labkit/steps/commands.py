"""``labkit plan`` and ``labkit apply``: the changes per node, or the changes made and evidence."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from labkit.arguments import path, shown
from labkit.secrets import redact

__all__ = ["register"]


def _write(path: str | None, document: dict[str, Any]) -> None:
    if path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(redact(document), indent=2) + "\n", encoding="utf-8")
        print(f"plan written to {target}")


_MAX_PHASE = 10  # characters: "1.5" is three


def _phase(value: str) -> str:
    """``--phase``: a roadmap phase or step labkit plans ("1", "1.5"), as the plan keys it;
    any other is a usage error (exit 2) naming the valid ones."""
    from labkit.errors import ConfigError  # noqa: PLC0415
    from labkit.plan import phase_of  # noqa: PLC0415 - keep `labkit --help` fast

    if len(value) > _MAX_PHASE or "\0" in value:
        raise argparse.ArgumentTypeError(
            f"{shown(value)} is not a roadmap phase or step such as 1 or 1.5"
        )
    try:
        key = phase_of(value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    assert key is not None  # a string is never None
    return key


def _plan(arguments: argparse.Namespace) -> int:
    from labkit import plan  # noqa: PLC0415 - keep `labkit --help` fast
    from labkit.params import load_lab  # noqa: PLC0415

    lab = load_lab(*arguments.params)
    result = plan.diff(lab, phase=arguments.phase)
    print(result.text())
    _write(arguments.json, result.to_dict())
    return 0


def _apply(arguments: argparse.Namespace) -> int:
    from labkit import plan  # noqa: PLC0415
    from labkit.params import load_lab  # noqa: PLC0415

    lab = load_lab(*arguments.params)
    result = plan.apply(lab, phase=arguments.phase, progress=lambda line: print(redact(line)))
    print(f"{lab.name}: applied {len(result.evidence)} change(s); re-check: nothing left")
    print(result.text())
    _write(arguments.json, result.to_dict())
    return 0


def register(subparsers: Any) -> None:
    """Add ``plan`` and ``apply`` to the labkit command line."""
    for name, handler, text in (
        ("plan", _plan, "show what would change on each node (changes nothing)"),
        ("apply", _apply, "make the changes, then re-check that nothing is left"),
    ):
        command = subparsers.add_parser(name, help=text)
        command.add_argument("--params", action="append", required=True, type=path, metavar="FILE")
        command.add_argument("--phase", type=_phase, metavar="N", help="1 (or a step: 1.5)")
        command.add_argument(
            "--json", type=path, metavar="FILE", help="write the plan per node as JSON"
        )
        command.set_defaults(handler=handler)
