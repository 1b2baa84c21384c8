"""``labkit plan`` and ``labkit apply``: the changes per node, or the changes made and evidence."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from labkit.secrets import redact

__all__ = ["register"]


def _write(path: str | None, document: dict[str, Any]) -> None:
    if path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(redact(document), indent=2) + "\n", encoding="utf-8")
        print(f"plan written to {target}")


def _phase(value: str) -> str:
    """``--phase``: a roadmap phase or step ("1", "1.5"), as the plan keys it."""
    if not re.fullmatch(r"\d+(\.\d+)?", value.strip()):
        raise argparse.ArgumentTypeError(
            f"{value!r}: expected a phase such as 1 or a step such as 1.5"
        )
    return value.strip()


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
        command.add_argument("--params", action="append", required=True, metavar="FILE")
        command.add_argument("--phase", type=_phase, metavar="N", help="1 (or a step: 1.5)")
        command.add_argument("--json", metavar="FILE", help="write the plan per node as JSON")
        command.set_defaults(handler=handler)
