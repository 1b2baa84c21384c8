"""Phase 1.5 against the double: plan lists ArgoCD's objects, apply converges, apps are read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit import gitops
from labkit import plan as planner
from labkit.cli import main
from labkit.cluster import Cluster
from labkit.errors import WaitTimeout
from labkit.params import Lab, load_lab
from labkit.secrets import MASK, redact
from tests.kubeapi import KubeApi, fixtures

INSTALL = Path(__file__).resolve().parent.parent / "data" / "argocd-install.yaml"


@pytest.fixture
def bare() -> Iterator[KubeApi]:
    """A double holding a lab after phase 1.3 (no ArgoCD), with scripted controllers."""
    with KubeApi() as double:
        fixtures.k3s_only(double.store)
        double.store.hooks.append(fixtures.Controllers())
        yield double


def _params(api: KubeApi, directory: Path, **argocd: object) -> Path:
    return api.params(directory, argocd={"install_manifest": str(INSTALL), **argocd})


def _writes(api: KubeApi) -> list[str]:
    return [
        f"{r.method} {r.path}"
        for r in api.requests()
        if r.method in {"POST", "PUT", "DELETE"}
        or (r.method == "PATCH" and r.query.get("dryRun") != "All")
    ]


def test_plan_lists_argocd_objects_to_create_and_writes_nothing(
    bare: KubeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = _params(bare, tmp_path)
    assert main(["plan", "--params", str(params), "--phase", "1.5"]) == 0
    out = capsys.readouterr().out
    for wanted in (
        "create Namespace argocd",
        "create CustomResourceDefinition applications.argoproj.io",
        "create Deployment argocd/argocd-server",
        "create StatefulSet argocd/argocd-application-controller",
        "create Secret argocd/labkit-gitops-repo",
        "create ConfigMap argocd/argocd-cm",
        "server-side apply (fieldManager=labkit-bootstrap)",
        "create Application argocd/root",
    ):
        assert wanted in out
    assert "double-lab: 17 change(s)" in out
    assert _writes(bare) == []


def test_apply_then_plan_lists_nothing_and_a_second_apply_changes_nothing(
    bare: KubeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = str(_params(bare, tmp_path))
    assert main(["apply", "--params", params, "--phase", "1.5"]) == 0
    out = capsys.readouterr().out
    assert "applied 17 change(s); re-check: nothing left" in out
    writes = _writes(bare)
    assert len(writes) == 17
    assert all(w.startswith("PATCH ") for w in writes)  # server-side apply, nothing else
    assert main(["plan", "--params", params, "--phase", "1.5"]) == 0
    assert "double-lab: 0 change(s)" in capsys.readouterr().out
    versions = {k: v["metadata"]["resourceVersion"] for k, v in bare.store.objects.items()}
    assert main(["apply", "--params", params, "--phase", "1.5"]) == 0
    assert "applied 0 change(s)" in capsys.readouterr().out
    assert len(_writes(bare)) == 17
    after = {k: v["metadata"]["resourceVersion"] for k, v in bare.store.objects.items()}
    assert after == versions


def test_what_apply_made(bare: KubeApi, tmp_path: Path) -> None:
    lab = bare.lab(tmp_path, argocd={"install_manifest": str(INSTALL)})
    planner.apply(lab, phase="1.5", progress=lambda _: None)
    store = bare.store
    service = store.objects[("", "services", "argocd", "argocd-server")]
    assert service["spec"]["type"] == "NodePort"
    https = [p for p in service["spec"]["ports"] if p["name"] == "https"]
    assert https[0]["nodePort"] == 30443
    root = store.objects[("argoproj.io", "applications", "argocd", "root")]
    assert root["spec"]["source"]["repoURL"] == fixtures.REPO_URL
    assert root["spec"]["source"]["targetRevision"] == "main"
    repo = store.objects[("", "secrets", "argocd", gitops.REPO_SECRET)]
    assert repo["metadata"]["labels"] == {"argocd.argoproj.io/secret-type": "repository"}
    managers = {e["manager"] for e in root["metadata"]["managedFields"]}
    assert managers == {"labkit"}
    config = store.objects[("", "configmaps", "argocd", "argocd-cm")]
    assert "resource.customizations.health.argoproj.io_Application" in config["data"]
    owners = {e["manager"] for e in config["metadata"]["managedFields"]}
    assert owners == {"labkit", gitops.BOOTSTRAP_MANAGER}  # the install's and the health check's


def test_a_changed_revision_is_a_field_level_change(bare: KubeApi, tmp_path: Path) -> None:
    lab = bare.lab(tmp_path / "one", argocd={"install_manifest": str(INSTALL)})
    planner.apply(lab, phase="1.5", progress=lambda _: None)
    moved = bare.lab(
        tmp_path / "two", argocd={"install_manifest": str(INSTALL), "revision": "v2.0.0"}
    )
    plan = planner.diff(moved, phase="1.5")
    assert plan.pending == 1
    (row,) = [r for r in plan.rows() if r["status"] == "change"]
    assert row["step"] == "Application argocd/root"
    assert ".spec.source.targetRevision (.spec.source.targetRevision=main" in row["detail"]
    assert "v2.0.0" in row["detail"]


def test_drift_by_another_manager_is_planned_and_taken_back(bare: KubeApi, tmp_path: Path) -> None:
    lab = bare.lab(tmp_path, argocd={"install_manifest": str(INSTALL)})
    planner.apply(lab, phase="1.5", progress=lambda _: None)
    resource = bare.store.resource_for("v1", "Service")
    service = bare.store.get(resource, "argocd", "argocd-server")
    edited = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "argocd-server", "namespace": "argocd"},
        "spec": {"type": "ClusterIP", "ports": service["spec"]["ports"]},
    }
    bare.store.apply(resource, "argocd", "argocd-server", edited, "kubectl-edit", True, False)
    plan = planner.diff(lab, phase="1.5")
    assert plan.pending == 1
    assert "change Service argocd/argocd-server: .spec.type" in plan.text()
    after = planner.apply(lab, phase="1.5", progress=lambda _: None)
    assert after.pending == 0
    assert bare.store.get(resource, "argocd", "argocd-server")["spec"]["type"] == "NodePort"


def test_a_conflict_on_the_root_app_cannot_be_planned_silently(
    bare: KubeApi, tmp_path: Path
) -> None:
    lab = bare.lab(tmp_path, argocd={"install_manifest": str(INSTALL)})
    planner.apply(lab, phase="1.5", progress=lambda _: None)
    resource = bare.store.resource_for("argoproj.io/v1alpha1", "Application")
    root = gitops.root_application(lab)
    root["spec"]["source"]["targetRevision"] = "hotfix"
    bare.store.apply(resource, "argocd", "root", root, "argocd-cli", True, False)
    plan = planner.diff(lab, phase="1.5")
    cannot = plan.cannot()["double"]
    assert cannot[0]["step"] == "Application argocd/root"
    assert '.spec.source.targetRevision is managed by "argocd-cli"' in cannot[0]["reason"]


# -- after the bootstrap ------------------------------------------------------------------


def test_admin_password_is_read_and_masked(api: KubeApi, lab: Lab, cluster: Cluster) -> None:
    password = gitops.admin_password(cluster, lab, timeout_s=2)
    assert password.reveal() == fixtures.ADMIN_PASSWORD
    assert redact(f"password is {fixtures.ADMIN_PASSWORD}") == f"password is {MASK}"


def test_the_application_table(api: KubeApi, lab: Lab, cluster: Cluster) -> None:
    fixtures.application_degraded(api.store, "redis")
    apps = gitops.applications(cluster, lab)
    assert [row["name"] for row in apps] == [
        "postgres-cluster",
        "postgres-operator",
        "redis",
        "root",
        "shlink",
    ]
    (bad,) = apps.unhealthy
    assert (bad["name"], bad["sync"], bad["health"]) == ("redis", "OutOfSync", "Degraded")
    assert bad["failing"] == (
        "Deployment redis/redis (OutOfSync, Degraded, Deployment has 0 ready replicas)"
    )
    assert "redis is invalid" in bad["message"]
    assert apps.summary() == "4/5 Synced and Healthy; redis OutOfSync/Degraded"
    html = apps._repr_html_()
    assert "<td>redis</td>" in html
    assert "failing: Deployment redis/redis" in apps.text()


def test_wait_synced_follows_apps_that_become_healthy(bare: KubeApi, tmp_path: Path) -> None:
    lab = bare.lab(tmp_path, argocd={"install_manifest": str(INSTALL)})
    planner.apply(lab, phase="1.5", progress=lambda _: None)
    synced = bare.store.get(
        bare.store.resource_for("argoproj.io/v1alpha1", "Application"), "argocd", "root"
    )["status"]
    progressing = {"sync": {"status": "Unknown"}, "health": {"status": "Progressing"}}
    bare.store.update_status("argoproj.io/v1alpha1", "Application", "argocd", "root", progressing)
    bare.schedule(
        1.5,
        lambda store: store.update_status(
            "argoproj.io/v1alpha1", "Application", "argocd", "root", synced
        ),
    )
    seen: list[str] = []
    with Cluster.open(lab) as cluster:
        apps = gitops.wait_synced(cluster, lab, timeout_s=10, progress=seen.append)
    assert apps.summary() == "1/1 Synced and Healthy"
    assert any("0/1 Synced and Healthy; root Unknown/Progressing" in line for line in seen)


def test_wait_synced_times_out_naming_failing_resources(
    api: KubeApi, lab: Lab, cluster: Cluster
) -> None:
    fixtures.application_degraded(api.store, "shlink")
    with pytest.raises(WaitTimeout) as info:
        gitops.wait_synced(cluster, lab, timeout_s=1)
    message = str(info.value)
    assert "last seen: 4/5 Synced and Healthy; shlink OutOfSync/Degraded" in message
    assert "failing: Deployment shlink/shlink (OutOfSync, Degraded" in message


# -- the sandbox --------------------------------------------------------------------------

LOCAL = Path(__file__).resolve().parents[2] / "params" / "local.yaml"


def test_on_the_sandbox_phase_1_5_plans_nothing_and_says_why(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from labkit import notebook

    lab = load_lab(LOCAL)
    planned = planner.diff(lab, phase="1.5")
    assert planned.phase == "1.5"
    assert "phase 1.5" in repr(planned) + planned._repr_html_()
    assert planned.pending == 0
    assert planned.cannot() == {
        "cluster": [
            {
                "step": "ArgoCD and the root app",
                "reason": "the sandbox has no Kubernetes API (phase 1.5 needs a K3s cluster)",
            }
        ]
    }
    assert planner.apply(lab, phase="1.5", progress=lambda _: None).pending == 0
    confirmed = notebook.confirm(lab, planned, True)  # notebook 01's cell, apply = True
    assert confirmed.result is None and confirmed.error is None  # nothing to apply here
    assert "the sandbox has no Kubernetes API" in confirmed.text()
    shown = notebook.applications(lab, wait=True)
    assert repr(shown).startswith("skip: the sandbox has no Kubernetes API")
    assert main(["plan", "--params", str(LOCAL), "--phase", "1.5"]) == 0
    assert "! cluster" in capsys.readouterr().out


def test_an_unknown_phase_is_refused_by_the_command_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["plan", "--params", str(LOCAL), "--phase", "one"])
    assert "'one': expected a phase such as 1" in capsys.readouterr().err


def test_access_shows_the_ui_and_a_masked_password(api: KubeApi, lab: Lab) -> None:
    from labkit import notebook

    table = notebook.argocd_access(lab)
    shown = dict(zip(table["what"], table["value"], strict=True))
    assert shown["ui"] == "https://192.0.2.11:30443"
    assert shown["password"] == MASK
    assert fixtures.ADMIN_PASSWORD not in table.to_string() + table.to_html()
    del api.store.objects[("", "secrets", "argocd", "argocd-initial-admin-secret")]
    again = notebook.argocd_access(lab)
    assert dict(zip(again["what"], again["value"], strict=True))["password"] == "(changed)"
    sandbox = notebook.argocd_access(load_lab(LOCAL))
    assert repr(sandbox).startswith("skip: the sandbox has no Kubernetes API")


def test_before_phase_1_or_before_argocd_the_cells_say_why(bare: KubeApi, tmp_path: Path) -> None:
    from labkit import notebook

    lab = bare.lab(tmp_path, argocd={"install_manifest": str(INSTALL)})
    assert repr(notebook.applications(lab)).startswith("skip: ArgoCD is not installed yet")
    assert repr(notebook.argocd_access(lab)).startswith("skip: ArgoCD is not installed yet")
    Path(lab.k3s.kubeconfig).unlink()  # phase 1 has not fetched it yet
    before = len(bare.requests())
    planned = planner.diff(lab, phase="1.5")
    (row,) = planned.rows()
    assert row["status"] == "cannot" and "apply phase 1 first" in row["detail"]
    assert repr(notebook.applications(lab, wait=True)).startswith("skip: no kubeconfig at")
    assert len(bare.requests()) == before  # nothing was sent without a kubeconfig
