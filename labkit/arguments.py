"""Argument types for the command line: numbers within bounds that say them, sane strings.

An argparse ``type`` raising ``ArgumentTypeError`` makes argparse print
``labkit <command>: error: argument --rate: ...`` and exit 2 before any handler runs,
so a value outside its bounds never reaches the package (which checks again anyway).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = ["MAX_TEXT", "count", "number", "path", "shown", "text"]

# Longer than any path, name or URL a user types: a longer one is a mistake.
MAX_TEXT = 4096


def shown(value: str) -> str:
    """``value`` as an error message quotes it: repr'd (NUL and control characters escaped),
    and cut when long."""
    if len(value) <= 80:
        return repr(value)
    return f"{value[:40]!r}... ({len(value):,} characters)"


def _plain(value: float) -> str:
    """A bound as people write it: 1,000,000 (not 1e+06), 0.5."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,}"


def number(
    low: float, high: float, unit: str, *, zero: bool = False, whole: bool = False
) -> Callable[[str], float]:
    """An argparse type: a finite number of ``unit`` above ``low`` (from 0 when ``zero``) and
    at most ``high``; ``whole`` refuses fractions. The error says the bounds and the value."""
    lowest = "from 0" if zero else f"above {_plain(low)}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{shown(text)} is not a number of {unit}") from None
        outside = value < 0 if zero else not value > low  # NaN is never above low
        if outside or not value <= high:  # inf and NaN are not at most high
            raise argparse.ArgumentTypeError(
                f"must be {lowest} and at most {_plain(high)} {unit} (got {shown(text)})"
            )
        if whole and not value.is_integer():
            raise argparse.ArgumentTypeError(
                f"must be a whole number of {unit} (got {shown(text)}); try {math.ceil(value)}"
            )
        return value

    return parse


def count(
    low: int, high: int, unit: str, why: str = "", *, separators: bool = True
) -> Callable[[str], int]:
    """An argparse type: a whole number of ``unit`` from ``low`` to ``high``; the error says
    both bounds, the value, and ``why`` (the reason for the upper bound) when given."""
    bounds = f"{low:,} and {high:,}" if separators else f"{low} and {high}"

    def parse(text: str) -> int:
        stripped = text.strip()
        digits = stripped.removeprefix("-").removeprefix("+").replace("_", "")
        try:
            if not (stripped.isascii() and digits.isdigit()):
                raise ValueError(text)
            # Far more digits than any bound has: out of bounds, without converting them.
            value = int(stripped) if len(digits) <= 30 else None
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{shown(text)} is not a whole number of {unit}"
            ) from None
        if value is None or not low <= value <= high:
            reason = f"; {why}" if why else ""
            raise argparse.ArgumentTypeError(
                f"must be between {bounds} {unit} (got {shown(text)}){reason}"
            )
        return value

    return parse


def text(what: str, longest: int = MAX_TEXT, *, empty: bool = False) -> Callable[[str], str]:
    """An argparse type: a string without NUL, at most ``longest`` characters (a name among
    ``choices`` gets a short limit: argparse quotes a refused choice whole), not empty unless
    ``empty`` (its handler then says what an empty value means)."""

    def parse(value: str) -> str:
        if not value and not empty:
            raise argparse.ArgumentTypeError(f"an empty string is not a {what}")
        if "\0" in value:
            raise argparse.ArgumentTypeError(f"{shown(value)}: a {what} has no NUL character")
        if len(value) > longest:
            raise argparse.ArgumentTypeError(
                f"{shown(value)} is longer than any {what} (at most {longest:,} characters)"
            )
        return value

    return parse


path = text("path")
