"""The ``labkit`` command line: a thin layer over the package; errors print without tracebacks."""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from labkit import arguments as checked
from labkit.errors import ConfigError, LabkitError

__all__ = ["main"]

# Modules that add their own sub-commands: each has ``register(subparsers)``.
_COMMAND_MODULES: list[str] = [
    "labkit.sandbox.commands",
    "labkit.load.commands",
    "labkit.steps.commands",
    "labkit.manifests_commands",
    "labkit.jupyter",
    "labkit.runbooks.commands",
]


def _params_validate(arguments: argparse.Namespace) -> int:
    from labkit.params import load_lab  # noqa: PLC0415 - keep `labkit --help` fast

    status = 0
    for path in arguments.files:
        try:
            lab = load_lab(path)
        except ConfigError as exc:
            print(f"{path}: invalid", file=sys.stderr)
            for problem in exc.problems or [str(exc)]:
                print(f"  - {problem}", file=sys.stderr)
            status = 2
            continue
        print(f"{path}: valid (lab {lab.name}, {lab.kind}, {len(lab.nodes)} nodes)")
    return status


def _check(arguments: argparse.Namespace) -> int:
    from labkit.checks import run_checks  # noqa: PLC0415
    from labkit.params import load_lab  # noqa: PLC0415
    from labkit.report import check_table_text  # noqa: PLC0415
    from labkit.results import write_results  # noqa: PLC0415

    lab = load_lab(*arguments.params)
    results = run_checks(lab, phase=arguments.phase)
    print(check_table_text(results.to_list()))
    counts = ", ".join(f"{n} {name}" for name, n in results.counts().items() if n)
    print(f"\n{lab.name}: {counts}")
    if arguments.json:
        write_results(Path(arguments.json), lab=lab.name, checks=results.to_list())
        print(f"results written to {arguments.json}")
    return results.exit_code


def _run(arguments: argparse.Namespace) -> int:
    from labkit.run import run_labbook  # noqa: PLC0415

    # An empty --notebooks is a selection of nothing (refused), not a request for all.
    notebooks = None if arguments.notebooks is None else arguments.notebooks.split(",")
    outcome = run_labbook(
        params=[Path(p) for p in arguments.params],
        notebooks=notebooks,
        out=Path(arguments.out) if arguments.out else None,
        cell_timeout_s=arguments.cell_timeout,
        apply=arguments.apply,
    )
    print(json.dumps({"run": str(outcome.run_dir), "status": outcome.status}))
    print(outcome.report_path)
    return outcome.exit_code


def _drill(arguments: argparse.Namespace) -> int:
    from labkit.drills import run_drill  # noqa: PLC0415
    from labkit.params import load_lab  # noqa: PLC0415
    from labkit.results import write_results  # noqa: PLC0415

    lab = load_lab(*arguments.params)
    outcome = run_drill(
        lab,
        arguments.scenario,
        apply=arguments.apply,
        confirm=arguments.confirm or "",
        progress=lambda message: print(message, file=sys.stderr, flush=True),
    )
    print(outcome.summary())
    if arguments.json:
        write_results(Path(arguments.json), lab=lab.name, checks=[], drills=[outcome.to_dict()])
        print(f"results written to {arguments.json}")
    if outcome.status == "skip":  # refused (no apply or confirmation): a usage error
        return 2 if outcome.reason.startswith("refused") else 0
    return 0 if outcome.ok else 1


_MAX_CELL_TIMEOUT_S = 86_400  # a day: a cell slower than that hangs, whatever it does


