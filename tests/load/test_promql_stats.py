"""Phase 6 server figures from the sandbox's real Prometheus over a window of real traffic."""

from __future__ import annotations

import secrets
import shutil
import time
from pathlib import Path

import httpx
import pytest

from labkit.load.promql_stats import window_figures
from labkit.params import Lab, load_lab
from labkit.sandbox import Sandbox

pytestmark = pytest.mark.sandbox


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus not installed")
def test_figures_over_a_window_of_traffic(sandbox: Sandbox, sandbox_lab: Lab) -> None:
    start = time.time()
    with httpx.Client(base_url=sandbox_lab.shlink.base_url, trust_env=False) as http:
        # Unknown codes (a cache miss, a PostgreSQL look-up, an orphan visit), paced over 4 s
        # so several 1 s scrapes fall inside the traffic, as they do inside a load step.
        for _ in range(40):
            assert http.get(f"/labkit-promql-{secrets.token_hex(4)}").status_code == 404
            time.sleep(0.1)
    wanted = ("hit_ratio", "redis_us_per_command", "postgres_ms_per_transaction")
    deadline = time.monotonic() + 30
    while True:
        time.sleep(1.0)  # the scrapes after the traffic (1 s interval in tests)
        figures = window_figures(sandbox_lab, start, time.time())
        if all(figures.get(name) is not None for name in wanted) or time.monotonic() > deadline:
            break
    assert "skipped" not in figures, figures
    assert figures["hit_ratio"] is not None and 0 <= figures["hit_ratio"] <= 1
    assert figures["redis_us_per_command"] > 0
    assert figures["postgres_ms_per_transaction"] > 0
    components = {row["component"] for row in figures["components"]}
    assert f"{sandbox_lab.redis.host}:{sandbox_lab.redis.port}" in components
    assert "prometheus" in components
    assert "redis_keyspace_hits_total" in figures["queries"]["hit_ratio"]


def test_a_lab_without_prometheus_says_why() -> None:
    homelab = load_lab(Path(__file__).resolve().parents[2] / "params" / "homelab.yaml")
    figures = window_figures(homelab, time.time() - 10, time.time())
    assert figures == {
        "skipped": "params observability.prometheus_url is empty: set the prometheus URL to "
        "check it"
    }
