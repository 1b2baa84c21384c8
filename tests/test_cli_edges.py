"""Every argument of every ``labkit`` command, given hostile values: exit 2 with argparse's
message naming the argument (and, for numbers, the bounds), no traceback, nothing run.

The parser is walked, so an argument added later without an entry in ``KINDS`` fails
``test_every_argument_has_a_kind``. Handlers are replaced by one that fails the test: a
hostile value must be refused while parsing, before any handler can act on it.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

import labkit.cli
from labkit.cli import main

_LONG = "9" * 5000
_NUMBER = ["1e200", "-1", "0", "nan", "inf", "-inf", "abc", "", _LONG, "1e12", "\0", "1\x000"]
_SECONDS_FROM_0 = [value for value in _NUMBER if value != "0"]
_COUNT = [*_NUMBER, "99999999999", "1.5", "²", "１２"]
_TEXT = ["", "\0", "a\0b", "x" * 5000]
_URL = [*_TEXT, "http://user:secret@127.0.0.1:9/", "user:secret@127.0.0.1:9"]
_CHOICE = ["", "\0", "x" * 5000, "nope"]

# (command words, argument) -> hostile values.
_PARAMS = {"--params": _TEXT}
KINDS: dict[tuple[tuple[str, ...], str], list[str]] = {
    (("params", "validate"), "files"): _TEXT,
    (("check",), "--params"): _TEXT,
    (("check",), "--phase"): _CHOICE,
    (("check",), "--json"): _TEXT,
    (("run",), "--params"): _TEXT,
    # An empty selection reaches the runner, which refuses it listing the notebooks (test_run).
    (("run",), "--notebooks"): ["\0", "a\0b", "0" * 5000],
    (("run",), "--out"): _TEXT,
    (("run",), "--cell-timeout"): [*_NUMBER, "86401", "1.5"],
    (("drill",), "--params"): _TEXT,
    (("drill",), "--scenario"): _CHOICE,
    (("drill",), "--json"): _TEXT,
    (("drill",), "--confirm"): _TEXT,
    **{(("sandbox", action), "--params"): _TEXT for action in ("up", "down", "status")},
    (("bench",), "url"): _URL,
    (("bench",), "--rate"): [*_NUMBER, "1000001"],
    (("bench",), "--duration"): [*_NUMBER, "86401"],
    (("bench",), "--warmup"): [*_SECONDS_FROM_0, "86401"],
    (("bench",), "--connections"): [*_COUNT, "10001"],
    (("bench",), "--processes"): [*_COUNT, "100000"],
    (("bench",), "--timeout"): [*_NUMBER, "601"],
    (("bench",), "--params"): _TEXT,
    (("bench",), "--scenario"): _TEXT,
    (("bench",), "--json"): _TEXT,
    **{((verb,), "--params"): _TEXT for verb in ("plan", "apply")},
    **{((verb,), "--phase"): _CHOICE for verb in ("plan", "apply")},
    **{((verb,), "--json"): _TEXT for verb in ("plan", "apply")},
    (("manifests", "validate"), "--params"): _TEXT,
    (("manifests", "validate"), "--root"): _TEXT,
    (("lab",), "--params"): _TEXT,
    (("lab",), "--port"): [*_COUNT, "65536"],
    (("lab",), "--root"): _TEXT,
    (("doctor",), "--params"): _TEXT,
    (("doctor",), "--out"): _TEXT,
    (("runbook",), "name"): _CHOICE,
    (("runbook",), "--params"): _TEXT,
    (("runbook",), "--replicas"): [*_COUNT, "65"],
    (("runbook",), "--json"): _TEXT,
}


def _leaves(
    parser: argparse.ArgumentParser, words: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every command's own parser (one with a handler), with the words that reach it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _leaves(sub, (*words, name))
    if "handler" in parser._defaults:
        yield words, parser


def _arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The arguments that take a value (not flags, help or sub-commands)."""
    return [
        action
        for action in parser._actions
        if action.nargs != 0 and not isinstance(action, argparse._SubParsersAction)
    ]


def _name(action: argparse.Action) -> str:
    return action.option_strings[0] if action.option_strings else action.dest


def _benign(action: argparse.Action) -> str:
    """A value every required argument accepts (the handler never runs anyway)."""
    if action.choices:
        return str(next(iter(action.choices)))
    return "http://127.0.0.1:9/" if action.dest == "url" else "params/local.yaml"


def _handler_reached(arguments: argparse.Namespace) -> int:
    raise AssertionError(f"a hostile value reached the handler: {arguments}")


@pytest.fixture
def guarded(monkeypatch: pytest.MonkeyPatch) -> None:
    """``labkit.cli.main`` with every handler replaced by one that fails the test."""
    real = labkit.cli._parser

    def parser() -> argparse.ArgumentParser:
        built = real()
        for _, leaf in _leaves(built):
            leaf.set_defaults(handler=_handler_reached)
        return built

    monkeypatch.setattr(labkit.cli, "_parser", parser)


def test_every_argument_has_a_kind() -> None:
    walked = {
        (words, _name(action))
        for words, leaf in _leaves(labkit.cli._parser())
        for action in _arguments(leaf)
    }
    assert walked == set(KINDS)


def _cases() -> Iterator[object]:
    for words, leaf in _leaves(labkit.cli._parser()):
        for action in _arguments(leaf):
            for value in KINDS[(words, _name(action))]:
                argv = list(words)
                for other in _arguments(leaf):
                    if other is action:
                        argv += [f"{_name(action)}={value}"] if other.option_strings else [value]
                    elif other.required or (not other.option_strings and other.nargs is None):
                        argv += [*other.option_strings[:1], _benign(other)]
                label = f"{' '.join(words)} {_name(action)}={value[:12]!r}"
                yield pytest.param(argv, _name(action), id=label)


@pytest.mark.parametrize(("argv", "name"), list(_cases()))
def test_a_hostile_value_is_a_usage_error_naming_the_argument(
    argv: list[str], name: str, guarded: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    printed = capsys.readouterr()
    assert exited.value.code == 2
    (last,) = printed.err.strip().splitlines()[-1:]
    assert ": error: argument " in last, last
    assert "Traceback" not in printed.err + printed.out
    assert "secret" not in printed.err + printed.out  # a URL's password is never echoed
    assert len(last) < 600  # a long value is quoted cut, not whole


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "--rate=1e12"], "--rate: must be above 0 and at most 1,000,000 requests"),
        (["bench", "--duration=1e200"], "--duration: must be above 0 and at most 86,400 seconds"),
        (["bench", "--warmup=-1"], "--warmup: must be from 0 and at most 86,400 seconds"),
        (["bench", "--timeout=nan"], "--timeout: must be above 0 and at most 600 seconds"),
        (["bench", "--connections=100000"], "between 1 and 10,000 connections (got '100000')"),
        (["bench", "--processes=0"], "--processes: must be between 1 and"),
        (["lab", "--port=99999"], "--port: must be between 1 and 65535"),
        (["runbook", "scale", "--params=x", "--replicas=10000"], "between 1 and 64 replicas"),
        (["run", "--params=x", "--cell-timeout=1e200"], "at most 86,400 seconds"),
    ],
)
def test_a_number_out_of_bounds_says_the_bounds_and_the_value(
    argv: list[str], message: str, guarded: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert f"labkit {argv[0]}" in err and message in err, err
