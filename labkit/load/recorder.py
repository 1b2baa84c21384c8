"""Histograms and counters of one run: per operation, per second, losslessly mergeable.

Latencies are integer microseconds in HdrHistograms (1 µs .. 60 s, 3 significant
digits, the range and precision wrk2 uses). Three per operation:

* ``corrected``: completion minus the *intended* send time (no coordinated omission);
* ``uncorrected``: completion minus the actual write (what a closed-loop tool reports);
* ``lag``: how late the scheduler dispatched the request (the generator's own delay).

Per-second histograms (2 digits) of corrected latency, keyed by completion second,
make the time series. Everything travels between processes as ``to_wire()``
dicts (base64 histograms + counts) and is added up with ``merge``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

__all__ = [
    "ERROR_CATEGORIES",
    "HIGHEST_US",
    "PERCENTILES",
    "OperationStats",
    "Recorder",
    "latency_histogram",
    "percentiles_ms",
]

HIGHEST_US = 60_000_000
PERCENTILES: dict[str, float] = {
    "p50": 50.0,
    "p90": 90.0,
    "p95": 95.0,
    "p99": 99.0,
    "p99_9": 99.9,
}
# Failures without an HTTP status; 4xx and 5xx are counted from status codes.
ERROR_CATEGORIES = (
    "connect_refused",
    "connect_timeout",
    "connect_error",
    "read_timeout",
    "reset",
    "closed",
    "protocol",
    "not_sent",
)


def latency_histogram(digits: int = 3) -> HdrHistogram:
    """An empty histogram of microseconds, 1 µs .. 60 s."""
    return HdrHistogram(1, HIGHEST_US, digits)


def percentiles_ms(histogram: HdrHistogram) -> dict[str, float]:
    """p50 p90 p95 p99 p99_9 max mean in milliseconds (zeros when empty)."""
    if histogram.get_total_count() == 0:
        return {**dict.fromkeys(PERCENTILES, 0.0), "max": 0.0, "mean": 0.0}
    values = histogram.get_percentile_to_value_dict(list(PERCENTILES.values()))
    result = {name: values[level] / 1000 for name, level in PERCENTILES.items()}
    result["max"] = histogram.get_max_value() / 1000
    result["mean"] = round(histogram.get_mean_value() / 1000, 3)
    return result


def _clamp(value_us: int) -> int:
    # HdrHistogram silently drops out-of-range values; a latency is at least 1 µs and at most
    # the range top (anything longer was a timeout anyway).
    return 1 if value_us < 1 else min(value_us, HIGHEST_US)


@dataclass
class OperationStats:
    """Histograms and counts of one operation (create, redirect ...)."""

    corrected: HdrHistogram = field(default_factory=latency_histogram)
    uncorrected: HdrHistogram = field(default_factory=latency_histogram)
    lag: HdrHistogram = field(default_factory=latency_histogram)
    status_codes: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def responses(self) -> int:
        """Requests that got an HTTP response (any status)."""
        return sum(self.status_codes.values())

    @property
    def failures(self) -> int:
        """Requests without a response plus 4xx/5xx responses."""
        http = sum(count for status, count in self.status_codes.items() if status >= 400)
        return sum(self.errors.values()) + http


@dataclass
class _Second:
    histogram: HdrHistogram = field(default_factory=lambda: latency_histogram(2))
    errors: int = 0


class Recorder:
    """Collects one worker's measurements; ``merge`` adds another worker's wire form."""

    def __init__(self) -> None:
        self.operations: dict[str, OperationStats] = {}
        self.seconds: dict[int, _Second] = {}

    def _operation(self, name: str) -> OperationStats:
        stats = self.operations.get(name)
        if stats is None:
            stats = self.operations[name] = OperationStats()
        return stats

    def _second(self, second: int) -> _Second:
        bucket = self.seconds.get(second)
        if bucket is None:
            bucket = self.seconds[second] = _Second()
        return bucket

    def response(
        self, operation: str, status: int, corrected_us: int, uncorrected_us: int,
        lag_us: int, second: int,
    ) -> None:  # fmt: skip
        """Record one HTTP response (the hot path: keep it lean)."""
        stats = self._operation(operation)
        corrected = _clamp(corrected_us)
        stats.corrected.record_value(corrected)
        stats.uncorrected.record_value(_clamp(uncorrected_us))
        stats.lag.record_value(_clamp(lag_us))
        stats.status_codes[status] += 1
        bucket = self._second(second)
        bucket.histogram.record_value(corrected)
        if status >= 400:
            bucket.errors += 1

    def error(self, operation: str, category: str, second: int) -> None:
        """Record a request that got no response, by category."""
        self._operation(operation).errors[category] += 1
        self._second(second).errors += 1

    def to_wire(self) -> dict[str, Any]:
        """A picklable, JSON-ready form (histograms base64-encoded)."""
        return {
            "operations": {
                name: {
                    "corrected": stats.corrected.encode().decode(),
                    "uncorrected": stats.uncorrected.encode().decode(),
                    "lag": stats.lag.encode().decode(),
                    "status_codes": {str(k): v for k, v in stats.status_codes.items()},
                    "errors": dict(stats.errors),
                }
                for name, stats in self.operations.items()
            },
            "seconds": {
                str(second): {"histogram": bucket.histogram.encode().decode(), "errors": bucket.errors}
                for second, bucket in self.seconds.items()
            },
        }

    def merge(self, wire: dict[str, Any]) -> None:
        """Add another recorder's ``to_wire()`` form to this one, losslessly."""
        for name, data in wire["operations"].items():
            stats = self._operation(name)
            for attribute in ("corrected", "uncorrected", "lag"):
                if data[attribute]:
                    getattr(stats, attribute).decode_and_add(data[attribute])
            stats.status_codes.update({int(k): v for k, v in data["status_codes"].items()})
            stats.errors.update(data["errors"])
        for second, data in wire["seconds"].items():
            bucket = self._second(int(second))
            bucket.histogram.decode_and_add(data["histogram"])
            bucket.errors += data["errors"]

    def total(self, attribute: str = "corrected") -> HdrHistogram:
        """One histogram over every operation (``corrected``, ``uncorrected`` or ``lag``)."""
        merged = latency_histogram()
        for stats in self.operations.values():
            merged.add(getattr(stats, attribute))
        return merged

    def status_codes(self) -> Counter[int]:
        """Status-code counts over every operation."""
        counts: Counter[int] = Counter()
        for stats in self.operations.values():
            counts.update(stats.status_codes)
        return counts

    def errors(self) -> Counter[str]:
        """Error counts over every operation (``http_4xx`` and ``http_5xx`` included)."""
        counts: Counter[str] = Counter()
        for stats in self.operations.values():
            counts.update(stats.errors)
            for status, count in stats.status_codes.items():
                if status >= 500:
                    counts["http_5xx"] += count
                elif status >= 400:
                    counts["http_4xx"] += count
        return counts

    @property
    def responses(self) -> int:
        """Responses over every operation."""
        return sum(stats.responses for stats in self.operations.values())

    @property
    def requests(self) -> int:
        """Measured requests: responses plus failures without a response."""
        return self.responses + sum(
            sum(stats.errors.values()) for stats in self.operations.values()
        )
