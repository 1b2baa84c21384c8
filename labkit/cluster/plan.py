"""Plan and apply for cluster phases: the same Plan as phase 1, with one cluster as the "node".

A cluster phase is an ordered list of KubeObjects (namespaces and CRDs first).
``diff_phase`` reads only (live objects and server-side dry runs); ``apply_phase``
applies each object that would change, in order, records evidence of each, then
re-plans and raises StepError if anything is left. A second apply changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from labkit.cluster.client import Cluster
from labkit.cluster.steps import KubeObject
from labkit.errors import LabkitError, StepError
from labkit.params import Lab
from labkit.results import record
from labkit.secrets import redact
from labkit.steps.base import Diff, Evidence

if TYPE_CHECKING:
    from labkit.plan import Entry, Plan

__all__ = [
    "CLUSTER_PHASES",
    "SANDBOX_REASON",
    "apply_phase",
    "diff_phase",
    "is_cluster_phase",
    "phase_objects",
]

Progress = Callable[[str], None]


def _gitops_objects(lab: Lab) -> list[KubeObject]:
    from labkit.gitops import bootstrap_objects  # noqa: PLC0415 - gitops imports this module

    return bootstrap_objects(lab)


# Phase -> (title, the objects it applies). Phases 2 and 3 deploy through ArgoCD
# (the root app of 1.5); add an entry here when labkit itself must apply something.
CLUSTER_PHASES: dict[str, tuple[str, Callable[[Lab], list[KubeObject]]]] = {
    "1.5": ("1.5 ArgoCD (GitOps foundation)", _gitops_objects),
}


def is_cluster_phase(phase: int | str | None) -> bool:
    """Whether ``phase`` is applied through the Kubernetes API."""
    return phase is not None and str(phase) in CLUSTER_PHASES


def phase_objects(lab: Lab, phase: str) -> tuple[str, list[KubeObject]]:
    """(stage title, objects in apply order) of a cluster phase."""
    title, build = CLUSTER_PHASES[str(phase)]
    return title, build(lab)


SANDBOX_REASON = "the sandbox has no Kubernetes API (phase 1.5 needs a K3s cluster)"


def _no_cluster(lab: Lab, phase: str) -> Entry:
    from labkit.plan import Entry  # noqa: PLC0415

    title, _ = CLUSTER_PHASES[str(phase)]
    return Entry(title, "cluster", "ArgoCD and the root app", Diff.cannot(SANDBOX_REASON))


def _entries(cluster: Cluster, title: str, objects: list[KubeObject]) -> list[Entry]:
    from labkit.plan import Entry  # noqa: PLC0415 - plan imports this module lazily

    return [Entry(title, cluster.context, item.name, item.diff(cluster)) for item in objects]


def diff_phase(lab: Lab, phase: str, cluster: Cluster | None = None) -> Plan:
    """What cluster phase ``phase`` would change; reads only."""
    from labkit.plan import Plan  # noqa: PLC0415

    if lab.kind == "sandbox":
        return Plan(lab.name, [_no_cluster(lab, phase)], str(phase))
    if cluster is None:
        with Cluster.open(lab) as opened:
            return diff_phase(lab, phase, opened)
    title, objects = phase_objects(lab, phase)
    plan = Plan(lab.name, _entries(cluster, title, objects), str(phase))
    record(
        "plans",
        [{"node": n, "applied": False, **c} for n, cs in plan.changes().items() for c in cs],
    )
    return plan


def apply_phase(
    lab: Lab, phase: str, cluster: Cluster | None = None, progress: Progress = print
) -> Plan:
    """Apply every object that would change, in order, then re-plan; StepError if any is left."""
    if lab.kind == "sandbox":
        progress(f"phase {phase}: {SANDBOX_REASON}; nothing to apply")
        return diff_phase(lab, phase)
    if cluster is None:
        with Cluster.open(lab) as opened:
            return apply_phase(lab, phase, opened, progress)
    title, objects = phase_objects(lab, phase)
    progress(f"== {title} on {cluster.context}")
    evidence: list[Evidence] = []
    try:
        for item in objects:
            verdict = item.diff(cluster)
            for change in verdict.changes:
                progress(redact(f"{cluster.context}: {change.summary}"))
                started = time.perf_counter()
                command = f"server-side apply {item.name} (fieldManager=labkit)"
                try:
                    item.apply(cluster)
                except LabkitError as exc:
                    evidence.append(
                        Evidence(
                            cluster.context,
                            item.name,
                            change.summary,
                            change.before,
                            change.after,
                            command,
                            False,
                            None,
                            0.0,
                            redact(str(exc)),
                        )
                    )
                    raise StepError(f"{item.name}: {exc}") from exc
                evidence.append(
                    Evidence(
                        cluster.context,
                        item.name,
                        change.summary,
                        change.before,
                        change.after,
                        command,
                        True,
                        0,
                        round(time.perf_counter() - started, 3),
                    )
                )
    finally:
        record("plans", [item.to_dict() for item in evidence])
    after = diff_phase(lab, phase, cluster)
    after.evidence = evidence
    if after.pending:
        left = "; ".join(f"{c['change']}" for changes in after.changes().values() for c in changes)
        raise StepError(
            redact(
                f"lab {lab.name} phase {phase}: {after.pending} change(s) left after apply "
                f"({left}); another field manager may be changing them back: rerun "
                "`labkit plan` and read the fields"
            )
        )
    return after
