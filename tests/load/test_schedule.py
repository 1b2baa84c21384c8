"""The open-loop plan: intended times, warm-up, and worker interleaving."""

from __future__ import annotations

import re

import pytest

from labkit.errors import ConfigError
from labkit.load.schedule import MAX_RATE, MAX_SECONDS, Schedule


def test_constant_rate_spaces_requests_evenly() -> None:
    schedule = Schedule.constant(rate=4, duration_s=1)
    assert list(schedule.offsets_ns()) == [
        (0, 0),
        (1, 250_000_000),
        (2, 500_000_000),
        (3, 750_000_000),
    ]


def test_warmup_comes_first_and_is_counted_apart() -> None:
    schedule = Schedule.constant(rate=100, duration_s=2, warmup_s=0.5)
    assert schedule.total_requests == 250
    assert schedule.warmup_requests == 50
    assert schedule.measured_s == 2
    assert schedule.measured_rate == 100


def test_steps_change_the_rate_at_the_boundaries() -> None:
    schedule = Schedule.steps([2, 4], step_s=1)
    offsets = [offset for _, offset in schedule.offsets_ns()]
    assert offsets == [0, 500_000_000, 1_000_000_000, 1_250_000_000, 1_500_000_000, 1_750_000_000]


@pytest.mark.parametrize("workers", [1, 2, 3, 7])
def test_workers_share_one_global_plan_exactly(workers: int) -> None:
    schedule = Schedule.steps([10, 33], step_s=1.5, warmup_s=0.2)
    everything = dict(schedule.offsets_ns())
    shares = [dict(schedule.offsets_ns(k, workers)) for k in range(workers)]
    merged: dict[int, int] = {}
    for share in shares:
        assert not merged.keys() & share.keys(), "two workers own the same request"
        merged.update(share)
    assert merged == everything
    assert len(everything) == schedule.total_requests


_NAN = float("nan")
_INF = float("inf")


@pytest.mark.parametrize(
    ("rate", "duration", "warmup", "message"),
    [
        (0, 1, 0, "rate 0/s is outside the bounds"),
        (-5, 1, 0, "rate -5/s"),
        (_NAN, 1, 0, "rate nan/s"),
        (1e12, 1, 0, "at most 1,000,000 requests per second"),
        (_INF, 1, 0, "rate inf/s"),
        (10, 0, 0, "a step of 0s"),
        (10, 1e200, 0, "at most 86,400 seconds"),
        (10, _NAN, 0, "a step of nans"),
        (10, 1, -1, "a warm-up of -1s"),
        (10, 1, _NAN, "a warm-up of nans"),
        (10, 1, 1e200, "a step of 1e+200s"),  # the warm-up is the first step
    ],
)
def test_a_rate_duration_or_warmup_outside_the_bounds_is_refused(
    rate: float, duration: float, warmup: float, message: str
) -> None:
    """The CLI refuses these first; the plan checks again whatever made it."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        Schedule.constant(rate, duration, warmup)


def test_a_ramp_is_bounded_in_all() -> None:
    with pytest.raises(ConfigError, match="a plan lasts at most 172,800 seconds"):
        Schedule.steps([10] * 3, step_s=86_400)
    with pytest.raises(ConfigError, match="at most 1,000,000 requests per second"):
        Schedule.steps([10, 2e6], step_s=1)


def test_the_largest_allowed_plan_is_counted_without_being_built() -> None:
    schedule = Schedule.constant(MAX_RATE, MAX_SECONDS)
    assert schedule.total_requests == 86_400_000_000
