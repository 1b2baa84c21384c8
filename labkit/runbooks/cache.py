"""Flush the redirect cache under load and measure the hit ratio's drop and recovery.

The flush deletes only the redirect cache's keys (``SCAN MATCH <prefix>*`` then
``UNLINK``, never ``FLUSHALL``, which would also drop whatever else lives in
that Redis) on the master the Sentinels name. A redirect load over a warm set
of short codes runs meanwhile; a sampler reads the master's ``INFO stats``
(``keyspace_hits``/``keyspace_misses``) every ``interval_s`` and flushes once
traffic has flowed for ``flush_at_s``. From those samples: the hit ratio before,
the lowest interval after, and the time until an interval is back at the
threshold (the ADR's hit-ratio target, or just under the ratio before when
that was already lower).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import redis

from labkit.errors import LabkitError
from labkit.params import Lab
from labkit.runbooks.base import Action, Runbook

__all__ = ["CacheFlush", "flush_keys"]

_HOT_CODES = 100
_CLUSTER_REASON = (
    "on a cluster Redis is reached through the cluster layer (labkit/cluster/: a "
    "port-forward to the master), which this runbook does not use yet"
)


def flush_keys(client: redis.Redis, prefix: str) -> int:
    """Delete every key under ``prefix`` (SCAN + UNLINK in batches); returns how many."""
    deleted = 0
    batch: list[Any] = []
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            deleted += int(client.unlink(*batch))
            batch = []
    if batch:
        deleted += int(client.unlink(*batch))
    return deleted


class _Sampler:
    """INFO stats every ``interval_s``; flushes once traffic has flowed ``flush_at_s``."""

    def __init__(self, lab: Lab, prefix: str, interval_s: float, flush_at_s: float) -> None:
        self.lab, self.prefix = lab, prefix
        self.interval_s, self.flush_at_s = interval_s, flush_at_s
        self.samples: list[tuple[float, int, int]] = []  # (monotonic s, hits, misses)
        self.flushed_at: float | None = None
        self.deleted = 0
        self.problem = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="cache-sampler")

    def _run(self) -> None:
        from labkit.stores import lab_redis_master  # noqa: PLC0415

        traffic_since: float | None = None
        try:
            with lab_redis_master(self.lab) as client:
                while not self._stop.is_set():
                    stats = client.info("stats")
                    now = time.monotonic()
                    hits, misses = int(stats["keyspace_hits"]), int(stats["keyspace_misses"])
                    if self.samples and traffic_since is None:
                        previous = self.samples[-1]
                        if hits + misses > previous[1] + previous[2]:
                            traffic_since = now
                    self.samples.append((now, hits, misses))
                    due = traffic_since is not None and now - traffic_since >= self.flush_at_s
                    if due and self.flushed_at is None:
                        self.deleted = flush_keys(client, self.prefix)
                        self.flushed_at = time.monotonic()
                    self._stop.wait(self.interval_s)
        except (LabkitError, redis.RedisError, OSError) as exc:  # stores: ConnectError
            self.problem = f"{type(exc).__name__}: {exc}"

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def series(self) -> list[dict[str, float]]:
        """Per interval with traffic: its end (s from the flush), requests, hit ratio."""
        origin = self.flushed_at if self.flushed_at is not None else 0.0
        rows = []
        for (_, hits0, misses0), (end, hits1, misses1) in zip(
            self.samples, self.samples[1:], strict=False
        ):
            requests = (hits1 - hits0) + (misses1 - misses0)
            if requests > 0:
                rows.append(
                    {
                        "t_s": round(end - origin, 3),
                        "requests": requests,
                        "hit_ratio": round((hits1 - hits0) / requests, 4),
                    }
                )
        return rows


class CacheFlush(Runbook):
    """Warm the cache, flush it under a redirect load, measure the hit ratio's drop and recovery."""

    name = "cache-flush"
    title = "Flush the Redis redirect cache"
    doc = "docs/runbooks/flush-redis-cache.md"

    def __init__(
        self,
        lab: Lab,
        rate: float = 200.0,
        duration_s: float = 6.0,
        flush_at_s: float = 2.0,
        interval_s: float = 0.25,
    ) -> None:
        super().__init__(lab.name)
        self.lab, self.rate, self.duration_s = lab, rate, duration_s
        self.flush_at_s, self.interval_s = flush_at_s, interval_s
        self.codes: tuple[str, ...] = ()
        self.sampler: _Sampler | None = None
        self.load: dict[str, Any] = {}

    @property
    def prefix(self) -> str:
        """The redirect cache's key prefix."""
        from labkit.sandbox.shortener import CACHE_PREFIX  # noqa: PLC0415

        return CACHE_PREFIX

    def actions(self) -> list[Action]:
        """Warm, flush under load while sampling, then count what refilled."""
        lab = self.lab
        redis_cli = f"redis-cli -h {lab.redis.host} -p <master>"
        flush = f"{redis_cli} --scan --pattern '{self.prefix}*' | xargs {redis_cli} UNLINK"
        if lab.kind != "sandbox":
            return [Action("flush the redirect cache", flush, cannot=_CLUSTER_REASON)]
        if not lab.shlink.redirect_cache:
            return [
                Action(
                    "flush the redirect cache",
                    flush,
                    cannot="the lab's redirect cache is off (shlink.redirect_cache: false)",
                )
            ]
        return [
            Action(
                f"warm the cache with {_HOT_CODES} short codes",
                f"GET {lab.shlink.base_url}/<code> for each code (seeded via the REST API)",
                self._warm,
            ),
            Action(
                f"flush under a {self.rate:.0f}/s redirect load, {self.flush_at_s:g}s in",
                f"labkit bench --params <lab> --scenario redirect-hit --rate {self.rate:g} "
                f"& sleep {self.flush_at_s:g}; {flush}; "
                f"redis-cli INFO stats | grep keyspace_  # every {self.interval_s:g}s",
                self._flush_under_load,
            ),
            Action(
                "count the keys refilled",
                f"{redis_cli} --scan --pattern '{self.prefix}*' | wc -l",
                self._count,
            ),
        ]

    def _warm(self) -> str:
        from labkit.shlink import ShlinkClient  # noqa: PLC0415

        codes = []
        with ShlinkClient.from_lab(self.lab) as client:
            for index in range(_HOT_CODES):
                created = client.create(
                    f"https://example.com/labkit-load/hot/{index}",
                    find_if_exists=True,
                    tags=["labkit-load"],
                )
                codes.append(str(created["shortCode"]))
            for code in codes:
                client.resolve(code)
        self.codes = tuple(codes)
        return f"{len(codes)} codes resolved once (cached)"

    def _flush_under_load(self) -> str:
        from labkit.load import Redirects, Schedule, resolve_target, run_load  # noqa: PLC0415

        target = resolve_target(self.lab.shlink.base_url, self.lab.allow_list)
        workload = Redirects(target.host_header, self.codes)
        with _Sampler(self.lab, self.prefix, self.interval_s, self.flush_at_s) as sampler:
            self.sampler = sampler
            result = run_load(
                target, workload, Schedule.constant(self.rate, self.duration_s), name="cache-flush"
            )
        if sampler.problem:
            raise LabkitError(f"redis INFO sampling failed: {sampler.problem}")
        self.load = {
            "achieved_rps": round(result.achieved_rps, 1),
            "errors": sum(result.recorder.errors().values()),
            "p99_ms": result.latency()["p99"],
        }
        if sampler.flushed_at is None:
            raise LabkitError(
                f"the load never ran {self.flush_at_s:g}s long enough to flush "
                f"({len(sampler.samples)} samples); is {self.lab.shlink.base_url} answering?"
            )
        return (
            f"deleted {sampler.deleted} keys; load {self.load['achieved_rps']}/s answered, "
            f"{self.load['errors']} errors, p99 {self.load['p99_ms']} ms"
        )

    def _count(self) -> str:
        from labkit.stores import lab_redis_master  # noqa: PLC0415

        try:
            with lab_redis_master(self.lab) as client:
                keys = sum(1 for _ in client.scan_iter(match=f"{self.prefix}*", count=1000))
        except (redis.RedisError, OSError) as exc:  # a ConnectError (stores) passes as it is
            raise LabkitError(f"redis: counting cache keys failed ({exc})") from exc
        self.measured.append({"figure": "cache keys after the load", "value": keys})
        return f"{keys} keys under {self.prefix}"

    def judge(self) -> tuple[bool, str]:
        """A drop after the flush, then recovery to the threshold before the load ended."""
        sampler = self.sampler
        if sampler is None or sampler.flushed_at is None:
            return False, "the cache was not flushed"
        series = sampler.series()
        self.series = {"hit_ratio": series, "flush_t_s": 0.0}
        before = [row for row in series if row["t_s"] <= 0]
        after = [row for row in series if row["t_s"] > 0]
        if not before or not after:
            return (
                False,
                f"no traffic measured on both sides of the flush ({len(series)} intervals)",
            )
        ratio_before = sum(r["hit_ratio"] * r["requests"] for r in before) / sum(
            r["requests"] for r in before
        )
        threshold = min(self.lab.targets.cache_hit_ratio, ratio_before - 0.02)
        lowest = min(row["hit_ratio"] for row in after)
        recovered = next((row["t_s"] for row in after if row["hit_ratio"] >= threshold), None)
        self.measured[:0] = [
            {"figure": "keys deleted", "value": sampler.deleted},
            {"figure": "hit ratio before the flush", "value": round(ratio_before, 4)},
            {"figure": "lowest interval after the flush", "value": lowest},
            {"figure": "recovery threshold", "value": round(threshold, 4)},
            {"figure": "recovered after s (interval end)", "value": recovered},
            {"figure": "load answered /s", "value": self.load.get("achieved_rps")},
            {"figure": "load errors", "value": self.load.get("errors")},
            {"figure": "load p99 ms", "value": self.load.get("p99_ms")},
        ]
        if sampler.deleted == 0:
            return False, "the flush deleted no keys: was the cache warm?"
        if ratio_before < self.lab.targets.cache_hit_ratio / 2:
            return False, f"the cache was not serving before the flush (ratio {ratio_before:.3f})"
        if lowest >= ratio_before:
            return False, f"no drop after the flush (ratio {ratio_before:.3f} before, low {lowest})"
        if recovered is None:
            return False, (
                f"hit ratio fell from {ratio_before:.3f} to {lowest} and had not recovered to "
                f"{threshold:.3f} when the load ended"
            )
        return True, (
            f"{sampler.deleted} keys flushed: hit ratio {ratio_before:.3f} -> {lowest} -> "
            f"back to >= {threshold:.3f} within {recovered:.2f}s"
        )
