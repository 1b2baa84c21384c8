"""Argument types of the command line: bounded numbers and sane strings, as properties."""

from __future__ import annotations

import argparse
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labkit.arguments import MAX_TEXT, count, number, path

RATE = number(0, 1_000_000, "requests per second")
WARMUP = number(0, 86_400, "seconds", zero=True)
CELLS = number(0, 86_400, "seconds", whole=True)
CONNECTIONS = count(1, 10_000, "connections", "each is an open file")


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.text(max_size=40),
    st.sampled_from(["1e200", "-0", "0", "1e12", "nan", "-inf", "", "\0", "1\x00", "1_000"]),
)


@given(_numbers)
def test_a_rate_is_accepted_exactly_within_its_bounds(text: str) -> None:
    value = _float_or_none(text)
    if value is not None and 0 < value <= 1_000_000:
        assert RATE(text) == value
        return
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        RATE(text)
    message = str(refused.value)
    assert "requests per second" in message
    if value is not None:  # a number outside: the bounds and the value are named
        assert "above 0 and at most 1,000,000" in message and "got" in message


@given(_numbers)
def test_a_warmup_may_be_zero_but_not_negative_or_beyond_a_day(text: str) -> None:
    value = _float_or_none(text)
    if value is not None and 0 <= value <= 86_400:
        assert WARMUP(text) == value
    else:
        with pytest.raises(argparse.ArgumentTypeError, match="seconds"):
            WARMUP(text)


@given(_numbers)
def test_a_count_is_a_whole_number_within_its_bounds(text: str) -> None:
    try:
        value: int | None = int(text.strip()) if text.strip().isascii() else None
    except ValueError:
        value = None
    if value is not None and 1 <= value <= 10_000:
        assert CONNECTIONS(text) == value
        return
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        CONNECTIONS(text)
    if value is not None:
        assert "between 1 and 10,000 connections" in str(refused.value)
        assert "each is an open file" in str(refused.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1.5", "whole number of seconds"),
        ("0", "above 0 and at most 86,400"),
        ("86401", "above 0 and at most 86,400"),
        ("inf", "above 0 and at most 86,400"),
    ],
)
def test_whole_seconds_refuse_fractions_and_say_the_bounds(text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        CELLS(text)
    assert CELLS("30") == 30.0 and math.isfinite(CELLS("86400"))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "an empty string is not a path"),
        ("a\0b", "has no NUL character"),
        ("x" * (MAX_TEXT + 1), "characters at most|at most 4,096 characters"),
    ],
)
def test_a_path_refuses_what_no_file_is_named(value: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        path(value)
    assert path("params/local.yaml") == "params/local.yaml"


def test_a_long_value_is_quoted_cut_in_the_error() -> None:
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        RATE("9" * 100_000)
    assert len(str(refused.value)) < 300 and "100,000 characters" in str(refused.value)
