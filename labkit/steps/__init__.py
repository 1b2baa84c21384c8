"""Idempotent steps: node preparation (1.2), K3s HA (1.3) and the kubeconfig, grouped in stages."""

from __future__ import annotations

from dataclasses import dataclass

from labkit.params import Lab
from labkit.steps.base import Change, Diff, DiffKind, Evidence, Step, Target, write_file
from labkit.steps.k3s import K3sBinary, K3sConfig, K3sService
from labkit.steps.kubeconfig import Kubeconfig
from labkit.steps.node import (
    FirewallPorts,
    Hostname,
    KernelModules,
    Packages,
    Swap,
    Sysctls,
    TimeSync,
)

__all__ = [
    "Change",
    "Diff",
    "DiffKind",
    "Evidence",
    "FirewallPorts",
    "Hostname",
    "K3sBinary",
    "K3sConfig",
    "K3sService",
    "KernelModules",
    "Kubeconfig",
    "Packages",
    "Stage",
    "Step",
    "Swap",
    "Sysctls",
    "Target",
    "TimeSync",
    "stages_for",
    "write_file",
]

PHASES_WITH_STEPS = ("1",)  # phases (or steps, "1.5") whose plan has SSH steps


@dataclass(frozen=True)
class Stage:
    """Steps run on some nodes (in parallel across nodes); stages run one after another."""

    title: str
    nodes: tuple[str, ...]
    steps: tuple[Step, ...]


def stages_for(lab: Lab, phase: str | int | None = None) -> list[Stage]:
    """The ordered stages of ``phase`` ("1"; None: every phase that has steps)."""
    if phase is not None and str(phase) not in PHASES_WITH_STEPS:
        return []  # later phases change the cluster through ArgoCD, not over SSH
    first = lab.k3s.cluster_init_node
    others = tuple(name for name in lab.node_names if name != first)
    k3s = (K3sConfig(), K3sBinary(), K3sService())
    stages = [
        Stage(
            "1.2 node preparation",
            tuple(lab.node_names),
            (
                Hostname(),
                Packages(),
                Swap(),
                KernelModules(),
                Sysctls(),
                TimeSync(),
                FirewallPorts(),
            ),
        ),
        Stage(f"1.3 first server {first} (cluster-init)", (first,), k3s),
    ]
    if others:
        stages.append(Stage("1.3 joining servers", others, k3s))
    stages.append(Stage("1.3 kubeconfig from the first server", (first,), (Kubeconfig(),)))
    return stages
