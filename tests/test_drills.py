"""Drills: the figures from a trace (table-driven), the safety gate, and real drills on a
sandbox of this module's own (they break it on purpose, then restore it)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from labkit.drills import measure, run_drill
from labkit.load.recorder import ERROR_CATEGORIES
from labkit.load.trace import Trace
from labkit.params import Lab, load_lab
from labkit.sandbox import Sandbox, postgres
from tests.conftest import REPOSITORY, write_sandbox_params

_S = 1_000_000_000
_MS = 1_000_000


def _trace(rows: list[tuple[float, int, str]]) -> Trace:
    """A trace of (completion s, status, error category) rows, each 5 ms after its send."""
    trace = Trace(0, ("redirect",))
    trace.done_ns = np.array([int(t * _S) for t, _, _ in rows], dtype=np.int64)
    trace.intended_ns = trace.done_ns - 5 * _MS
    trace.status = np.array([status for _, status, _ in rows], dtype=np.int64)
    trace.error = np.array(
        [ERROR_CATEGORIES.index(c) if c else -1 for _, _, c in rows], dtype=np.int64
    )
    trace.operation = np.zeros(len(rows), dtype=np.int64)
    return trace


def _steady(start: float, end: float, status: int = 302, category: str = "") -> list:  # type: ignore[type-arg]
    return [(t, status, category) for t in np.arange(start, end, 0.01).round(3).tolist()]


@pytest.mark.parametrize(
    ("rows", "fault_s", "window", "first_failure", "first_success", "recovered", "categories"),
    [
        # Nothing failed: no window, the next request succeeds, P99 never left the target.
        (_steady(0, 4), 2.0, 0.0, None, 0.005, 0.0, {}),
        # Refused from 2.1 s to 2.9 s: the window is 0.8 s; recovery at the end of the
        # last half-second bucket holding a failure (3.0 s), 1 s after the fault.
        (
            _steady(0, 2.1) + _steady(2.1, 2.91, 0, "connect_refused") + _steady(2.91, 5),
            2.0,
            0.8,
            0.1,
            0.91,
            1.0,
            {"connect_refused": 81},
        ),
        # Still failing when the run ends: no success after the failures began, never recovered.
        (_steady(0, 2) + _steady(2, 4, 503), 1.0, 1.99, 1.0, None, None, {"http_503": 200}),
    ],
)
def test_measure_reads_window_recovery_and_categories_from_the_trace(
    rows: list,  # type: ignore[type-arg]
    fault_s: float,
    window: float,
    first_failure: float | None,
    first_success: float | None,
    recovered: float | None,
    categories: dict[str, int],
) -> None:
    figures = measure(_trace(rows), int(fault_s * _S), target_ms=10.0)
    assert figures["error_window_s"] == pytest.approx(window, abs=0.011)
    if first_failure is None:
        assert figures["first_failure_s"] is None
    else:
        assert figures["first_failure_s"] == pytest.approx(first_failure, abs=0.011)
    assert figures["first_success_s"] == (
        None if first_success is None else pytest.approx(first_success, abs=0.011)
    )
    assert figures["p99_recovered_s"] == (
        None if recovered is None else pytest.approx(recovered, abs=0.011)
    )
    assert figures["failed_by_category"] == categories


def test_slow_answers_after_the_fault_delay_the_p99_recovery() -> None:
    rows = _steady(0, 6)
    trace = _trace(rows)
    slow = (trace.done_ns >= 2 * _S) & (trace.done_ns < int(3.2 * _S))
    trace.intended_ns[slow] = trace.done_ns[slow] - 50 * _MS  # 50 ms, over a 10 ms target
    figures = measure(trace, 2 * _S, target_ms=10.0)
    assert figures["failed"] == 0
    assert figures["p99_recovered_s"] == pytest.approx(1.5)  # the 3.0-3.5 s bucket was slow
    assert figures["p99_before_ms"] == pytest.approx(5.0, abs=0.1)


@pytest.mark.parametrize(("apply", "confirm"), [(False, ""), (True, "wrong"), (True, "homelab")])
def test_a_drill_on_a_lab_other_than_the_sandbox_is_a_skip_that_says_why(
    apply: bool, confirm: str
) -> None:
    lab = load_lab(REPOSITORY / "params" / "homelab.yaml")
    outcome = run_drill(lab, "redis-master", apply=apply, confirm=confirm)
    assert outcome.status == "skip"
    if confirm == "homelab":
        assert "cluster layer" in outcome.reason
    else:
        assert "typed confirmation 'homelab'" in outcome.reason
    assert not outcome.ok


# -- real drills on a sandbox of this module's own ---------------------------------------------


@pytest.fixture(scope="module")
def drill_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    directory = tmp_path_factory.mktemp("drills")
    base = write_sandbox_params(directory, name="sandbox-drills")
    params = directory / "drills.yaml"
    # Short: 8 s of load at the 500 req/s, the fault 2.5 s in.
    params.write_text(
        yaml.safe_dump(
            {
                "extends": str(base),
                "drills": {"rate_rps": 500, "duration_s": 8, "fault_at_s": 2.5, "warmup_s": 1},
            }
        )
    )
    lab = load_lab(params)
    sandbox = Sandbox(lab)
    try:
        sandbox.up(progress=lambda message: None)
        yield lab
    finally:
        sandbox.down()


def test_redis_master_drill_fails_over_within_down_after_plus_2s_and_loses_no_create(
    drill_lab: Lab,
) -> None:
    outcome = run_drill(drill_lab, "redis-master", progress=lambda message: None)
    assert outcome.status == "done", outcome.reason
    measured, failover = outcome.measured, outcome.failover
    assert measured["requests"] >= 0.9 * 500 * 8
    assert measured["error_window_s"] <= drill_lab.redis.down_after_ms / 1000 + 2, outcome.summary()
    assert outcome.writes["acknowledged"] > 0 and outcome.writes["lost"] == 0, outcome.writes
    # Sentinel itself announced the new master, after its down-after period.
    assert failover["promoted_s"] is not None, failover
    assert failover["promoted_s"] >= drill_lab.redis.down_after_ms / 1000 * 0.9
    killed = outcome.fault["action"].split()[1]  # "redis-<port>"
    assert killed not in failover["evidence"].split()[-1]  # the new master is another node
    assert outcome.restored["ok"], outcome.restored
    assert any("now a replica" in action for action in outcome.restored["actions"])
    assert outcome.ok
    rows = outcome.timeline
    assert sum(row["requests"] for row in rows) == measured["requests"]


def test_postgres_primary_drill_reports_its_loss_and_promotion_and_restores_the_layout(
    drill_lab: Lab,
) -> None:
    outcome = run_drill(drill_lab, "postgres-primary", progress=lambda message: None)
    assert outcome.status == "done", outcome.reason
    failover, writes = outcome.failover, outcome.writes
    assert 0 < failover["detected_s"] <= failover["promoted_s"] < 30, failover
    assert failover["timeline_after"] > failover["timeline_before"], failover
    # The loss is measured, whatever it is: every acknowledged create was looked up.
    assert writes["acknowledged"] > 0 and not writes["problem"], writes
    assert writes["lost"] == len(writes["lost_codes"])
    assert outcome.measured["failed"] > 0  # writes and visits fail until the promotion
    assert outcome.restored["ok"], outcome.restored
    state = Sandbox(drill_lab).state_dir
    assert postgres.in_recovery(drill_lab, state, "primary") is False
    assert postgres.in_recovery(drill_lab, state, "standby") is True


def test_shortener_worker_drill_kills_one_worker_and_its_supervisor_replaces_it(
    drill_lab: Lab,
) -> None:
    outcome = run_drill(drill_lab, "shortener-worker", progress=lambda message: None)
    assert outcome.status == "done", outcome.reason
    assert "1 of 2" in outcome.fault["action"]  # the workers, not uvicorn's resource tracker
    assert outcome.failover["replaced_s"] is not None, outcome.failover
    assert outcome.writes["lost"] == 0, outcome.writes
    assert outcome.restored["ok"], outcome.restored


@pytest.mark.skipif(os.geteuid() != 0, reason="node-cut needs the sandbox's namespaces (root)")
def test_node_cut_drill_takes_a_node_off_its_link_and_back(drill_lab: Lab) -> None:
    outcome = run_drill(drill_lab, "node-cut", progress=lambda message: None)
    assert outcome.status == "done", outcome.reason
    failover = outcome.failover
    assert failover["unreachable_confirmed"] is True, failover
    assert failover["reachable_again_s"] >= drill_lab.drills.cut_s, failover
    assert outcome.restored["ok"], outcome.restored


def test_a_drill_refuses_to_start_on_a_broken_sandbox(tmp_path: Path) -> None:
    lab = load_lab(write_sandbox_params(tmp_path, name="sandbox-never-up"))
    with pytest.raises(Exception, match="not healthy"):
        run_drill(lab, "redis-master", progress=lambda message: None)


def test_a_lab_queueing_before_the_fault_is_said_to_be_saturated() -> None:
    trace = _trace(_steady(0, 4))
    assert measure(trace, 2 * _S, target_ms=10.0)["saturated_before_fault"] is False
    trace.intended_ns = trace.done_ns - 400 * _MS  # every answer 400 ms late: a backlog
    figures = measure(trace, 2 * _S, target_ms=10.0)
    assert figures["saturated_before_fault"] is True
    assert figures["p99_before_ms"] == pytest.approx(400, abs=1)
