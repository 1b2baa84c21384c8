"""Cluster phases for the Plan: one cluster plays the node, each KubeObject is a step.

A cluster phase (``"1.5"``) is an ordered list of KubeObjects (namespaces and
CRDs first). ``diff_entries`` reads only (live objects and server-side dry runs)
and returns the plan's rows as (stage, node, step, diff); ``apply_objects``
applies each object that would change, in order, and returns the evidence.
``labkit.plan`` wraps both: it builds the Plan, re-plans after applying and
raises if anything is left, exactly as for the SSH phases.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from labkit.cluster.client import Cluster, kubeconfig_path
from labkit.cluster.steps import KubeObject
from labkit.errors import LabkitError, StepError
from labkit.params import Lab
from labkit.secrets import redact
from labkit.steps.base import Diff, Evidence

__all__ = [
    "CLUSTER_PHASES",
    "SANDBOX_REASON",
    "Row",
    "apply_objects",
    "diff_entries",
    "is_cluster_phase",
    "phase_objects",
    "unreachable_reason",
]

Progress = Callable[[str], None]
Row = tuple[str, str, str, Diff]  # stage, node (the cluster's context), step, its diff
SANDBOX_REASON = "the sandbox has no Kubernetes API (phase 1.5 needs a K3s cluster)"


def _gitops_objects(lab: Lab) -> list[KubeObject]:
    from labkit.gitops import bootstrap_objects  # noqa: PLC0415 - gitops imports the cluster

    return bootstrap_objects(lab)


# Phase -> (title, the objects it applies). Phases 2 and 3 deploy through ArgoCD
# (the root app of 1.5); add an entry here when labkit itself must apply something.
CLUSTER_PHASES: dict[str, tuple[str, Callable[[Lab], list[KubeObject]]]] = {
    "1.5": ("1.5 ArgoCD (GitOps foundation)", _gitops_objects),
}


def is_cluster_phase(phase: str | int | None) -> bool:
    """Whether ``phase`` is applied through the Kubernetes API, not over SSH."""
    return phase is not None and str(phase) in CLUSTER_PHASES


def phase_objects(lab: Lab, phase: str) -> tuple[str, list[KubeObject]]:
    """(stage title, objects in apply order) of a cluster phase."""
    title, build = CLUSTER_PHASES[str(phase)]
    return title, build(lab)


def unreachable_reason(lab: Lab) -> str:
    """Why this lab has no Kubernetes API to talk to yet ("" when it may have one)."""
    if lab.kind == "sandbox":
        return SANDBOX_REASON
    path = kubeconfig_path(lab)
    if not path.is_file():
        return f"no kubeconfig at {path} yet: apply phase 1 first (it fetches it from K3s)"
    return ""


def diff_entries(lab: Lab, phase: str, cluster: Cluster | None = None) -> list[Row]:
    """What cluster phase ``phase`` would change, one row per object; reads only.

    On the sandbox, or before phase 1 saved a kubeconfig: one "cannot" row saying why,
    and no connection is attempted.
    """
    title, _ = CLUSTER_PHASES[str(phase)]
    reason = unreachable_reason(lab)
    if reason and cluster is None:
        return [(title, "cluster", "ArgoCD and the root app", Diff.cannot(reason))]
    if cluster is None:
        with Cluster.open(lab) as opened:
            return diff_entries(lab, phase, opened)
    title, objects = phase_objects(lab, phase)
    return [(title, cluster.context, item.name, item.diff(cluster)) for item in objects]


def apply_objects(
    lab: Lab,
    phase: str,
    evidence: list[Evidence],
    cluster: Cluster | None = None,
    progress: Progress = print,
) -> None:
    """Apply every object of ``phase`` that would change, in order, appending evidence of each.

    A failing apply raises StepError naming the object (its evidence is appended first).
    """
    if lab.kind == "sandbox":
        progress(f"phase {phase}: {SANDBOX_REASON}; nothing to apply")
        return
    if cluster is None:
        with Cluster.open(lab) as opened:
            apply_objects(lab, phase, evidence, opened, progress)
            return
    title, objects = phase_objects(lab, phase)
    progress(f"== {title} on {cluster.context}")
    for item in objects:
        for change in item.diff(cluster).changes:
            progress(redact(f"{cluster.context}: {change.summary}"))
            command = change.command()
            started = time.perf_counter()
            try:
                item.apply(cluster)
            except LabkitError as exc:
                evidence.append(
                    Evidence(
                        cluster.context, item.name, change.summary, change.before,
                        change.after, command, False, None, 0.0, redact(str(exc)),
                    )
                )  # fmt: skip
                raise StepError(f"{item.name}: {exc}") from exc
            took = round(time.perf_counter() - started, 3)
            evidence.append(
                Evidence(
                    cluster.context, item.name, change.summary, change.before, change.after,
                    command, True, 0, took,
                )
            )  # fmt: skip
