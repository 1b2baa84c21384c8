"""The Grafana dashboards shipped as ConfigMaps: valid offline, every panel query valid PromQL."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from labkit.manifests import default_root, load_documents
from labkit.manifests.dashboards import check_dashboards, dashboard_uids, dashboards


def test_the_lab_ships_red_dashboards_for_shlink_redis_and_postgres() -> None:
    assert dashboard_uids() == ["labkit-shlink-red", "labkit-redis", "labkit-postgres"]
    documents, problems = load_documents(default_root())
    assert not problems
    assert check_dashboards(documents) == []


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_every_panel_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool checks expressions offline when they are recording rules: one per panel query.
    rules = [
        {"record": f"labkit:panel:{index}", "expr": target["expr"]}
        for index, target in enumerate(
            target
            for dashboard in dashboards()
            for panel in dashboard["panels"]
            for target in panel["targets"]
        )
    ]
    path = tmp_path / "panels.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    done = subprocess.run(
        ["promtool", "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(rules)} rules found" in done.stdout


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{not json", "not JSON"),
        ('{"title": "no uid", "panels": [{"targets": [{"expr": "up"}]}]}', "needs a uid"),
        ('{"uid": "x", "title": "empty"}', "no panels"),
        ('{"uid": "x", "title": "t", "panels": [{"targets": [{"expr": ""}]}]}', "without expr"),
        (
            '{"uid": "labkit-redis", "title": "t", "panels": [{"targets": [{"expr": "up"}]}]}',
            "also in",
        ),
    ],
)
def test_a_broken_dashboard_is_a_problem_naming_it(
    tmp_path: Path, entry: str, message: str
) -> None:
    root = tmp_path / "manifests"
    shutil.copytree(default_root() / "monitoring", root / "monitoring")
    broken = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "broken", "namespace": "monitoring",
                     "labels": {"grafana_dashboard": "1"}},
        "data": {"broken.json": entry},
    }  # fmt: skip
    (root / "monitoring" / "broken.yaml").write_text(yaml.safe_dump(broken))
    documents, _ = load_documents(root)
    problems = [str(problem) for problem in check_dashboards(documents)]
    assert len(problems) == 1
    assert "broken.yaml" in problems[0]  # the file, or the other file a duplicate uid is in
    assert message in problems[0]
