"""A traced run's per-request record: every measured request's outcome and times, and the writes.

Histograms answer "how slow"; a drill also asks "when": when did the first request
fail, when did the last, when did requests succeed again, which writes were
acknowledged. A traced worker keeps, per request, the operation, the status (0 for
no answer) or error category, and the intended and completion times; for the
operations it captures it also keeps the short code each 2xx answer names. Times
are nanoseconds from the run's t0 (the one monotonic clock every worker shares).
Only drills trace: memory grows with requests (about 40 bytes each).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from labkit.load.client import STATUS_SPAN
from labkit.load.recorder import ERROR_CATEGORIES, latency_histogram

__all__ = ["Trace", "short_code_of"]

_NS = 1_000_000_000
_Ints = npt.NDArray[np.int64]


def short_code_of(body: bytes) -> str:
    """The ``shortCode`` of a Shlink create answer ("" when the body names none)."""
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    code = data.get("shortCode") if isinstance(data, dict) else None
    return code if isinstance(code, str) else ""


def _empty() -> _Ints:
    return np.zeros(0, dtype=np.int64)


@dataclass
class Trace:
    """Every measured request of a run (all workers merged), times in ns from t0.

    ``status`` is the HTTP status, or 0 when there was no answer; then ``error`` is the
    index of its category in ``ERROR_CATEGORIES`` (-1 for an answered request).
    ``acknowledged`` maps a captured operation to ``(intended ns, short code)`` of
    every 2xx answer.
    """

    t0_ns: int
    operations: tuple[str, ...]
    operation: _Ints = field(default_factory=_empty)
    status: _Ints = field(default_factory=_empty)
    error: _Ints = field(default_factory=_empty)
    intended_ns: _Ints = field(default_factory=_empty)
    done_ns: _Ints = field(default_factory=_empty)
    acknowledged: dict[str, list[tuple[int, str]]] = field(default_factory=dict)

    @classmethod
    def merge(cls, t0_ns: int, operations: tuple[str, ...], parts: list[dict[str, Any]]) -> Trace:
        """One trace from the workers' wire parts (``rows``, ``errors``, ``bodies``)."""
        operation, status, error, intended, done = [], [], [], [], []
        acknowledged: dict[str, list[tuple[int, str]]] = {}
        for part in parts:
            rows: _Ints = part["rows"]
            if len(rows):
                code, answer = np.divmod(rows[:, 0], STATUS_SPAN)
                operation.append(code)
                status.append(answer)
                error.append(np.full(len(rows), -1, dtype=np.int64))
                intended.append(rows[:, 1] - t0_ns)
                done.append(rows[:, 2] - t0_ns)
            failures = part["errors"]
            if failures:
                table = np.array(failures, dtype=np.int64).reshape(-1, 4)
                operation.append(table[:, 0])
                status.append(np.zeros(len(table), dtype=np.int64))
                error.append(table[:, 1])
                intended.append(table[:, 2] - t0_ns)
                done.append(table[:, 3] - t0_ns)
            for key, sent, answer, body in part["bodies"]:
                name = operations[key // STATUS_SPAN]
                short_code = short_code_of(body) if 200 <= answer < 300 else ""
                if short_code:
                    acknowledged.setdefault(name, []).append((int(sent - t0_ns), short_code))
        trace = cls(t0_ns, operations, acknowledged=acknowledged)
        if operation:
            order = np.argsort(np.concatenate(done), kind="stable")
            trace.operation = np.concatenate(operation)[order]
            trace.status = np.concatenate(status)[order]
            trace.error = np.concatenate(error)[order]
            trace.intended_ns = np.concatenate(intended)[order]
            trace.done_ns = np.concatenate(done)[order]
        for entries in trace.acknowledged.values():
            entries.sort()
        return trace

    def __len__(self) -> int:
        return len(self.status)

    @property
    def failed(self) -> npt.NDArray[np.bool_]:
        """Which requests failed: no answer, or a 4xx/5xx status."""
        failed: npt.NDArray[np.bool_] = (self.status == 0) | (self.status >= 400)
        return failed

    def category(self, index: int) -> str:
        """Request ``index``'s failure category (``http_503``, ``connect_refused`` ...) or ""."""
        if self.status[index] == 0:
            return ERROR_CATEGORIES[int(self.error[index])]
        if self.status[index] >= 400:
            return f"http_{int(self.status[index])}"
        return ""

    def failure_categories(self, start_ns: int = 0) -> dict[str, int]:
        """Failed requests (completed from ``start_ns`` on) counted by category."""
        counts: dict[str, int] = {}
        for index in np.flatnonzero(self.failed & (self.done_ns >= start_ns)).tolist():
            name = self.category(index)
            counts[name] = counts.get(name, 0) + 1
        return dict(sorted(counts.items()))

    def per_second(self, bucket_s: float = 1.0) -> list[dict[str, float]]:
        """Per completion bucket: time (s from t0), answered, ok, failed, p99 ms (latency from
        the intended send time)."""
        if not len(self):
            return []
        width = int(bucket_s * _NS)
        buckets = self.done_ns // width
        latency_us = (self.done_ns - self.intended_ns) // 1000
        failed = self.failed
        rows = []
        for bucket in range(int(buckets.min()), int(buckets.max()) + 1):
            mine = buckets == bucket
            histogram = latency_histogram(2)
            for value in latency_us[mine & ~failed].tolist():
                histogram.record_value(max(1, min(int(value), 60_000_000)))
            ok = int(np.count_nonzero(mine & ~failed))
            rows.append(
                {
                    "t_s": round(bucket * bucket_s, 3),
                    "requests": int(np.count_nonzero(mine)),
                    "ok": ok,
                    "failed": int(np.count_nonzero(mine & failed)),
                    "p99_ms": histogram.get_value_at_percentile(99.0) / 1000 if ok else 0.0,
                }
            )
        return rows
