"""A finished load run: merged histograms, generator health, and its results.json form.

The ``load`` schema (one entry of results.json ``load``)::

    {kind: "load", name, scenario, url, target_rps, achieved_rps, requests, responses,
     duration_s, warmup_s, processes, connections,
     latency_ms: {corrected|uncorrected|lag: {p50 p90 p95 p99 p99_9 max mean}},
     operations: {op: {requests, target_rps?, latency_ms: {...}, status_codes, errors}},
     errors: {category: count}, error_rate, status_codes: {"302": count},
     generator_limited: bool, generator_reason: str,
     generator: {loop, cpu_cores: [per process], lag_p99_ms, load_avg_1m, cores},
     timeseries: [{second, responses, errors, p50_ms, p99_ms}],
     spectrum: {corrected|uncorrected: [[percentile, ms] ...]},
     histograms: {corrected|uncorrected: base64 HdrHistogram}, roadmap_ids: [...]}
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from labkit.load.recorder import Recorder, percentiles_ms
from labkit.load.trace import Trace

__all__ = ["LoadResult", "spectrum"]


def spectrum(histogram: HdrHistogram, ticks: int = 5) -> list[list[float]]:
    """``[percentile, ms]`` points of the HDR percentile distribution (for the spectrum plot)."""
    if histogram.get_total_count() == 0:
        return []
    points = []
    for item in histogram.get_percentile_iterator(ticks):
        level = min(float(item.percentile_level_iterated_to), 99.9999)
        points.append([round(level, 5), item.value_iterated_to / 1000])
    return points


@dataclass
class LoadResult:
    """What one load run measured, with the generator's own health beside it."""

    name: str
    url: str
    target_rps: float
    duration_s: float
    warmup_s: float
    processes: int
    connections: int
    recorder: Recorder
    workers: list[dict[str, Any]]
    generator_limited: bool
    generator_reason: str
    load_avg_1m: float
    cores: int
    scenario: str = ""
    operation_rates: dict[str, float] = field(default_factory=dict)
    roadmap_ids: list[str] = field(default_factory=list)
    started_at: str = field(
        default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    )
    trace: Trace | None = None  # a traced run's per-request record (drills); not in to_dict

    @property
    def measured_wall_s(self) -> float:
        """Wall time from the measured start until the last answer (the slowest worker)."""
        return max((worker["measured_wall_s"] for worker in self.workers), default=0.0)

    @property
    def achieved_rps(self) -> float:
        """Responses per second over the measured window (errors excluded)."""
        wall = max(self.measured_wall_s, self.duration_s)
        return self.recorder.responses / wall if wall > 0 else 0.0

    @property
    def error_rate(self) -> float:
        """Failures (no response, 4xx, 5xx) over measured requests."""
        requests = self.recorder.requests
        return sum(self.recorder.errors().values()) / requests if requests else 0.0

    def latency(
        self, attribute: str = "corrected", operation: str | None = None
    ) -> dict[str, float]:
        """Percentiles in ms of one histogram kind, for one operation or all."""
        if operation is None:
            return percentiles_ms(self.recorder.total(attribute))
        return percentiles_ms(getattr(self.recorder.operations[operation], attribute))

    def timeseries(self) -> list[dict[str, float]]:
        """Per completion second: responses, errors, corrected p50 and p99 in ms."""
        rows = []
        for second in sorted(self.recorder.seconds):
            bucket = self.recorder.seconds[second]
            histogram = bucket.histogram
            count = histogram.get_total_count()
            values = histogram.get_percentile_to_value_dict([50.0, 99.0]) if count else {}
            rows.append(
                {
                    "second": second,
                    "responses": count,
                    "errors": bucket.errors,
                    "p50_ms": values.get(50.0, 0) / 1000,
                    "p99_ms": values.get(99.0, 0) / 1000,
                }
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        """The results.json ``load`` entry."""
        recorder = self.recorder
        operations = {}
        for name, stats in recorder.operations.items():
            operations[name] = {
                "requests": stats.responses + sum(stats.errors.values()),
                "target_rps": round(self.operation_rates.get(name, 0.0), 1),
                "latency_ms": {
                    kind: percentiles_ms(getattr(stats, kind))
                    for kind in ("corrected", "uncorrected", "lag")
                },
                "status_codes": {str(k): v for k, v in sorted(stats.status_codes.items())},
                "errors": dict(stats.errors),
            }
        corrected = recorder.total("corrected")
        uncorrected = recorder.total("uncorrected")
        lag = recorder.total("lag")
        loops = sorted({str(worker.get("loop", "")) for worker in self.workers})
        return {
            "kind": "load",
            "name": self.name,
            "scenario": self.scenario,
            "url": self.url,
            "started_at": self.started_at,
            "target_rps": round(self.target_rps, 1),
            "achieved_rps": round(self.achieved_rps, 1),
            "requests": recorder.requests,
            "responses": recorder.responses,
            "duration_s": self.duration_s,
            "warmup_s": self.warmup_s,
            "processes": self.processes,
            "connections": self.connections,
            "latency_ms": {
                "corrected": percentiles_ms(corrected),
                "uncorrected": percentiles_ms(uncorrected),
                "lag": percentiles_ms(lag),
            },
            "operations": operations,
            "errors": dict(recorder.errors()),
            "error_rate": round(self.error_rate, 6),
            "status_codes": {str(k): v for k, v in sorted(recorder.status_codes().items())},
            "generator_limited": self.generator_limited,
            "generator_reason": self.generator_reason,
            "generator": {
                "loop": ",".join(loops),
                "cpu_cores": [round(w["cpu_s"] / max(w["wall_s"], 1e-9), 3) for w in self.workers],
                "cpu_s": round(sum(w["cpu_s"] for w in self.workers), 3),
                "lag_p99_ms": percentiles_ms(lag)["p99"],
                "connects": sum(w["connects"] for w in self.workers),
                "load_avg_1m": round(self.load_avg_1m, 2),
                "cores": self.cores,
            },
            "timeseries": self.timeseries(),
            "spectrum": {"corrected": spectrum(corrected), "uncorrected": spectrum(uncorrected)},
            "histograms": {
                "corrected": corrected.encode().decode(),
                "uncorrected": uncorrected.encode().decode(),
            },
            "roadmap_ids": list(self.roadmap_ids),
        }

    def summary(self) -> str:
        """A wrk2-like text summary: rates, percentiles corrected and uncorrected, errors."""
        data = self.to_dict()
        lines = [
            f"{self.name}: {data['url']}  target {data['target_rps']:.0f} req/s for "
            f"{self.duration_s:g}s (+{self.warmup_s:g}s warm-up), {self.processes} process(es), "
            f"{self.connections} connections",
            f"  achieved {data['achieved_rps']:.1f} req/s, {data['requests']} requests, "
            f"{data['responses']} responses, error rate {data['error_rate']:.2%}",
            f"  {'latency ms':<12}"
            + "".join(f"{k:>10}" for k in ("p50", "p90", "p95", "p99", "p99_9", "max")),
        ]
        for kind in ("corrected", "uncorrected", "lag"):
            values = data["latency_ms"][kind]
            lines.append(
                f"  {kind:<12}"
                + "".join(
                    f"{values[k]:>10.3f}" for k in ("p50", "p90", "p95", "p99", "p99_9", "max")
                )
            )
        lines.append(
            f"  status codes {data['status_codes'] or '{}'}  errors {data['errors'] or '{}'}"
        )
        generator = data["generator"]
        lines.append(
            f"  generator: {generator['loop']}, cpu {generator['cpu_cores']} core(s), "
            f"load average {generator['load_avg_1m']} on {generator['cores']} cores"
        )
        if self.generator_limited:
            lines.append(
                f"  GENERATOR-LIMITED: {self.generator_reason}; these numbers "
                "describe the load generator as much as the server"
            )
        return "\n".join(lines)
