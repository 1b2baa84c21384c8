"""The alert rules of manifests/monitoring tested like code: promtool check + promtool test."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from labkit.errors import ConfigError
from labkit.manifests.rules import alert_names, monitoring_dir, rule_groups, write_rule_file

REPOSITORY = Path(__file__).resolve().parent.parent
TESTS = REPOSITORY / "tests" / "data" / "promtool" / "alerts.test.yaml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian package prometheus; see README)"
)


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def _workspace(tmp_path: Path, root: Path | None = None) -> Path:
    """The extracted rule file and a copy of the unit tests side by side (as rule_files says)."""
    write_rule_file(tmp_path / "alerts.rules.yaml", root)
    shutil.copy(TESTS, tmp_path / TESTS.name)
    return tmp_path


def test_rule_groups_come_from_the_prometheusrule() -> None:
    names = alert_names()
    assert "RedisNotExactlyOneMaster" in names
    assert len(names) == len(set(names)) == 7
    assert [group["name"] for group in rule_groups()] == [
        "url-shortener.targets",
        "url-shortener.data",
    ]


def test_no_prometheusrule_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "monitoring").mkdir()
    (tmp_path / "monitoring" / "x.yaml").write_text("kind: ServiceMonitor\n")
    with pytest.raises(ConfigError, match="no PrometheusRule"):
        rule_groups(tmp_path)


def test_every_alert_has_a_firing_promtool_case() -> None:
    cases = yaml.safe_load(TESTS.read_text())["tests"]
    firing = {
        case["alertname"]
        for test in cases
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    quiet = {
        case["alertname"]
        for test in cases
        for case in test.get("alert_rule_test", [])
        if not case.get("exp_alerts")
    }
    missing = set(alert_names()) - firing
    assert not missing, f"alerts without a promtool case that makes them fire: {sorted(missing)}"
    assert not set(alert_names()) - quiet, "every alert also needs a case where it stays quiet"


@needs_promtool
def test_promtool_check_rules(tmp_path: Path) -> None:
    done = _promtool("check", "rules", "alerts.rules.yaml", cwd=_workspace(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(alert_names())} rules found" in done.stdout


@needs_promtool
def test_promtool_test_rules(tmp_path: Path) -> None:
    done = _promtool("test", "rules", TESTS.name, cwd=_workspace(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@needs_promtool
@pytest.mark.parametrize(
    ("alert", "broken"),
    [
        ("RedisNotExactlyOneMaster", 'count(redis_instance_info{namespace="redis"}) != 1'),
        ("RedisCacheHitRatioLow", "vector(1) < 0.95"),
        ("PostgresNotExactlyOnePrimary", 'count(ccp_is_in_recovery_status{namespace="x"}) != 1'),
    ],
)
def test_a_rule_that_no_longer_fires_fails_the_unit_tests(
    tmp_path: Path, alert: str, broken: str
) -> None:
    root = tmp_path / "manifests"
    shutil.copytree(monitoring_dir(), root / "monitoring")
    path = root / "monitoring" / "alerts.yaml"
    document = yaml.safe_load(path.read_text())
    for group in document["spec"]["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == alert:
                rule["expr"] = broken
    path.write_text(yaml.safe_dump(document))
    workspace = tmp_path / "work"
    workspace.mkdir()
    done = _promtool("test", "rules", TESTS.name, cwd=_workspace(workspace, root))
    assert done.returncode != 0
    assert f"alertname: {alert}" in done.stdout + done.stderr
