"""Server-side figures of a load step from the lab's Prometheus, over the step's own window.

Where a Prometheus watches the lab (the sandbox's own, or the cluster's at
``observability.prometheus_url``) the phase 6 server figures come from PromQL, the way
they would on the real lab: Redis hit ratio and server time per command (redis_exporter),
PostgreSQL server time per transaction (the sandbox's exporter query over
``pg_stat_database.active_time``), and CPU and memory per component (cAdvisor per pod on a
cluster; on the sandbox what its exporters report per process). Every figure carries the
PromQL it came from. The process figures of ``ServerWatch`` stay beside them as a
cross-check.
"""

from __future__ import annotations

import math
from typing import Any

from labkit.errors import ConfigError, LabkitError
from labkit.observe import Prometheus, client, locate
from labkit.params import Lab

__all__ = ["window_figures"]


def _queries(lab: Lab, window: str) -> dict[str, str]:
    r, postgres = lab.redis.namespace, f'namespace="{lab.postgres.namespace}"'
    hits = f'sum(increase(redis_keyspace_hits_total{{namespace="{r}"}}[{window}]))'
    misses = f'sum(increase(redis_keyspace_misses_total{{namespace="{r}"}}[{window}]))'
    return {
        "hit_ratio": f"{hits} / ({hits} + {misses})",
        "redis_us_per_command": (
            f'sum(increase(redis_commands_duration_seconds_total{{namespace="{r}"}}[{window}])) / '
            f'sum(increase(redis_commands_total{{namespace="{r}"}}[{window}])) * 1e6'
        ),
        "postgres_ms_per_transaction": (
            f"sum(increase(labkit_pg_database_active_seconds_total{{{postgres}}}[{window}])) / "
            f"sum(increase(labkit_pg_database_transactions_total{{{postgres}}}[{window}])) * 1e3"
        ),
    }


def _resource_queries(lab: Lab, window: str) -> dict[str, tuple[str, str]]:
    """component label -> (CPU cores PromQL, memory bytes PromQL), by lab kind."""
    if lab.kind != "sandbox":
        namespaces = "|".join([lab.shlink.namespace, lab.redis.namespace, lab.postgres.namespace])
        selector = f'namespace=~"{namespaces}", container!="", container!="POD"'
        return {
            "pod": (
                f"sum by (pod) (rate(container_cpu_usage_seconds_total{{{selector}}}[{window}]))",
                f"sum by (pod) (max_over_time(container_memory_working_set_bytes{{{selector}}}"
                f"[{window}]))",
            )
        }
    redis = f'namespace="{lab.redis.namespace}"'
    monitoring = 'job=~"prometheus|alertmanager"'
    return {
        "instance": (
            f"sum by (instance) (rate(redis_cpu_sys_seconds_total{{{redis}}}[{window}]) + "
            f"rate(redis_cpu_user_seconds_total{{{redis}}}[{window}]))",
            f"max by (instance) (max_over_time(redis_memory_used_rss_bytes{{{redis}}}[{window}]))",
        ),
        "job": (
            f"sum by (job) (rate(process_cpu_seconds_total{{{monitoring}}}[{window}]))",
            f"sum by (job) (max_over_time(process_resident_memory_bytes{{{monitoring}}}"
            f"[{window}]))",
        ),
    }


def _number(prometheus: Prometheus, promql: str, at: float) -> float | None:
    samples = prometheus.query(promql, at=at)
    if not samples or math.isnan(samples[0].value) or math.isinf(samples[0].value):
        return None
    return round(samples[0].value, 4)


def window_figures(lab: Lab, start: float, end: float) -> dict[str, Any]:
    """PromQL figures over [start, end] (unix seconds); ``{"skipped": why}`` without Prometheus."""
    url, why = locate(lab, "prometheus")
    if not url:
        return {"skipped": why}
    # The step's own window, never longer: a sample from before the step (a cache being
    # filled, say) must not count. Rounded down to the millisecond PromQL durations take.
    milliseconds = max(1, math.floor((end - start) * 1000))
    window = f"{milliseconds}ms"
    figures: dict[str, Any] = {"url": url, "window_s": milliseconds / 1000, "queries": {}}
    try:
        with client(lab, "prometheus") as api:
            assert isinstance(api, Prometheus)
            for name, promql in _queries(lab, window).items():
                figures[name] = _number(api, promql, end)
                figures["queries"][name] = promql
            components = []
            for label, (cpu_query, memory_query) in _resource_queries(lab, window).items():
                memory = {
                    s.labels.get(label, "?"): s.value for s in api.query(memory_query, at=end)
                }
                for sample in api.query(cpu_query, at=end):
                    name = sample.labels.get(label, "?")
                    components.append(
                        {
                            "component": name,
                            "cpu_cores": round(sample.value, 3),
                            "memory_mb": round(memory.get(name, 0.0) / 2**20, 1),
                        }
                    )
                figures["queries"][f"cpu by {label}"] = cpu_query
                figures["queries"][f"memory by {label}"] = memory_query
            figures["components"] = sorted(components, key=lambda row: -row["cpu_cores"])
    except (LabkitError, ConfigError) as exc:
        return {"skipped": f"Prometheus at {url}: {exc}"}
    return figures
