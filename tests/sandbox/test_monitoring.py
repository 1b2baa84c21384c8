"""The sandbox's monitoring: real Prometheus, Alertmanager and exporters, supervised with it."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from labkit.observe import Alertmanager, Prometheus
from labkit.params import Lab, load_lab
from labkit.sandbox import Sandbox, monitoring, processes, redis
from tests.conftest import write_sandbox_params

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(
        shutil.which("prometheus") is None, reason="prometheus not installed (see README)"
    ),
]


def test_status_lists_every_monitoring_part_with_its_url(
    sandbox: Sandbox, sandbox_lab: Lab
) -> None:
    status = sandbox.status()
    parts = {entry["name"]: entry for entry in status["components"] if entry.get("url")}
    assert {"prometheus", "alertmanager", "redis-exporter"} <= set(parts)
    exporters = [name for name in parts if name.startswith("postgres-exporter-")]
    assert len(exporters) == 2
    assert parts["prometheus"]["url"] == monitoring.prometheus_url(sandbox_lab)
    assert all(entry["healthy"] and entry["pid"] for entry in parts.values()), parts
    if any(node["isolated"] for node in status["components"] if node["kind"] == "node"):
        assert len([name for name in parts if name.startswith("node-exporter-")]) == 3
    assert status["skipped"] == [] or all(entry["reason"] for entry in status["skipped"])


def test_prometheus_loads_the_manifests_rules_and_scrapes_with_lab_labels(
    sandbox: Sandbox, sandbox_lab: Lab
) -> None:
    with Prometheus(sandbox_lab, monitoring.prometheus_url(sandbox_lab)) as prometheus:
        rules = {rule["alert"] for rule in prometheus.rules()}
        assert "RedisNotExactlyOneMaster" in rules
        assert len(rules) == 7
        masters = prometheus.query('redis_instance_info{namespace="redis", role="master"}')
        assert [s.labels["instance"] for s in masters] == [
            f"{sandbox_lab.redis.host}:{sandbox_lab.redis.port}"
        ]
        primaries = prometheus.query('ccp_is_in_recovery_status{namespace="postgres"} == 2')
        assert len(primaries) == 1
        assert prometheus.alertmanagers()


@pytest.mark.parametrize(
    ("missing", "skipped", "still_runs"),
    [
        ("prometheus-alertmanager", "alertmanager", "prometheus"),
        ("prometheus-redis-exporter", "redis-exporter", "prometheus"),
        ("prometheus", "prometheus", "alertmanager"),
    ],
)
def test_a_package_not_installed_is_skipped_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, missing: str, skipped: str, still_runs: str
) -> None:
    lab = load_lab(write_sandbox_params(tmp_path))
    found = monitoring._binary
    monkeypatch.setattr(monitoring, "_binary", lambda p: None if p == missing else found(p))
    running, skips = monitoring.components(lab, tmp_path / "state")
    names = [component.name for component in running]
    assert skipped not in names
    assert still_runs in names
    (entry,) = [entry for entry in skips if entry["name"] == skipped]
    assert f"apt-get install -y {missing}" in entry["reason"]
    if skipped != "prometheus":
        config = next(c for c in running if c.name == "prometheus").files
        text = next(t for p, t in config.items() if p.name == "prometheus.yml")
        jobs = [job["job_name"] for job in yaml.safe_load(text)["scrape_configs"]]
        assert {"alertmanager": "alertmanager", "redis-exporter": "redis"}[skipped] not in jobs


def test_disabled_monitoring_starts_nothing(tmp_path: Path) -> None:
    lab = load_lab(write_sandbox_params(tmp_path))
    assert lab.sandbox is not None
    settings = lab.sandbox.monitoring.model_copy(update={"enabled": False})
    lab = lab.model_copy(
        update={"sandbox": lab.sandbox.model_copy(update={"monitoring": settings})}
    )
    running, skips = monitoring.components(lab, tmp_path / "state")
    assert running == []
    assert skips == [{"name": "monitoring", "reason": "sandbox.monitoring.enabled is false"}]


@pytest.fixture(scope="module")
def redis_watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Path]]:
    """Redis (master, replicas, Sentinels) and the monitoring of a lab of this test's own."""
    directory = tmp_path_factory.mktemp("watched")
    lab = load_lab(write_sandbox_params(directory, name="watched"))
    assert lab.sandbox is not None
    state = lab.path(lab.sandbox.state_dir)
    try:
        redis.start_redis(lab, state, progress=lambda message: None)
        monitoring.start_monitoring(lab, state, progress=lambda message: None)
        yield lab, state
    finally:
        monitoring.stop_monitoring(lab, state)
        redis.stop_redis(lab, state)


def _alert_states(prometheus: Prometheus) -> dict[str, str]:
    return {alert["alert"]: alert["state"] for alert in prometheus.alerts()}


def test_killing_the_redis_master_makes_its_alerts_go_pending(
    redis_watched: tuple[Lab, Path],
) -> None:
    lab, state = redis_watched
    with Prometheus(lab, monitoring.prometheus_url(lab)) as prometheus:
        # Until the first scrapes and an evaluation after them, "no series" counts as 0
        # (the rules end in `or vector(0)`), so alerts may be pending: wait for a quiet lab.
        deadline = time.monotonic() + 60
        while "RedisReplicasMissing" in _alert_states(prometheus):
            assert time.monotonic() < deadline, "RedisReplicasMissing never cleared before the kill"
            time.sleep(0.5)
        assert processes.stop(redis.managed(state, f"redis-{lab.redis.port}"))
        seen: dict[str, str] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            seen |= _alert_states(prometheus)
            if seen.get("RedisReplicasMissing") in {"pending", "firing"}:
                break
            time.sleep(0.5)
        # With the master gone, the master the Sentinels promote has one replica, not two.
        assert seen.get("RedisReplicasMissing") in {"pending", "firing"}, seen
        down = prometheus.query(f'redis_up{{instance="127.0.0.1:{lab.redis.port}"}}')
        assert [sample.value for sample in down] == [0.0]
    with Alertmanager(lab, monitoring.alertmanager_url(lab)) as alertmanager:
        assert alertmanager.ready()


def test_down_leaves_no_monitoring_process(redis_watched: tuple[Lab, Path]) -> None:
    lab, state = redis_watched
    pids = [entry["pid"] for entry in monitoring.monitoring_status(lab, state)]
    assert pids and all(pids)
    monitoring.stop_monitoring(lab, state)
    assert all(not processes.alive(pid) for pid in pids)
    assert monitoring.monitoring_status(lab, state) == []
