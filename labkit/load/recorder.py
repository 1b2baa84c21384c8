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

import numpy as np
import numpy.typing as npt
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


def _index(value: int, half: int) -> int:
    """HdrHistogram's counts index of ``value`` (unit 1) for a sub-bucket half-count magnitude.

    The same arithmetic as ``HdrHistogram._counts_index_for``, in a few integer operations:
    the package's own ``record_value`` costs ~1.5 µs, too much four times per request.
    """
    shift = value.bit_length() - half - 1
    if shift <= 0:
        return value
    return ((shift + 1) << half) + (value >> shift) - (1 << half)


class _Counts:
    """Counts with HdrHistogram's bucket layout; ``drain`` moves them into one.

    ``counts`` (a plain list) takes single values; ``bulk`` (an array, made on first
    use) takes whole batches of bucket counts at once.
    """

    __slots__ = ("bulk", "counts", "digits", "half")

    def __init__(self, digits: int) -> None:
        template = latency_histogram(digits)
        self.digits = digits
        self.half: int = template.sub_bucket_half_count_magnitude
        # Recorder.response inlines the index arithmetic for these two layouts.
        assert self.half == {2: 7, 3: 10}[digits]
        self.counts = [0] * template.counts_len
        self.bulk: npt.NDArray[np.int64] | None = None

    def add(self, indices: npt.NDArray[np.int64]) -> None:
        """Count a batch of bucket indices (from ``_indices``)."""
        counted = np.bincount(indices)
        if self.bulk is None:
            self.bulk = np.zeros(len(self.counts), dtype=np.int64)
        self.bulk[: len(counted)] += counted

    def drain(self, histogram: HdrHistogram) -> None:
        """Add every count to ``histogram`` (same layout) as ``record_value`` would, then reset."""
        total = self.bulk
        self.bulk = None
        if any(self.counts):
            singles = np.array(self.counts, dtype=np.int64)
            total = singles if total is None else total + singles
            self.counts = [0] * len(self.counts)
        if total is None:
            return
        nonzero = np.flatnonzero(total)
        if not len(nonzero):
            return
        # Straight into the histogram's counts array: record_value per bucket would cost
        # ~1.5 µs each, thousands of times per histogram at the end of every run.
        counts = np.ctypeslib.as_array(histogram.counts)
        counts += total.astype(counts.dtype)
        # What record_value leaves behind: the total, and the lowest and highest values
        # recorded (each bucket's lowest equivalent value, as the per-bucket loop recorded).
        histogram.total_count += int(total.sum())
        lowest = histogram.get_value_from_index(int(nonzero[0]))
        highest = histogram.get_value_from_index(int(nonzero[-1]))
        histogram.min_value = min(histogram.min_value, lowest)
        histogram.max_value = max(histogram.max_value, highest)


_Ints = npt.NDArray[np.int64]


def _indices(values_us: _Ints, half: int) -> _Ints:
    """``_index`` of every value of an array, after the same clamping as ``_clamp``."""
    values = np.minimum(np.maximum(values_us, 1), HIGHEST_US)
    return _bucketed(values, np.frexp(values)[1], half)


def _bucketed(values: _Ints, bits: npt.NDArray[np.int32], half: int) -> _Ints:
    """``_index`` of clamped ``values`` whose bit lengths are ``bits``."""
    # frexp's exponent is the bit length, exactly: the values are far below 2**53.
    shift = np.maximum(bits - (half + 1), 0).astype(np.int64)
    # shift 0 (small values) gives the value itself, as ``_index`` does.
    indices: _Ints = (shift << half) + (values >> shift)
    return indices


class _FastOperation:
    __slots__ = ("corrected", "errors", "lag", "status_codes", "uncorrected")

    def __init__(self) -> None:
        self.corrected = _Counts(3)
        self.uncorrected = _Counts(3)
        self.lag = _Counts(3)
        self.status_codes: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()


