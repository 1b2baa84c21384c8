"""The open-loop plan: intended times, warm-up, and worker interleaving."""

from __future__ import annotations

import pytest

from labkit.errors import ConfigError
from labkit.load.schedule import Schedule


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


@pytest.mark.parametrize(("rate", "duration"), [(0, 1), (10, 0), (-5, 1)])
def test_non_positive_rate_or_duration_is_refused(rate: float, duration: float) -> None:
    with pytest.raises(ConfigError, match="not positive"):
        Schedule.constant(rate, duration)
