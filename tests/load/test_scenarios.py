"""The four scenarios against this session's sandbox (short, low-rate steps)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from labkit.errors import NotAllowed
from labkit.load.scenarios import _Flusher, _forget, run_scenario
from labkit.params import Lab, load_lab
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
