"""``labkit bench``: open-loop load on any allowed HTTP URL (like wrk2), or a lab scenario."""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path
from typing import Any

from labkit.arguments import MAX_TEXT, count, number, path, shown, text
from labkit.errors import ConfigError

__all__ = ["register"]


def _write_json(path: str, entries: list[dict[str, Any]], lab: str) -> None:
    from labkit.results import write_results  # noqa: PLC0415

    write_results(Path(path), lab=lab, checks=[], load=entries)
    print(f"results written to {path}")


def _bench_url(arguments: argparse.Namespace) -> int:
    from labkit.load import LOOPBACK, Fixed, Schedule, resolve_target, run_load  # noqa: PLC0415
    from labkit.load.engine import progress_lines  # noqa: PLC0415
    from labkit.params import load_lab  # noqa: PLC0415

    lab = load_lab(*arguments.params) if arguments.params else None
    allow_list = lab.allow_list if lab is not None else LOOPBACK
    target = resolve_target(arguments.url, allow_list)  # refused here, before any request
    if lab is not None:
        lab.require_allowed(target.address)  # a sandbox address only while the sandbox is up
    result = run_load(
        target,
        Fixed(target.host_header, target.path),
        Schedule.constant(arguments.rate, arguments.duration, arguments.warmup),
        processes=arguments.processes,
        connections=arguments.connections,
        read_timeout_s=arguments.timeout,
        progress=progress_lines(partial(print, file=sys.stderr, flush=True)),
    )
    print(result.summary())
    if arguments.json:
        _write_json(arguments.json, [result.to_dict()], lab.name if lab else "adhoc")
    return 0 if result.recorder.responses else 1  # not one answer: the target is down


def _bench_scenario(arguments: argparse.Namespace) -> int:
    from labkit.load.scenarios import SCENARIOS, run_scenario  # noqa: PLC0415
    from labkit.load.store import save  # noqa: PLC0415
    from labkit.params import load_lab  # noqa: PLC0415

    if arguments.scenario not in SCENARIOS:
        raise ConfigError(
            f"unknown scenario {shown(arguments.scenario)}; choose one of {', '.join(SCENARIOS)}"
        )
    lab = load_lab(*arguments.params)
    rates = [arguments.rate] if arguments.rate else None
    outcome = run_scenario(
        lab,
        arguments.scenario,
        rates=rates,
        duration_s=arguments.duration,
        warmup_s=arguments.warmup,
        processes=arguments.processes,
        connections=arguments.connections,
        progress=partial(print, file=sys.stderr, flush=True),  # stdout keeps the results
    )
    for step in outcome.steps:
        print(step.summary())
    print(outcome.verdict_text())
    print(f"saved for the phase-6 checks: {save(lab, arguments.scenario, outcome.to_dicts())}")
    if arguments.json:
        _write_json(arguments.json, outcome.to_dicts(), lab.name)
    return 0


def _bench(arguments: argparse.Namespace) -> int:
    if arguments.scenario:
        if arguments.url:
            raise ConfigError("give either a URL or --scenario, not both")
        if not arguments.params:
            raise ConfigError("--scenario needs --params FILE (the lab to run it against)")
        return _bench_scenario(arguments)
    if not arguments.url:
        raise ConfigError(
            "give a URL (labkit bench http://127.0.0.1:8080/ --rate 1000 ...) "
            "or --params FILE --scenario NAME"
        )
    if not arguments.rate:
        raise ConfigError("--rate R is required with a URL (requests per second, like wrk2 -R)")
    if arguments.connections < arguments.processes:
        raise ConfigError(
            f"--connections {arguments.connections} for --processes {arguments.processes}: "
            "each process needs at least one connection"
        )
    if arguments.rate * arguments.duration < 1:
        raise ConfigError(
            f"--rate {arguments.rate:g} for --duration {arguments.duration:g}s plans no "
            "request at all; raise one of them"
        )
    return _bench_url(arguments)


def _url(value: str) -> str:
    """The URL argument: refused at once when empty, too long, with NUL or with credentials
    (the error shows it masked); ``resolve_target`` checks the rest, before any I/O."""
    from labkit.load.target import has_credentials, masked_url  # noqa: PLC0415

    quoted = repr(masked_url(value))
    if not value or "\0" in value or len(value) > MAX_TEXT:
        raise argparse.ArgumentTypeError(
            f"{quoted} is not a URL (empty, a NUL character, or over {MAX_TEXT:,} characters)"
        )
    if has_credentials(value):
        raise argparse.ArgumentTypeError(
            f"{quoted}: a URL with credentials (user:password@) is refused, since labkit prints "
            "and stores its target; the load engine sends no authentication"
        )
    return value


def register(subparsers: Any) -> None:
    """Add ``bench`` to the ``labkit`` command line (bounds of its numbers: README)."""
    from labkit.load.engine import MAX_CONNECTIONS, MAX_TIMEOUT_S, max_processes  # noqa: PLC0415
    from labkit.load.schedule import MAX_RATE, MAX_SECONDS  # noqa: PLC0415

    bench = subparsers.add_parser(
        "bench",
        help="open-loop load on a URL or a lab scenario (latency from the intended send time)",
    )
    bench.add_argument("url", nargs="?", type=_url, help="http:// URL inside the allow-list")
    bench.add_argument(
        "--rate",
        type=number(0, MAX_RATE, "requests per second"),
        metavar="R",
        help=f"requests per second (total), at most {MAX_RATE:,.0f}",
    )
    bench.add_argument(
        "--duration",
        type=number(0, MAX_SECONDS, "seconds"),
        default=10.0,
        metavar="D",
        help=f"seconds, at most {MAX_SECONDS:,.0f}",
    )
    bench.add_argument(
        "--warmup",
        type=number(0, MAX_SECONDS, "seconds", zero=True),
        default=0.0,
        metavar="W",
        help="unmeasured seconds",
    )
    bench.add_argument(
        "--connections",
        type=count(1, MAX_CONNECTIONS, "connections", "each is an open file of a worker"),
        default=64,
        metavar="C",
    )
    bench.add_argument(
        "--processes",
        type=count(1, max_processes(), "processes", "4 per CPU core of this machine"),
        default=1,
        metavar="P",
    )
    bench.add_argument(
        "--timeout",
        type=number(0, MAX_TIMEOUT_S, "seconds"),
        default=10.0,
        metavar="S",
        help="read timeout",
    )
    bench.add_argument(
        "--params",
        action="append",
        type=path,
        metavar="FILE",
        help="lab params (allow-list, scenarios)",
    )
    bench.add_argument(
        "--scenario",
        type=text("scenario name"),
        metavar="S",
        help="create, redirect-hit, redirect-miss, mixed",
    )
    bench.add_argument(
        "--json", type=path, metavar="FILE", help="write the result in the results.json schema"
    )
    bench.set_defaults(handler=_bench)
