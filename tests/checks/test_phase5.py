"""Phase 5 checks, each in a passing and a failing state.

Prometheus/Alertmanager items against real ones: the session sandbox's (passing) and a bare
Prometheus that scrapes only itself, with no rules and no Alertmanager (failing). Grafana,
Jaeger and Kiali items against the loopback double of tests/observe_doubles.py, healthy
and broken.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from labkit.checks import run_checks
from labkit.checks.base import Status
from labkit.checks.phases import phase5
from labkit.params import Lab, load_lab
from labkit.sandbox import Sandbox, processes
from tests.conftest import write_sandbox_params
from tests.observe_doubles import ObservabilityDouble, homelab_on_double

pytestmark = pytest.mark.sandbox

METRICS_ITEMS = ["5.1.1", "5.1.4", "5.1.5", "5.1.6"]
CLUSTER_ITEMS = ["5.1.2", "5.1.3", "5.2.1", "5.2.2", "5.2.3", "5.2.4", "5.2.5"]
needs_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="prometheus not installed (see README)"
)


def _statuses(lab: Lab, ids: list[str]) -> dict[str, set[Status]]:
    found: dict[str, set[Status]] = {}
    for result in run_checks(lab, ids=ids):
        found.setdefault(result.id, set()).add(result.status)
    return found


@needs_prometheus
def test_metrics_items_pass_on_the_sandbox(sandbox: Sandbox, sandbox_lab: Lab) -> None:
    results = run_checks(sandbox_lab, ids=METRICS_ITEMS)
    bad = [f"{r.id} {r.subject}: {r.status} {r.observed}" for r in results if r.status != "pass"]
    assert not bad
    jobs = {result.subject for result in results.by_id("5.1.1")}
    assert {"shlink", "redis", "postgres", "prometheus", "alertmanager"} <= jobs
    assert "p50/p95/p99" in results.by_id("5.1.4")[0].observed
    assert "7/7 loaded" in results.by_id("5.1.6")[0].observed


def test_cluster_items_skip_on_the_sandbox_with_the_reason(sandbox_lab: Lab) -> None:
    results = run_checks(sandbox_lab, ids=CLUSTER_ITEMS)
    assert {result.status for result in results} == {Status.SKIP}
    assert all("Kubernetes" in result.observed for result in results)


def _scraped_itself(port: int) -> bool:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/api/v1/targets", trust_env=False)
    except httpx.HTTPError:
        return False
    targets = response.json()["data"]["activeTargets"] if response.status_code == 200 else []
    return any(target["health"] == "up" for target in targets)


@pytest.fixture
def bare_prometheus(tmp_path: Path) -> Iterator[Lab]:
    """A sandbox lab whose Prometheus is real but scrapes only itself: no rules, no Alertmanager."""
    lab = load_lab(write_sandbox_params(tmp_path, name="bare-prometheus"))
    assert lab.sandbox is not None
    state = lab.path(lab.sandbox.state_dir)
    port = lab.sandbox.monitoring.prometheus_port
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [
                    {
                        "job_name": "prometheus",
                        "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
                    }
                ],
            }
        )
    )
    managed = processes.start(
        "prometheus",
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        state,
    )
    try:
        processes.poll_until("bare prometheus", lambda: _scraped_itself(port), 30, managed)
        yield lab
    finally:
        processes.stop(managed)


@needs_prometheus
def test_metrics_items_fail_on_a_prometheus_that_sees_nothing_of_the_lab(
    bare_prometheus: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(phase5, "RED_WAIT_S", 2.0)
    results = run_checks(bare_prometheus, ids=METRICS_ITEMS)
    by_subject = {(r.id, r.subject): r for r in results}
    # The jobs the sandbox must have are reported missing; Prometheus' own target is up.
    for job in ("shlink", "redis", "postgres"):
        assert by_subject[("5.1.1", job)].status == Status.FAIL
        assert by_subject[("5.1.1", job)].observed == "no target"
    assert by_subject[("5.1.1", "prometheus")].status == Status.PASS
    red = by_subject[("5.1.4", "")]
    assert red.status == Status.FAIL
    assert "rate no data" in red.observed
    assert by_subject[("5.1.5", "redis")].status == Status.FAIL
    assert by_subject[("5.1.5", "postgres")].status == Status.FAIL
    alerts = by_subject[("5.1.6", "")]
    assert alerts.status == Status.FAIL
    assert "0/7 loaded" in alerts.observed
    assert "RedisNotExactlyOneMaster" in alerts.observed
    assert "alertmanagers: none" in alerts.observed


def test_metrics_items_skip_when_the_sandbox_prometheus_is_not_running(tmp_path: Path) -> None:
    lab = load_lab(write_sandbox_params(tmp_path, name="no-prometheus"))
    results = run_checks(lab, ids=METRICS_ITEMS)
    assert {result.status for result in results} == {Status.SKIP}
    assert "prometheus is not running" in results.by_id("5.1.1")[0].observed


@pytest.fixture
def double_lab(tmp_path: Path) -> Iterator[tuple[ObservabilityDouble, Lab]]:
    with homelab_on_double(tmp_path) as (double, params):
        yield double, load_lab(params)


@pytest.mark.parametrize(
    ("item", "healthy_observed", "broken", "broken_observed"),
    [
        ("5.1.2", "database ok", {"grafana"}, "database failing"),
        ("5.1.2", "OK: Successfully queried", {"grafana"}, "ERROR: Post"),
        ("5.1.3", "found labkit-shlink-red", {"dashboards"}, "missing labkit-redis"),
        ("5.1.3", "12.5 requests/s", {"prometheus"}, "no data"),
        ("5.2.1", "shlink.shlink", {"services"}, "jaeger-all-in-one"),
        (
            "5.2.2",
            "4 span(s) from istio-ingressgateway.istio-system, shlink.shlink",
            {"trace"},
            "does not hold",
        ),
        ("5.2.3", "shlink -> postgres: yes", {"kiali"}, "shlink -> postgres: MISSING"),
        ("5.2.4", "istio-ingressgateway.istio-system 4.20 ms", {"trace"}, "does not hold"),
        ("5.2.5", "postgresql SELECT 2.10 ms", {"traces"}, "0 store span(s)"),
    ],
)
def test_cluster_items_pass_healthy_and_fail_broken(
    double_lab: tuple[ObservabilityDouble, Lab],
    monkeypatch: pytest.MonkeyPatch,
    item: str,
    healthy_observed: str,
    broken: set[str],
    broken_observed: str,
) -> None:
    double, lab = double_lab
    monkeypatch.setattr(phase5, "TRACE_WAIT_S", 1.0)
    healthy = run_checks(lab, ids=[item])
    assert {r.status for r in healthy} == {Status.PASS}, [r.observed for r in healthy]
    assert healthy_observed in " ".join(r.observed for r in healthy)
    double.broken = broken
    broken = run_checks(lab, ids=[item])
    assert Status.FAIL in {r.status for r in broken}, [r.observed for r in broken]
    assert broken_observed in " ".join(r.observed for r in broken)


def test_a_traced_request_carries_the_trace_id_labkit_chose(
    double_lab: tuple[ObservabilityDouble, Lab],
) -> None:
    double, lab = double_lab
    result = run_checks(lab, ids=["5.2.2"]).by_id("5.2.2")[0]
    (header,) = double.traceparents
    version, trace_id, span_id, flags = header.split("-")
    assert (version, len(trace_id), len(span_id), flags) == ("00", 32, 16, "01")
    assert trace_id in result.expected
    assert f"/api/traces/{trace_id}" in result.evidence


def test_an_api_that_does_not_answer_is_an_error_naming_it(tmp_path: Path) -> None:
    with homelab_on_double(tmp_path) as (double, params):
        lab = load_lab(params)
    # The double is gone: nothing listens at its address any more.
    result = run_checks(lab, ids=["5.1.2"]).by_id("5.1.2")[0]
    assert result.status == Status.ERROR
    assert f"grafana {double.url}/api/health" in result.observed


def test_homelab_without_urls_skips_with_the_params_to_set() -> None:
    lab = load_lab(Path(__file__).resolve().parents[2] / "params" / "homelab.yaml")
    results = run_checks(lab, ids=["5.1.1", "5.1.2", "5.2.1", "5.2.3"])
    assert {result.status for result in results} == {Status.SKIP}
    assert "observability.prometheus_url is empty" in results.by_id("5.1.1")[0].observed
    assert "observability.kiali_url is empty" in results.by_id("5.2.3")[0].observed
