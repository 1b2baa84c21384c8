"""adr.md from a run's results.json: every figure follows the file, none is typed."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from labkit.adr import DECISIONS, render, write_adr


def _verdicts(rate: float, redirect_ok: bool = True) -> list[dict[str, Any]]:
    return [
        {
            "scenario": "mixed",
            "rate": rate,
            "target": "redirect P99 (cache hit)",
            "expected": "< 10 ms",
            "measured": "4 ms",
            "status": "pass" if redirect_ok else "fail",
        },
        {
            "scenario": "mixed",
            "rate": rate,
            "target": "Redis round trip P99 (client probe, context)",
            "expected": "200-500 µs",
            "measured": "900 µs",
            "status": "n/a (context)",
        },
    ]


def _step(rate: float, redirect_p99: float, redis_p99: float) -> dict[str, Any]:
    return {
        "kind": "load",
        "name": f"mixed@{rate:.0f}",
        "scenario": "mixed",
        "target_rps": rate,
        "achieved_rps": rate - 0.5,
        "error_rate": 0.0002,
        "generator_limited": False,
        "generator_reason": "",
        "generator": {"cpu_cores": [0.21], "cores": 2},
        "operations": {
            "redirect": {
                "status_codes": {"302": 100},
                "latency_ms": {"corrected": {"p99": redirect_p99}},
            },
            "create": {"status_codes": {"201": 1}, "latency_ms": {"corrected": {"p99": 17.5}}},
        },
        "server": {
            "redis": {
                "hit_ratio": 0.9876,
                "probe_us": {"p99": 912.0, "count": 50},
                "server_latency_us": {"get": {"p50": 2.0, "p99": redis_p99, "p99_9": 40.0}},
            },
            "postgres": {"probe_ms": {"p99": 3.25, "count": 20}},
            "processes": [
                {"component": "shortener", "cpu_cores": 1.42, "memory_mb": 120},
                {"component": "postgres-primary", "cpu_cores": 0.31, "memory_mb": 60},
            ],
        },
        "verdicts": _verdicts(100) + _verdicts(200, redirect_ok=rate != 200),
        "highest_good_rps": 100.0,
        "stopped": "the knee: at 200/s redirect P99 (cache hit) 12 ms (target < 10 ms)",
        "climbing": True,
    }


def _results() -> dict[str, Any]:
    return {
        "schema": "labkit.results/1",
        "run_id": "run-1",
        "lab": "sandbox",
        "generated_at": "2026-12-06T17:00:00+00:00",
        "checks": [
            {"id": "2.3.1", "status": "pass", "observed": "3 nodes"},
            {"id": "2.3.2", "status": "pass", "observed": "PONG"},
            {"id": "4.1.1", "status": "skip", "observed": "needs a Kubernetes API"},
        ],
        "load": [_step(100, 4.25, 9.5), _step(200, 12.5, 11.0)],
        "drills": [
            {
                "scenario": "redis-master",
                "status": "done",
                "rate_rps": 500,
                "measured": {
                    "error_window_s": 0.75,
                    "first_success_s": 0.01,
                    "p99_recovered_s": 2.5,
                    "failed": 12,
                    "failed_by_category": {"http_503": 12},
                },
                "writes": {"acknowledged": 41, "lost": 0},
                "failover": {"summary": "+switch-master 3.1s after the kill"},
                "restored": {"ok": True, "checks": {"pass": 11}},
            }
        ],
    }


def _write(folder: Path, results: dict[str, Any]) -> str:
    folder.mkdir(exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results))
    path = write_adr(folder)
    assert path == folder / "adr.md"
    return path.read_text()


def test_adr_holds_the_measured_figures_of_each_step_and_drill(tmp_path: Path) -> None:
    text = _write(tmp_path, _results())
    assert "| 100 | 99.5 | 4.25 | 17.5 |" in text
    assert "| 200 | 199.5 | 12.5 |" in text
    assert "| 9.5 | 912 | 3.25 | no | yes |" in text  # Redis server, client, PG, generator, held
    assert "| 11 | 912 | 3.25 | no | no |" in text
    assert "100 req/s (climbing ladder; the knee: at 200/s" in text
    assert "shortener 1.42 cores" in text
    assert "| redis-master | 0.75 | 0.01 | 2.5 |" in text and "41 / 0" in text
    for decision in DECISIONS:
        assert decision.decision in text
    # The Sentinel decision cites the drill and Redis's own latency at each step.
    sentinel = next(line for line in text.splitlines() if "Redis: Sentinel topology" in line)
    assert "checks 2.3: 2 pass" in sentinel
    assert "mixed@100 9.5, mixed@200 11" in sentinel
    assert "+switch-master 3.1s after the kill" in sentinel


@pytest.mark.parametrize(
    ("path", "before", "after"),
    [
        (
            ("load", 0, "operations", "redirect", "latency_ms", "corrected", "p99"),
            "| 4.25 |",
            "| 7.5 |",
        ),
        (("load", 1, "server", "redis", "server_latency_us", "get", "p99"), "| 11 |", "| 433 |"),
        (("drills", 0, "measured", "error_window_s"), "| 0.75 |", "| 3.5 |"),
        (("load", 0, "server", "redis", "hit_ratio"), "| 0.988 |", "| 0.5 |"),
    ],
)
def test_changing_a_measured_figure_in_results_json_changes_adr_md(
    tmp_path: Path, path: tuple[Any, ...], before: str, after: str
) -> None:
    results = _results()
    original = _write(tmp_path / "a", results)
    changed = copy.deepcopy(results)
    node: Any = changed
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = float(after.strip("| "))
    text = _write(tmp_path / "b", changed)
    assert text.count(before) == original.count(before) - 1
    assert after in text and after not in original


def test_a_run_without_load_writes_no_adr(tmp_path: Path) -> None:
    results = _results()
    results["load"] = []
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert write_adr(tmp_path) is None
    assert not (tmp_path / "adr.md").exists()


def test_render_says_what_did_not_run() -> None:
    results = _results()
    results["drills"] = []
    text = render(results)
    assert "No drills in this run." in text
    assert "no redis-master drill in this run" in text
