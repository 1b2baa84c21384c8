"""The four scenarios against this session's sandbox (short, low-rate steps)."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from labkit.errors import NotAllowed
from labkit.load.result import LoadResult
from labkit.load.scenarios import _Flusher, _forget, knee_reason, run_scenario
from labkit.load.verdict import Verdict
from labkit.params import Lab, Ladder, load_lab
from labkit.sandbox import Sandbox

pytestmark = pytest.mark.sandbox


def _quiet(message: str) -> None:
    del message


def test_redirect_hit_serves_from_the_cache_and_judges_the_targets(
    sandbox: Sandbox, sandbox_lab: Lab
) -> None:
    outcome = run_scenario(
        sandbox_lab, "redirect-hit", rates=[100], duration_s=1, warmup_s=0.5, progress=_quiet
    )
    (step,) = outcome.steps
    data = step.to_dict()
    assert data["status_codes"] == {"302": 100}
    assert data["server"]["redis"]["hit_ratio"] > 0.9
    assert {row["component"] for row in data["server"]["processes"]} >= {"shortener"}
    assert data["server"]["redis"]["probe_us"]["count"] > 0
    assert data["server"]["postgres"]["probe_ms"]["count"] > 0
    targets = {verdict.target for verdict in outcome.verdicts}
    assert {"redirect P99 (cache hit)", "cache-hit ratio", "error rate"} <= targets


def test_redirect_miss_really_misses_the_cache(sandbox: Sandbox, sandbox_lab: Lab) -> None:
    outcome = run_scenario(
        sandbox_lab,
        "redirect-miss",
        rates=[100],
        duration_s=1,
        warmup_s=0,
        cold_codes=150,
        progress=_quiet,
    )
    data = outcome.steps[0].to_dict()
    assert data["status_codes"] == {"302": 100}
    assert data["server"]["redis"]["hit_ratio"] < 0.5, data["server"]["redis"]


def test_create_and_mixed_send_the_right_operations(sandbox: Sandbox, sandbox_lab: Lab) -> None:
    create = run_scenario(
        sandbox_lab, "create", rates=[50], duration_s=1, warmup_s=0, progress=_quiet
    ).steps[0]
    assert create.to_dict()["operations"]["create"]["status_codes"] == {"200": 50}
    mixed = run_scenario(
        sandbox_lab, "mixed", rates=[202], duration_s=1, warmup_s=0, progress=_quiet
    ).steps[0]
    operations = mixed.to_dict()["operations"]
    assert operations["redirect"]["status_codes"] == {"302": 200}
    assert operations["create"]["status_codes"] == {"200": 2}


def test_a_shlink_outside_the_allow_list_is_refused_before_any_request(
    sandbox_params_lab: Lab,
) -> None:
    elsewhere = sandbox_params_lab.model_copy(
        update={
            "shlink": sandbox_params_lab.shlink.model_copy(
                update={"base_url": "http://10.99.0.7:8080"}
            )
        }
    )
    with pytest.raises(NotAllowed, match="outside the allow-list"):
        run_scenario(elsewhere, "redirect-hit", rates=[10], duration_s=1, progress=_quiet)


def test_a_failing_cache_flush_is_reported_not_swallowed() -> None:
    """The miss scenario's flusher says when it could not delete keys (nothing listens here)."""

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    local = load_lab(Path(__file__).resolve().parents[2] / "params" / "local.yaml")
    lab = local.model_copy(
        update={"redis": local.redis.model_copy(update={"port": port, "sentinel_ports": []})}
    )
    assert "ConnectionError" in _forget(lab, ("abc",))
    flusher = _Flusher(lab, ("abc",), every_s=0.05)
    with flusher:
        deadline = time.monotonic() + 5
        while not flusher.failures and time.monotonic() < deadline:
            time.sleep(0.01)
    assert flusher.problem().startswith("cache flush failed")
    assert "may have measured cache hits" in flusher.problem()


def _with_targets(lab: Lab, **targets: object) -> Lab:
    return lab.model_copy(update={"targets": lab.targets.model_copy(update=targets)})