def _cell_timeout(text: str) -> float:
    """An argparse type: a whole, finite number of seconds above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{checked.shown(text)} is not a number of seconds"
        ) from None
    # papermill reads 0 as "no limit" and nbclient reads a negative number the same way.
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(
            f"{checked.shown(text)} must be a finite number of seconds above 0; "
            "without a limit a hanging cell waits forever"
        )
    if value > _MAX_CELL_TIMEOUT_S:
        raise argparse.ArgumentTypeError(
            f"{checked.shown(text)} must be at most {_MAX_CELL_TIMEOUT_S:,} seconds (a day) "
            "per cell"
        )
    # nbclient's timeout is an integer: a fraction would break every notebook of the run.
    if not value.is_integer():
        raise argparse.ArgumentTypeError(
            f"{checked.shown(text)} must be a whole number of seconds (the notebook runner "
            f"counts whole seconds); try {math.ceil(value)}"
        )
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labkit", description="Lab-book for the URL-shortener SRE lab."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    params = sub.add_parser("params", help="work with params files")
    params_sub = params.add_subparsers(dest="params_command", required=True, metavar="ACTION")
    validate = params_sub.add_parser("validate", help="validate params files (exit 2 if invalid)")
    validate.add_argument("files", nargs="+", type=checked.path, metavar="FILE")
    validate.set_defaults(handler=_params_validate)

    check = sub.add_parser("check", help="run the roadmap's checks, print the table")
    check.add_argument(
        "--params", action="append", required=True, type=checked.path, metavar="FILE"
    )
    check.add_argument("--phase", type=checked.count(0, 7, "(a roadmap phase)"), metavar="N")
    check.add_argument(
        "--json", type=checked.path, metavar="FILE", help="write results in the results.json schema"
    )
    check.set_defaults(handler=_check)

    run = sub.add_parser("run", help="run the lab-book headless into outputs/<run-id>/")
    run.add_argument("--params", action="append", required=True, type=checked.path, metavar="FILE")
    run.add_argument(
        "--notebooks",
        type=checked.text("notebook selection", empty=True),  # the runner refuses an empty one
        metavar="LIST",
        help="comma-separated prefixes, e.g. 00,06",
    )
    run.add_argument(
        "--out", type=checked.path, metavar="DIR", help="run folder (default outputs/<run-id>)"
    )
    run.add_argument(
        "--cell-timeout", type=_cell_timeout, default=600.0, metavar="SECONDS", help="per cell"
    )
    run.add_argument(
        "--apply", action="store_true", help="let notebooks apply changes (default: plan only)"
    )
    run.set_defaults(handler=_run)

    drill = sub.add_parser(
        "drill", help="a failure under load, measured, then the lab restored and checked"
    )
    drill.add_argument(
        "--params", action="append", required=True, type=checked.path, metavar="FILE"
    )
    drill.add_argument(
        "--scenario",
        required=True,
        type=checked.text("scenario name", longest=64),
        choices=["redis-master", "postgres-primary", "shortener-worker", "node-cut"],
    )
    drill.add_argument(
        "--json",
        type=checked.path,
        metavar="FILE",
        help="write the result in the results.json schema",
    )
    drill.add_argument(
        "--apply", action="store_true", help="on a lab other than the sandbox: allow the fault"
    )
    drill.add_argument(
        "--confirm",
        type=checked.text("lab name"),
        metavar="LAB",
        help="on a lab other than the sandbox: its name",
    )
    drill.set_defaults(handler=_drill)

    for module_name in _COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


# The only statuses the command line exits with (README): 0 fine, 1 a check failed,
# 2 labkit or what it drives broke, 130 interrupted.
STATUSES = (0, 1, 2, 130)


def _status(code: int) -> int:
    """``code`` when it is one of the documented statuses, else 2 (something broke)."""
    return code if code in STATUSES else 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``labkit`` console script; returns the exit status (0, 1, 2, 130)."""
    parser = _parser()
    arguments = parser.parse_args(argv)
    try:
        code = _status(int(arguments.handler(arguments)))
    except ConfigError as exc:
        print(f"labkit: {exc}", file=sys.stderr)
        return 2
    except LabkitError as exc:
        print(f"labkit: {exc}", file=sys.stderr)
        return _status(exc.exit_code)  # a remote command's own status is in its message
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, as other command-line tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        # A path the user named cannot be written or read: say which, with the system's words.
        where = f" {exc.filename}" if exc.filename else ""
        print(f"labkit:{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("labkit: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
