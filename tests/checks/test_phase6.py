"""Phase 6 checks: 6.1.1 against our own loopback server; the rest judge saved results."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit.checks import Status, run_checks
from labkit.load.store import save
from labkit.params import Lab, load_lab
from tests.load.conftest import TestServer


@pytest.fixture
def sandbox_params_lab() -> Lab:
    """params/local.yaml as a Lab; nothing is started."""
    return load_lab(Path(__file__).resolve().parents[2] / "params" / "local.yaml")


@pytest.fixture
def http_server() -> Iterator[Callable[..., TestServer]]:
    """Start tests/load/servers.py processes; each is stopped (by its handle) after the test."""
    started: list[TestServer] = []

    def start(*arguments: str) -> TestServer:
        started.append(TestServer(*arguments))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def _lab(lab: Lab, tmp_path: Path, base_url: str | None = None) -> Lab:
    assert lab.sandbox is not None
    update: dict[str, Any] = {"sandbox": lab.sandbox.model_copy(update={"state_dir": tmp_path})}
    if base_url is not None:
        update["shlink"] = lab.shlink.model_copy(update={"base_url": base_url})
    return lab.model_copy(update=update)


def _statuses(lab: Lab, item: str) -> list[Status]:
    return [result.status for result in run_checks(lab, ids=[item])]


def _entry(
    scenario: str, rate: float, achieved: float, *, limited: bool = False, hit: float | None = 0.99
) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "target_rps": rate,
        "achieved_rps": achieved,
        "responses": int(achieved),
        "error_rate": 0.0,
        "started_at": "2026-01-01T00:00:00+00:00",
        "generator_limited": limited,
        "generator_reason": "scheduler lag p99 9 ms > 5 ms" if limited else "",
        "generator": {"cpu_cores": [0.3], "cores": 2, "load_avg_1m": 0.5},
        "latency_ms": {"corrected": {"p50": 1.0, "p95": 2.0, "p99": 3.0}},
        "server": {
            "redis": {"hit_ratio": hit},
            "processes": [{"component": "shortener", "cpu_cores": 0.8, "memory_mb": 150.0}],
        },
        "verdicts": [
            {
                "scenario": scenario,
                "rate": rate,
                "target": target,
                "measured": "1 ms",
                "expected": "< 10 ms",
                "status": "pass",
            }
            for target in (
                "redirect P99 (cache hit)",
                "cache-hit ratio",
                "Redis latency P99 (server, INFO latencystats)",
                "PostgreSQL write P99 (probe)",
            )
        ],
    }


def test_the_engine_check_passes_against_a_working_endpoint(
    sandbox_params_lab: Lab, tmp_path: Path, http_server: Callable[..., TestServer]
) -> None:
    server = http_server("--status", "200")
    lab = _lab(sandbox_params_lab, tmp_path, f"http://127.0.0.1:{server.port}")
    assert _statuses(lab, "6.1.1") == [Status.PASS]


def test_the_engine_check_fails_when_nothing_answers(
    sandbox_params_lab: Lab, tmp_path: Path, http_server: Callable[..., TestServer]
) -> None:
    server = http_server()
    server.stop()
    lab = _lab(sandbox_params_lab, tmp_path, f"http://127.0.0.1:{server.port}")
    (result,) = run_checks(lab, ids=["6.1.1"])
    assert result.status == Status.FAIL
    assert "connect_refused" in result.observed


def test_without_saved_results_the_checks_fail_and_say_how_to_get_them(
    sandbox_params_lab: Lab, tmp_path: Path
) -> None:
    lab = _lab(sandbox_params_lab, tmp_path)
    results = run_checks(lab, ids=["6.1.2", "6.1.3", "6.1.4", "6.2.1", "6.2.3", "6.2.4", "6.2.5"])
    by_id = {result.id: result.status for result in results}
    assert by_id["6.1.2"] == Status.PASS
    assert by_id["6.2.5"] == Status.SKIP
    for item in ("6.1.3", "6.1.4", "6.2.1", "6.2.3", "6.2.4"):
        assert by_id[item] == Status.FAIL, item
    assert all("notebook 06" in r.observed for r in results if r.status == Status.FAIL)


def test_saved_results_pass_and_a_generator_limited_step_does_not_count(
    sandbox_params_lab: Lab, tmp_path: Path
) -> None:
    # The roadmap's ladder, whatever the sandbox's own params say.
    lab = _lab(sandbox_params_lab, tmp_path)
    lab = lab.model_copy(
        update={"targets": lab.targets.model_copy(update={"rate_steps": [1000, 5000, 10000]})}
    )
    save(lab, "baseline", [_entry("redirect-hit", 10, 10)])
    for scenario in ("create", "redirect-miss", "mixed"):
        save(lab, scenario, [_entry(scenario, 1000, 990)])
    save(
        lab,
        "redirect-hit",
        [
            _entry("redirect-hit", 1000, 1000),
            _entry("redirect-hit", 5000, 4990),
            _entry("redirect-hit", 10000, 9990, limited=True),
        ],
    )
    for item in ("6.1.3", "6.2.1", "6.2.2", "6.2.3", "6.2.4"):
        assert set(_statuses(lab, item)) == {Status.PASS}, item
    assert _statuses(lab, "6.1.4") == [Status.PASS, Status.PASS, Status.FAIL]


def test_a_low_cache_hit_ratio_fails_6_2_3(sandbox_params_lab: Lab, tmp_path: Path) -> None:
    lab = _lab(sandbox_params_lab, tmp_path)
    entry = copy.deepcopy(_entry("redirect-hit", 1000, 1000, hit=0.80))
    save(lab, "redirect-hit", [entry])
    assert _statuses(lab, "6.2.3") == [Status.FAIL]


def test_an_unmeasured_adr_target_fails_6_2_2(sandbox_params_lab: Lab, tmp_path: Path) -> None:
    lab = _lab(sandbox_params_lab, tmp_path)
    entry = _entry("redirect-hit", 1000, 1000)
    entry["verdicts"][3].update(measured="not measured", status="n/a (no probe)")
    save(lab, "redirect-hit", [entry])
    (result,) = run_checks(lab, ids=["6.2.2"])
    assert result.status == Status.FAIL
    assert "PostgreSQL write P99" in result.observed


def test_a_target_only_measured_while_the_generator_limited_fails_6_2_2(
    sandbox_params_lab: Lab, tmp_path: Path
) -> None:
    lab = _lab(sandbox_params_lab, tmp_path)
    entry = _entry("redirect-hit", 1000, 1000, limited=True)
    entry["verdicts"][0]["status"] = "n/a (generator-limited: the client set this figure)"
    save(lab, "redirect-hit", [entry])
    (result,) = run_checks(lab, ids=["6.2.2"])
    assert result.status == Status.FAIL
    assert "not measured: redirect P99 (cache hit)" in result.observed


def test_a_step_without_cpu_and_memory_figures_fails_6_2_1_saying_so(
    sandbox_params_lab: Lab, tmp_path: Path
) -> None:
    lab = _lab(sandbox_params_lab, tmp_path)
    entry = _entry("create", 100, 100)
    entry["server"]["processes"] = []
    save(lab, "create", [entry])
    (result,) = [r for r in run_checks(lab, ids=["6.2.1"]) if r.subject == "create"]
    assert result.status == Status.FAIL
    assert "100/s: 100/s achieved" in result.observed
    assert result.observed.endswith("no CPU/memory figures")


def test_a_step_without_a_hit_ratio_fails_6_2_3(sandbox_params_lab: Lab, tmp_path: Path) -> None:
    lab = _lab(sandbox_params_lab, tmp_path)
    save(
        lab,
        "redirect-hit",
        [_entry("redirect-hit", 100, 100), _entry("redirect-hit", 200, 200, hit=None)],
    )
    (result,) = run_checks(lab, ids=["6.2.3"])
    assert result.status == Status.FAIL
    assert "200/s: not measured" in result.observed


def test_with_a_climbing_ladder_6_1_4_judges_the_rates_it_reached(
    sandbox_params_lab: Lab, tmp_path: Path
) -> None:
    lab = _lab(sandbox_params_lab, tmp_path)
    assert lab.targets.ladder is not None  # params/local.yaml climbs
    save(lab, "redirect-hit", [_entry("redirect-hit", 100, 100), _entry("redirect-hit", 200, 150)])
    save(lab, "create", [_entry("create", 100, 99)])
    results = list(run_checks(lab, ids=["6.1.4"]))
    assert [(r.subject, r.status) for r in results] == [
        ("100/s", Status.PASS),
        ("200/s", Status.FAIL),
    ]
    assert "climbing ladder" in results[0].expected


def test_with_a_climbing_ladder_6_1_4_leaves_out_each_scenario_s_knee(
    sandbox_params_lab: Lab, tmp_path: Path
) -> None:
    lab = _lab(sandbox_params_lab, tmp_path)
    knee = "the knee: at 400/s redirect P99 (cache hit) 40 ms (target < 10 ms)"
    steps = [
        _entry("redirect-hit", 100, 100),
        _entry("redirect-hit", 200, 200),
        _entry("redirect-hit", 400, 300),  # saturated: the lab's limit, its knee
    ]
    for step in steps:
        step["stopped"] = knee
    save(lab, "redirect-hit", steps)
    results = list(run_checks(lab, ids=["6.1.4"]))
    assert [(r.subject, r.status) for r in results] == [
        ("100/s", Status.PASS),
        ("200/s", Status.PASS),
    ]


def test_a_rate_kept_only_with_errors_is_not_sustained_6_1_4(
    sandbox_params_lab: Lab, tmp_path: Path
) -> None:
    lab = _lab(sandbox_params_lab, tmp_path)
    rate = lab.targets.rate_steps[0]
    failing = _entry("redirect-hit", rate, rate)
    failing["error_rate"] = 1.0  # every answer a 503, at the full rate
    save(lab, "redirect-hit", [failing])
    result = next(r for r in run_checks(lab, ids=["6.1.4"]) if r.subject == f"{rate}/s")
    assert result.status == Status.FAIL
    assert "errors 100.00%" in result.observed


def test_results_saved_under_other_settings_or_long_ago_are_stale(
    sandbox_params_lab: Lab, tmp_path: Path
) -> None:
    lab = _lab(sandbox_params_lab, tmp_path)
    path = save(lab, "create", [_entry("create", 100, 100)])
    (fresh,) = [r for r in run_checks(lab, ids=["6.2.1"]) if r.subject == "create"]
    assert "stale" not in fresh.observed and "none in" not in fresh.observed  # it was judged
    other = lab.model_copy(
        update={"targets": lab.targets.model_copy(update={"redirect_p99_ms": 50.0})}
    )
    (result,) = [r for r in run_checks(other, ids=["6.2.1"]) if r.subject == "create"]
    assert result.status == Status.FAIL
    assert "stale: measured under other settings" in result.observed
    document = json.loads(path.read_text())
    document["saved_at"] = "2020-01-01T00:00:00+00:00"
    path.write_text(json.dumps(document))
    (result,) = [r for r in run_checks(lab, ids=["6.2.1"]) if r.subject == "create"]
    assert "stale: measured 2020-01-01, more than 7 days ago" in result.observed


def _from_prometheus(entry: dict[str, Any], hit: float | None) -> dict[str, Any]:
    """A step whose server figures the lab's Prometheus gave (a cluster: no process figures)."""
    entry["server"] = {
        "redis": {"hit_ratio": None},
        "processes": [],
        "prometheus": {
            "hit_ratio": hit,
            "queries": {"hit_ratio": "sum(increase(redis_keyspace_hits_total[10s])) / ..."},
            "components": [
                {"component": "shlink-7d9f-abcde", "cpu_cores": 1.2, "memory_mb": 210.0},
                {"component": "redis-0", "cpu_cores": 0.4, "memory_mb": 30.0},
            ],
        },
    }
    return entry


@pytest.mark.parametrize(("hit", "status"), [(0.99, Status.PASS), (0.9, Status.FAIL)])
def test_server_figures_from_promql_are_judged_and_named(
    sandbox_params_lab: Lab, tmp_path: Path, hit: float, status: Status
) -> None:
    lab = _lab(sandbox_params_lab, tmp_path)
    for scenario in ("create", "redirect-miss", "mixed"):
        save(lab, scenario, [_from_prometheus(_entry(scenario, 100, 100), hit)])
    save(lab, "redirect-hit", [_from_prometheus(_entry("redirect-hit", 100, 100), hit)])
    results = {r.id + r.subject: r for r in run_checks(lab, ids=["6.2.1", "6.2.3", "6.2.4"])}
    assert results["6.2.1redirect-hit"].status == Status.PASS
    assert "CPU/memory from PromQL" in results["6.2.1redirect-hit"].observed
    assert results["6.2.3"].status == status
    assert f"{hit} (PromQL)" in results["6.2.3"].observed
    busiest = results["6.2.4redirect-hit"]
    assert busiest.status == Status.PASS
    assert "from PromQL: shlink-7d9f-abcde 1.20 cores / 210.0 MB" in busiest.observed