@pytest.mark.parametrize(
    ("ladder", "rates"),
    [
        (Ladder(start_rps=100, factor=2, max_rps=1600, max_steps=5), [100, 200, 400, 800, 1600]),
        (Ladder(start_rps=100, factor=2, max_rps=1000, max_steps=9), [100, 200, 400, 800]),
        (Ladder(start_rps=50, factor=1.5, max_rps=1e6, max_steps=3), [50, 75, 112.5]),
    ],
)
def test_the_ladder_climbs_by_its_factor_within_its_bounds(
    ladder: Ladder, rates: list[float]
) -> None:
    assert ladder.rates() == rates


def _step(achieved: float, limited: bool = False) -> LoadResult:
    fields: Any = SimpleNamespace(
        achieved_rps=achieved, generator_limited=limited, generator_reason="lag p99 40 ms"
    )
    return cast(LoadResult, fields)


_HELD = Verdict("create", 800, "error rate", "< 1%", "0.00%", True)
_BROKE = Verdict("create", 800, "create P99", "< 50 ms", "90 ms", False)


@pytest.mark.parametrize(
    ("result", "verdicts", "reason"),
    [
        (_step(800), [_HELD], ""),
        (_step(761), [_HELD], ""),  # 95.1%: kept
        # Kept 90% with every target held: it was a "good" step below the knee, and 6.1.4 then
        # failed it as not sustained (seen in a full run on a busy machine: 724 of 800/s).
        (_step(724), [_HELD], "the lab answered 724 req/s (under 95%)"),
        (_step(724, limited=True), [_HELD], "the generator was the limit (lag p99 40 ms)"),
        (_step(800), [_BROKE], "create P99 90 ms (target < 50 ms)"),
    ],
)
def test_a_step_is_the_knee_when_a_target_breaks_or_the_rate_is_not_kept(
    result: LoadResult, verdicts: list[Verdict], reason: str
) -> None:
    assert knee_reason(800, result, verdicts) == reason


def test_the_ladder_stops_at_the_knee_where_a_target_breaks(
    sandbox: Sandbox, sandbox_lab: Lab
) -> None:
    # A PostgreSQL write target no real step can meet (judged even when the generator lags):
    # the first step is the knee.
    lab = _with_targets(
        sandbox_lab,
        ladder=Ladder(start_rps=50, factor=2, max_steps=4, max_total_s=60),
        postgres_write_p99_ms=(0.0, 0.0001),
    )
    outcome = run_scenario(lab, "redirect-hit", duration_s=1, warmup_s=0.2, progress=_quiet)
    assert [step.result.target_rps for step in outcome.steps] == [50]
    assert outcome.stopped.startswith("the knee: at 50/s")
    assert "PostgreSQL write P99 (probe)" in outcome.stopped
    assert outcome.highest_good_rate is None
    assert all(entry["climbing"] for entry in outcome.to_dicts())


def test_the_ladder_keeps_climbing_while_targets_hold_until_its_time_budget(
    sandbox: Sandbox, sandbox_lab: Lab
) -> None:
    # Targets nothing on this machine breaks at these rates; the time budget ends the climb,
    # unless this (shared, busy) machine made the generator the limit first: then it stops there.
    lab = _with_targets(
        sandbox_lab,
        ladder=Ladder(start_rps=20, factor=2, max_steps=6, max_total_s=2.5),
        redirect_p99_ms=60_000,
        cache_hit_ratio=0.01,
        redis_latency_us=(0, 60_000_000),
        postgres_write_p99_ms=(0, 60_000),
    )
    outcome = run_scenario(lab, "redirect-hit", duration_s=1, warmup_s=0.2, progress=_quiet)
    rates = [step.result.target_rps for step in outcome.steps]
    limited = [step.result.generator_limited for step in outcome.steps]
    assert rates in ([20], [20, 40]), outcome.verdict_text()
    if limited[-1]:
        assert "the generator was the limit" in outcome.stopped
        assert not any(limited[:-1])
    else:
        assert rates == [20, 40]
        assert "time budget (2.5s per scenario) ends before 80/s" in outcome.stopped
        assert outcome.highest_good_rate == 40
    # The Redis target was judged on Redis's own figures (INFO latencystats), the probe beside.
    server = outcome.steps[0].server["redis"]
    assert server["server_latency_us"]["get"]["p99"] > 0
    targets = {v.target: v.status for v in outcome.verdicts if v.rate == 20}
    assert targets["Redis latency P99 (server, INFO latencystats)"] == "pass"
    assert targets["Redis round trip P99 (client probe, context)"].startswith("n/a (context")
