"""Phases 2 and 3 plan and apply as ArgoCD syncs, against the API double.

Modelled: ArgoCD's application controller is a scripted hook (``ArgoSync``): when an
Application gets an ``operation``, a moment later it writes the status the sync ends
in (Synced/Healthy, or ``ends_in``) and removes the operation, as the controller does.
Real: the official client over HTTP, the server-side apply of ``operation``, the reads.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from labkit import plan
from labkit.cli import main
from labkit.cluster.sync import PHASE_APPLICATIONS, phase_applications
from labkit.errors import StepError
from labkit.params import Lab
from tests.kubeapi import KubeApi, Store, fixtures

APP_VERSION = "argoproj.io/v1alpha1"


class ArgoSync:
    """After an ``operation`` is written: the Application's status as the sync leaves it."""

    def __init__(self, ends_in: tuple[str, str] = ("Synced", "Healthy")) -> None:
        self.ends_in = ends_in
        self.synced: list[str] = []

    def __call__(self, store: Store, verb: str, data: dict[str, Any]) -> None:
        if verb != "apply" or data.get("kind") != "Application" or "operation" not in data:
            return
        name, namespace = data["metadata"]["name"], data["metadata"]["namespace"]
        self.synced.append(name)

        def finish() -> None:
            status = fixtures.application(name, *self.ends_in)["status"]
            store.update_status(APP_VERSION, "Application", namespace, name, status)
            with store.lock:
                store.objects[("argoproj.io", "applications", namespace, name)].pop(
                    "operation", None
                )

        timer = threading.Timer(0.5, finish)
        timer.daemon = True
        timer.start()


@pytest.fixture
def argo(api: KubeApi) -> ArgoSync:
    for name in ("external-secrets", "secret-stores"):  # healthy_lab holds the other children
        api.store.put(fixtures.application(name))
    fixtures.application_degraded(api.store, "redis")
    controller = ArgoSync()
    api.store.hooks.append(controller)
    return controller


def test_the_phases_applications_come_from_the_manifests_in_sync_wave_order() -> None:
    assert phase_applications("2") == [
        (0, "external-secrets"),
        (0, "postgres-operator"),
        (2, "postgres-cluster"),
        (2, "redis"),
        (2, "secret-stores"),
    ]
    assert phase_applications("3") == [(3, "shlink")]
    assert set(PHASE_APPLICATIONS) == {"2", "3"}


def test_plan_phase_2_lists_its_applications_and_what_argocd_would_change(
    api: KubeApi, argo: ArgoSync, lab: Lab
) -> None:
    result = plan.diff(lab, phase="2")
    steps = [entry.step for entry in result.entries]
    assert steps[0] == "Application argocd/external-secrets (wave 0)" and len(steps) == 5
    assert result.pending == 1
    (change,) = result.changes()[next(iter(result.nodes))]
    assert change["step"] == "Application argocd/redis (wave 2)"
    assert "OutOfSync/Degraded" in change["change"]
    assert "Deployment redis/redis (OutOfSync, Degraded)" in change["change"]
    assert change["argv"].startswith("argocd app sync redis")
    assert api.requests("PATCH") == [] and argo.synced == []  # a plan writes nothing


def test_apply_phase_2_syncs_exactly_the_out_of_sync_application_and_re_plans(
    api: KubeApi, argo: ArgoSync, lab: Lab
) -> None:
    lines: list[str] = []
    after = plan.apply(lab, phase="2", progress=lines.append)
    assert argo.synced == ["redis"]
    (patch,) = api.requests("PATCH")
    body = json.loads(patch.body) if isinstance(patch.body, (bytes, str)) else patch.body
    assert patch.path.endswith("/applications/redis")
    assert body["operation"]["sync"]["revision"] == "main"
    assert after.pending == 0 and len(after.evidence) == 1 and after.evidence[0].applied
    assert any("Synced/Healthy" in line for line in lines)  # the wait's progress


def test_a_sync_that_leaves_the_application_degraded_fails_naming_it(
    api: KubeApi, tmp_path: Path
) -> None:
    fixtures.application_degraded(api.store, "shlink")
    api.store.hooks.append(ArgoSync(ends_in=("Synced", "Degraded")))
    lab = api.lab(tmp_path / "lab", cluster={"wait_timeout_s": 3})
    with pytest.raises(StepError, match=r"shlink.*waited 3s for Application shlink Synced"):
        plan.apply(lab, phase="3", progress=lambda _: None)


def test_an_application_the_root_app_has_not_created_cannot_be_synced(
    api: KubeApi, lab: Lab
) -> None:
    result = plan.diff(lab, phase="2")  # external-secrets and secret-stores are absent
    cannot = [row["step"] for rows in result.cannot().values() for row in rows]
    assert cannot == [
        "Application argocd/external-secrets (wave 0)",
        "Application argocd/secret-stores (wave 2)",
    ]


def test_labkit_plan_phase_3_prints_the_shlink_application(
    api: KubeApi, argo: ArgoSync, lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fixtures.application_degraded(api.store, "shlink")
    params = api.params(tmp_path / "lab")
    assert main(["plan", "--params", str(params), "--phase", "3"]) == 0
    out = capsys.readouterr().out
    assert "sync shlink: OutOfSync/Degraded" in out and "1 change(s)" in out


def test_the_notebook_confirm_flow_applies_the_phase_2_plan_unchanged(
    api: KubeApi, argo: ArgoSync, lab: Lab
) -> None:
    from labkit import notebook

    planned = plan.diff(lab, phase="2")
    confirmed = notebook.confirm(lab, planned, True)  # headless: applies at once
    assert confirmed.error is None and confirmed.result is not None
    assert confirmed.result.pending == 0 and argo.synced == ["redis"]
