"""Verdicts: the ADR targets against a step's figures, table-driven, failing cases included."""

from __future__ import annotations

from typing import Any

import pytest

from labkit.load.verdict import judge
from labkit.params import Lab


def _step(
    p99: float = 4.0,
    hit: float | None = 0.99,
    redis_us: float = 300.0,
    server_us: float = 12.0,
    pg_ms: float = 6.0,
    errors: float = 0.0,
    limited: bool = False,
) -> dict[str, Any]:
    return {
        "target_rps": 1000.0,
        "generator_limited": limited,
        "error_rate": errors,
        "operations": {
            "redirect": {"status_codes": {"302": 10}, "latency_ms": {"corrected": {"p99": p99}}}
        },
        "server": {
            "redis": {
                "hit_ratio": hit,
                "probe_us": {"p99": redis_us, "count": 100},
                "server_latency_us": {
                    "get": {"p50": 2.0, "p99": server_us, "p99_9": 40.0},
                    "set": {"p50": 4.0, "p99": 9.0, "p99_9": 14.0},
                },
            },
            "postgres": {"probe_ms": {"p99": pg_ms, "count": 50}},
            "problems": {},
        },
    }


def _status(lab: Lab, scenario: str, step: dict[str, Any]) -> dict[str, str]:
    return {verdict.target: verdict.status for verdict in judge(lab, scenario, step)}


@pytest.mark.parametrize(
    ("step", "target", "expected"),
    [
        (_step(), "redirect P99 (cache hit)", "pass"),
        (_step(p99=10.5), "redirect P99 (cache hit)", "fail"),
        (_step(hit=0.95), "cache-hit ratio", "fail"),
        (_step(hit=0.951), "cache-hit ratio", "pass"),
        (_step(hit=None), "cache-hit ratio", "n/a (no cache lookups seen)"),
        (_step(server_us=501), "Redis latency P99 (server, INFO latencystats)", "fail"),
        (_step(server_us=499), "Redis latency P99 (server, INFO latencystats)", "pass"),
        # The client's round trip is context only: shown, never judged.
        (
            _step(redis_us=4000),
            "Redis round trip P99 (client probe, context)",
            "n/a (context: the client's round trip on the loaded load machine)",
        ),
        (_step(pg_ms=12), "PostgreSQL write P99 (probe)", "fail"),
        (_step(pg_ms=2), "PostgreSQL write P99 (probe)", "pass"),
        (_step(errors=0.02), "error rate", "fail"),
    ],
)
def test_each_target_is_judged_against_params(
    sandbox_params_lab: Lab, step: dict[str, Any], target: str, expected: str
) -> None:
    assert _status(sandbox_params_lab, "redirect-hit", step)[target] == expected


def test_a_generator_limited_step_is_not_judged_on_latency(sandbox_params_lab: Lab) -> None:
    status = _status(sandbox_params_lab, "redirect-hit", _step(p99=50, limited=True))
    assert status["redirect P99 (cache hit)"].startswith("n/a (generator-limited")


def test_create_has_no_redirect_target_and_miss_checks_it_missed(sandbox_params_lab: Lab) -> None:
    assert "redirect P99 (cache hit)" not in _status(sandbox_params_lab, "create", _step())
    miss = _status(sandbox_params_lab, "redirect-miss", _step(hit=0.9))
    assert miss["cache-hit ratio (miss scenario)"] == "fail"


def _with_promql(step: dict[str, Any], **figures: Any) -> dict[str, Any]:
    queries = {
        name: f"<{name} query>"
        for name in ("hit_ratio", "redis_us_per_command", "postgres_ms_per_transaction")
    }
    step["server"]["prometheus"] = {"queries": queries, **figures}
    return step


@pytest.mark.parametrize(
    ("figures", "target", "expected", "source"),
    [
        # PromQL's hit ratio wins over INFO stats (0.99), which stays as the cross-check.
        ({"hit_ratio": 0.9}, "cache-hit ratio", "fail", "PromQL: <hit_ratio query>"),
        ({"hit_ratio": 0.97}, "cache-hit ratio", "pass", "PromQL: <hit_ratio query>"),
        ({"hit_ratio": None}, "cache-hit ratio", "pass", "Redis INFO stats (keyspace hits/misses)"),
        (
            {"redis_us_per_command": 12.0},
            "Redis server time per command (PromQL)",
            "pass",
            "PromQL: <redis_us_per_command query>",
        ),
        (
            {"redis_us_per_command": 900.0},
            "Redis server time per command (PromQL)",
            "fail",
            "PromQL: <redis_us_per_command query>",
        ),
        (
            {"postgres_ms_per_transaction": 0.4},
            "PostgreSQL server time per transaction (PromQL)",
            "pass",
            "PromQL: <postgres_ms_per_transaction query>",
        ),
        (
            {},
            "PostgreSQL server time per transaction (PromQL)",
            "n/a (no transaction time series (the cluster's pgMonitor has none))",
            "PromQL: <postgres_ms_per_transaction query>",
        ),
    ],
)
def test_server_rows_say_when_they_come_from_promql(
    sandbox_params_lab: Lab, figures: dict[str, Any], target: str, expected: str, source: str
) -> None:
    step = _with_promql(_step(), **figures)
    rows = {v.target: v for v in judge(sandbox_params_lab, "redirect-hit", step)}
    assert rows[target].status == expected
    assert rows[target].source == source
    if target == "cache-hit ratio" and figures.get("hit_ratio") is not None:
        assert rows[target].cross_check == "Redis INFO stats: 0.99"


def test_without_a_prometheus_there_are_no_promql_rows(sandbox_params_lab: Lab) -> None:
    step = _step()
    step["server"]["prometheus"] = {"skipped": "params observability.prometheus_url is empty"}
    targets = {verdict.target for verdict in judge(sandbox_params_lab, "redirect-hit", step)}
    assert not any("PromQL" in target for target in targets)


def test_without_latencystats_the_redis_target_is_not_measured(sandbox_params_lab: Lab) -> None:
    step = _step()
    del step["server"]["redis"]["server_latency_us"]
    status = _status(sandbox_params_lab, "redirect-hit", step)
    assert status["Redis latency P99 (server, INFO latencystats)"].startswith("n/a (no cache")