class Recorder:
    """Collects one worker's measurements; ``merge`` adds another worker's wire form.

    The hot path (``response``, ``error``) counts into plain lists; every reader
    (``operations``, ``seconds``, ``to_wire`` ...) first moves those counts into
    the HdrHistograms, so readers always see everything recorded.
    """

    def __init__(self) -> None:
        self._operations: dict[str, OperationStats] = {}
        self._seconds: dict[int, _Second] = {}
        self._fast: dict[str, _FastOperation] = {}
        self._fast_seconds: dict[int, list[Any]] = {}  # second -> [_Counts, errors]

    def _fast_operation(self, name: str) -> _FastOperation:
        stats = self._fast[name] = _FastOperation()
        return stats

    def _fast_second(self, second: int) -> list[Any]:
        bucket = self._fast_seconds[second] = [_Counts(2), 0]
        return bucket

    def response(
        self,
        operation: str,
        status: int,
        corrected_us: int,
        uncorrected_us: int,
        lag_us: int,
        second: int,
    ) -> None:
        """Record one HTTP response (the hot path: ``_index`` inlined, ~4x cheaper)."""
        stats = self._fast.get(operation) or self._fast_operation(operation)
        value = corrected_us if 0 < corrected_us < HIGHEST_US else _clamp(corrected_us)
        shift = value.bit_length() - 11
        stats.corrected.counts[
            value if shift <= 0 else ((shift + 1) << 10) + (value >> shift) - 1024
        ] += 1
        bucket = self._fast_seconds.get(second) or self._fast_second(second)
        shift = value.bit_length() - 8
        bucket[0].counts[value if shift <= 0 else ((shift + 1) << 7) + (value >> shift) - 128] += 1
        value = uncorrected_us if 0 < uncorrected_us < HIGHEST_US else _clamp(uncorrected_us)
        shift = value.bit_length() - 11
        stats.uncorrected.counts[
            value if shift <= 0 else ((shift + 1) << 10) + (value >> shift) - 1024
        ] += 1
        value = lag_us if 0 < lag_us < HIGHEST_US else _clamp(lag_us)
        shift = value.bit_length() - 11
        stats.lag.counts[
            value if shift <= 0 else ((shift + 1) << 10) + (value >> shift) - 1024
        ] += 1
        stats.status_codes[status] += 1
        if status >= 400:
            bucket[1] += 1

    def responses_batch(
        self,
        operation: str,
        statuses: _Ints,
        corrected_us: _Ints,
        uncorrected_us: _Ints,
        lag_us: _Ints,
        seconds: _Ints,
    ) -> None:
        """Record many responses of one operation at once: the same as ``response`` per row.

        The worker's hot path only keeps raw times; this turns a batch of them into the
        same bucket counts in a few vectorised passes.
        """
        if not len(statuses):
            return
        stats = self._fast.get(operation) or self._fast_operation(operation)
        # The three 3-digit histograms in one pass of clamping and bit lengths.
        values = np.minimum(
            np.maximum(np.stack((corrected_us, uncorrected_us, lag_us)), 1), HIGHEST_US
        )
        bits = np.frexp(values)[1]
        indices = _bucketed(values, bits, 10)
        stats.corrected.add(indices[0])
        stats.uncorrected.add(indices[1])
        stats.lag.add(indices[2])
        counted = np.bincount(statuses)
        for status in np.flatnonzero(counted).tolist():
            stats.status_codes[status] += int(counted[status])
        per_second = _bucketed(values[0], bits[0], 7)
        failed = statuses >= 400
        first, last = int(seconds.min()), int(seconds.max())
        if first == last:  # the usual batch: all in one second
            bucket = self._fast_seconds.get(first) or self._fast_second(first)
            bucket[0].add(per_second)
            bucket[1] += int(np.count_nonzero(failed))
            return
        for second in np.unique(seconds).tolist():
            rows = seconds == second
            bucket = self._fast_seconds.get(second) or self._fast_second(second)
            bucket[0].add(per_second[rows])
            bucket[1] += int(np.count_nonzero(failed[rows]))

    def error(self, operation: str, category: str, lag_us: int, second: int) -> None:
        """Record a request that got no response, by category (its lag still counts)."""
        stats = self._fast.get(operation) or self._fast_operation(operation)
        stats.errors[category] += 1
        stats.lag.counts[_index(_clamp(lag_us), 10)] += 1
        bucket = self._fast_seconds.get(second) or self._fast_second(second)
        bucket[1] += 1

    def flush(self) -> None:
        """Move the hot path's counts into the HdrHistograms."""
        for name, fast in self._fast.items():
            stats = self._operation(name)
            fast.corrected.drain(stats.corrected)
            fast.uncorrected.drain(stats.uncorrected)
            fast.lag.drain(stats.lag)
            stats.status_codes.update(fast.status_codes)
            stats.errors.update(fast.errors)
        self._fast.clear()
        for second, (counts, errors) in self._fast_seconds.items():
            bucket = self._second(second)
            counts.drain(bucket.histogram)
            bucket.errors += errors
        self._fast_seconds.clear()

    @property
    def operations(self) -> dict[str, OperationStats]:
        """Per-operation histograms and counts."""
        self.flush()
        return self._operations

    @property
    def seconds(self) -> dict[int, _Second]:
        """Per-completion-second histogram (2 digits) and error count."""
        self.flush()
        return self._seconds

    def _operation(self, name: str) -> OperationStats:
        stats = self._operations.get(name)
        if stats is None:
            stats = self._operations[name] = OperationStats()
        return stats

    def _second(self, second: int) -> _Second:
        bucket = self._seconds.get(second)
        if bucket is None:
            bucket = self._seconds[second] = _Second()
        return bucket

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
                str(second): {
                    "histogram": bucket.histogram.encode().decode(),
                    "errors": bucket.errors,
                }
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
