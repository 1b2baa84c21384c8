"""The open-loop plan: request *i* is due at a fixed time, whatever the server does.

A schedule is a list of constant-rate segments (one segment: a constant rate;
several: a ramp of steps). The first ``warmup_s`` seconds are sent but not
measured. Worker *k* of *N* owns the indices ``k, k+N, k+2N ...`` of the one
global plan, so N processes together keep exactly the planned rate.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from labkit.errors import ConfigError

__all__ = ["MAX_RATE", "MAX_SECONDS", "Schedule", "Segment", "Span"]

_NS = 1_000_000_000
# Bounds of any plan. One engine process sends about 100,000 requests per CPU-second at
# best (README, "Performance of the load engine"): a million a second is beyond what
# this machine could ever send, and above it the scheduler's loop would never catch up.
MAX_RATE = 1_000_000.0
MAX_SECONDS = 86_400.0  # a day: a load test longer than that is a mistake, not a plan


@dataclass(frozen=True)
class Segment:
    """A stretch of the plan at a constant rate."""

    rate: float
    duration_s: float

    @property
    def requests(self) -> int:
        """How many requests this segment plans."""
        return round(self.rate * self.duration_s)


@dataclass(frozen=True)
class Schedule:
    """Intended send times of every request of a run, warm-up first."""

    segments: tuple[Segment, ...]
    warmup_s: float = 0.0

    @classmethod
    def constant(cls, rate: float, duration_s: float, warmup_s: float = 0.0) -> Schedule:
        """``rate`` requests/s for ``warmup_s`` (not measured) then ``duration_s`` (measured)."""
        segments = [Segment(rate, duration_s)]
        if warmup_s > 0:
            segments.insert(0, Segment(rate, warmup_s))
        return cls(tuple(segments), warmup_s).validated()

    @classmethod
    def steps(cls, rates: list[float], step_s: float, warmup_s: float = 0.0) -> Schedule:
        """A ramp of constant steps; the warm-up runs at the first step's rate."""
        if not rates:
            raise ConfigError("a ramp needs at least one rate step")
        segments = [Segment(rate, step_s) for rate in rates]
        if warmup_s > 0:
            segments.insert(0, Segment(rates[0], warmup_s))
        return cls(tuple(segments), warmup_s).validated()

    def validated(self) -> Schedule:
        """Self, or a ConfigError naming the bad rate, duration or warm-up and the bounds."""
        for segment in self.segments:
            if not 0 < segment.rate <= MAX_RATE:  # NaN fails both comparisons
                raise ConfigError(
                    f"load schedule: rate {segment.rate:g}/s is outside the bounds; give a "
                    f"rate above 0 and at most {MAX_RATE:,.0f} requests per second"
                )
            if not 0 < segment.duration_s <= MAX_SECONDS:
                raise ConfigError(
                    f"load schedule: a step of {segment.duration_s:g}s is outside the bounds; "
                    f"give a duration above 0 and at most {MAX_SECONDS:,.0f} seconds"
                )
        if not (math.isfinite(self.warmup_s) and 0 <= self.warmup_s <= MAX_SECONDS):
            raise ConfigError(
                f"load schedule: a warm-up of {self.warmup_s:g}s is outside the bounds; "
                f"give 0 to {MAX_SECONDS:,.0f} seconds"
            )
        if self.duration_s > 2 * MAX_SECONDS:
            raise ConfigError(
                f"load schedule: {len(self.segments)} steps last {self.duration_s:,.0f}s in all; "
                f"a plan lasts at most {2 * MAX_SECONDS:,.0f} seconds (warm-up included)"
            )
        return self

    @property
    def total_requests(self) -> int:
        """Every planned request, warm-up included."""
        return sum(segment.requests for segment in self.segments)

    @property
    def warmup_requests(self) -> int:
        """Planned requests before measurement starts (indices below this are not recorded)."""
        remaining = self.warmup_s
        count = 0
        for segment in self.segments:
            if remaining <= 0:
                break
            span = min(remaining, segment.duration_s)
            count += round(segment.rate * span)
            remaining -= span
        return count

    @property
    def duration_s(self) -> float:
        """Length of the whole plan, warm-up included."""
        return sum(segment.duration_s for segment in self.segments)

    @property
    def measured_s(self) -> float:
        """Length of the measured part."""
        return self.duration_s - self.warmup_s

    @property
    def measured_rate(self) -> float:
        """Mean planned rate of the measured part."""
        measured = self.total_requests - self.warmup_requests
        return measured / self.measured_s if self.measured_s > 0 else 0.0

    def spans(self, worker: int = 0, workers: int = 1) -> list[Span]:
        """Per segment, the indices ``worker`` of ``workers`` owns and how to time them.

        Request ``index`` of a span is due at ``start_ns + int((index - first) * interval_ns)``
        from t0, for ``index`` in ``range(begin, end, workers)``; empty spans are left out.
        """
        spans = []
        first = 0
        start_ns = 0
        for segment in self.segments:
            count = segment.requests
            # The first index of this segment that belongs to this worker.
            index = first + (worker - first) % workers
            if index < first + count:
                spans.append(Span(index, first + count, first, start_ns, _NS / segment.rate))
            first += count
            start_ns += int(segment.duration_s * _NS)
        return spans

    def offsets_ns(self, worker: int = 0, workers: int = 1) -> Iterator[tuple[int, int]]:
        """``(index, offset from t0 in ns)`` of every request owned by ``worker`` of ``workers``."""
        for span in self.spans(worker, workers):
            for index in range(span.begin, span.end, workers):
                yield index, span.start_ns + int((index - span.first) * span.interval_ns)


class Span(NamedTuple):
    """One segment's share of one worker (see ``Schedule.spans``)."""

    begin: int  # the worker's first index in the segment
    end: int  # one past the segment's last index
    first: int  # the segment's first index (any worker)
    start_ns: int  # the segment's start, from t0
    interval_ns: float  # between consecutive indices of the global plan
