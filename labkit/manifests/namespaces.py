"""Namespaces belong to the Application that runs their workloads.

ArgoCD deletes a Namespace it prunes (or that goes with a deleted Application), and the
Namespace takes everything in it along, whichever Application deployed that. So a Namespace
object lives in the Application whose workloads run there, or is marked ``Prune=false``.
"""

from __future__ import annotations

from pathlib import Path

from labkit.manifests.apps import App, namespace_of, sync_options
from labkit.manifests.documents import Problem, problem

__all__ = ["check_namespaces"]

_WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "PostgresCluster"}


def check_namespaces(apps: list[App], kustomizations: dict[Path, str]) -> list[Problem]:
    """Namespaces deployed by an Application that runs nothing in them, unless never pruned."""
    problems: list[Problem] = []
    for owner in apps:
        for namespace in (m for m in owner.members if m.kind == "Namespace"):
            if "Prune=false" in sync_options(namespace):
                continue
            name = namespace.name
            runners = [app.name for app in apps if _runs_workloads(app, name, kustomizations)]
            if owner.name in runners:
                continue
            users = sorted(
                {
                    app.name
                    for app in apps
                    if app is not owner
                    and (
                        app.destination == name
                        or any(
                            namespace_of(m, kustomizations, app) == name
                            for m in app.members
                            if m.kind != "Namespace"
                        )
                    )
                }
            )
            target = runners[0] if runners else "the Application that runs its workloads"
            problems.append(
                problem(
                    namespace,
                    "metadata.name",
                    f"Namespace {name} belongs to Application {owner.name}, which runs no "
                    f"workload in it (used by {', '.join(users) or 'no other Application'}): "
                    f"pruning or deleting {owner.name} would delete {name} and everything in "
                    f"it; move it to {target}, or annotate it "
                    "argocd.argoproj.io/sync-options: Prune=false",
                )
            )
    return problems


def _runs_workloads(app: App, namespace: str, kustomizations: dict[Path, str]) -> bool:
    """Whether ``app`` runs pods in ``namespace``: its workloads, or a Helm chart put there."""
    if app.charts and app.destination == namespace:
        return True
    return any(
        m.kind in _WORKLOADS and namespace_of(m, kustomizations, app) == namespace
        for m in app.members
    )
