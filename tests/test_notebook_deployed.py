"""notebook.deployed: the ArgoCD Applications of phase 2 / 3, waited for; skip on the sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit import notebook
from labkit.errors import WaitTimeout
from labkit.params import load_lab
from tests.kubeapi import KubeApi, data_lab, fixtures

LOCAL = Path(__file__).resolve().parents[1] / "params" / "local.yaml"


@pytest.fixture
def api() -> Iterator[KubeApi]:
    with KubeApi() as double:
        data_lab.data_lab(double.store)
        yield double


def test_on_the_sandbox_it_says_skip_and_what_stands_in() -> None:
    shown = notebook.deployed(load_lab(LOCAL), "2", wait=True)
    assert repr(shown).startswith("skip: the sandbox has no Kubernetes API")
    assert "postgres-operator, postgres-cluster, redis" in repr(shown)
    assert "Sentinels" in shown._repr_html_()


@pytest.mark.parametrize(
    ("phase", "apps"),
    [
        ("2", ["postgres-cluster", "postgres-operator", "redis"]),
        ("3", ["external-secrets", "secret-stores", "shlink"]),
    ],
)
def test_it_shows_the_phase_applications(
    api: KubeApi, tmp_path: Path, phase: str, apps: list[str]
) -> None:
    shown = notebook.deployed(api.lab(tmp_path), phase)
    assert [row["name"] for row in shown] == apps
    assert "postgres-cluster" in shown.text() or phase == "3"


def test_wait_returns_once_a_degraded_app_recovers(api: KubeApi, tmp_path: Path) -> None:
    fixtures.application_degraded(api.store, "redis")
    healthy = data_lab._application("redis", [("apps", "StatefulSet", "redis", "redis")])
    api.schedule(1.0, lambda store: store.put(healthy))
    shown = notebook.deployed(api.lab(tmp_path), "2", wait=True)
    assert not shown.unhealthy


def test_wait_times_out_naming_the_failing_app(api: KubeApi, tmp_path: Path) -> None:
    fixtures.application_degraded(api.store, "shlink")
    lab = api.lab(tmp_path, cluster={"wait_timeout_s": 1})
    with pytest.raises(WaitTimeout, match=r"shlink OutOfSync/Degraded") as raised:
        notebook.deployed(lab, "3", wait=True)
    assert "Deployment shlink/shlink" in str(raised.value)
