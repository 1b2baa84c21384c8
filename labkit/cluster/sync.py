"""Phases 2 and 3 as plan steps: ArgoCD Applications to sync, as ``argocd app sync`` does.

Phases 2 and 3 are deployed by ArgoCD (the root app-of-apps of 1.5 creates one child
Application per component, ordered by ``argocd.argoproj.io/sync-wave``). Their plan
lists the phase's Applications in wave order and, per Application, what ArgoCD would
change: its sync and health status and each resource in ``status.resources`` that is
not Synced or not Healthy. Applying one writes the Application's ``operation`` field
(a sync of its target revision, initiated by labkit: what ``argocd app sync`` writes),
then waits, with a deadline and progress, until the controller has run it (the
operation gone) and the Application is Synced and Healthy. ``labkit.plan`` re-plans
afterwards and fails if anything is left.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit.cluster.client import Cluster
from labkit.cluster.documents import load_documents
from labkit.cluster.waits import wait_until
from labkit.errors import ConfigError, LabkitError, StepError
from labkit.params import Lab
from labkit.steps.base import Change, Diff

__all__ = [
    "PHASE_APPLICATIONS",
    "SYNC_MANAGER",
    "ArgoApplication",
    "SyncChange",
    "phase_applications",
]

API_VERSION = "argoproj.io/v1alpha1"
SYNC_MANAGER = "labkit-sync"  # the field manager of the ``operation`` labkit writes
WAVE = "argocd.argoproj.io/sync-wave"
# The roadmap's phases: 2 stateful services (the PostgreSQL operator and cluster, the
# secret stores their users' passwords come from, Redis), 3 Shlink.
PHASE_APPLICATIONS: dict[str, tuple[str, ...]] = {
    "2": ("external-secrets", "postgres-operator", "secret-stores", "postgres-cluster", "redis"),
    "3": ("shlink",),
}
Progress = Callable[[str], None]


def _apps_dir() -> Path:
    from labkit.manifests import default_root  # noqa: PLC0415 - schemas load lazily

    return default_root() / "argocd" / "apps"


def phase_applications(phase: str, apps_dir: Path | None = None) -> list[tuple[int, str]]:
    """(sync wave, name) of ``phase``'s Applications in manifests/argocd/apps, in wave order.

    ConfigError when the phase names an Application the manifests do not hold.
    """
    wanted = PHASE_APPLICATIONS[phase]
    found: dict[str, int] = {}
    for path in sorted((apps_dir or _apps_dir()).glob("*.yaml")):
        for document in load_documents(path):
            if document.get("kind") != "Application":
                continue
            metadata = document.get("metadata") or {}
            wave = (metadata.get("annotations") or {}).get(WAVE, "0")
            found[str(metadata.get("name"))] = int(wave)
    missing = [name for name in wanted if name not in found]
    if missing:
        raise ConfigError(
            f"phase {phase}: manifests/argocd/apps holds no Application {', '.join(missing)}; "
            "the phase's Applications are labkit.cluster.sync.PHASE_APPLICATIONS"
        )
    return sorted(((found[name], name) for name in wanted), key=lambda item: item)


def _out_of_sync(app: dict[str, Any]) -> list[str]:
    """``Kind ns/name (OutOfSync, Missing)`` for each resource ArgoCD would change or heal."""
    rows = []
    for resource in (app.get("status") or {}).get("resources") or []:
        health = (resource.get("health") or {}).get("status", "")
        sync = resource.get("status", "")
        if sync == "Synced" and health in {"Healthy", ""}:
            continue
        where = f"{resource['namespace']}/" if resource.get("namespace") else ""
        state = ", ".join(part for part in (sync, health) if part)
        rows.append(f"{resource.get('kind')} {where}{resource.get('name')} ({state})")
    return rows


def _state(app: dict[str, Any]) -> tuple[str, str]:
    status = app.get("status") or {}
    sync = str((status.get("sync") or {}).get("status", "Unknown"))
    return sync, str((status.get("health") or {}).get("status", "Unknown"))


@dataclass(frozen=True)
class SyncChange(Change):
    """A sync of one Application; evidence shows it as the request it is."""

    application: str = ""

    def command(self) -> str:
        """What runs: the ``operation`` field written, as ``argocd app sync`` does."""
        return (
            f"argocd app sync {self.application} (Application .operation.sync written by "
            f"server-side apply, fieldManager={SYNC_MANAGER})"
        )


@dataclass(frozen=True)
class ArgoApplication:
    """A plan step: one ArgoCD Application of a phase, to be Synced and Healthy."""

    application: str
    namespace: str
    wave: int
    timeout_s: float

    @property
    def name(self) -> str:
        """``Application argocd/redis (wave 2)``: the step's name in a plan."""
        return f"Application {self.namespace}/{self.application} (wave {self.wave})"

    def diff(self, cluster: Cluster) -> Diff:
        """None when Synced and Healthy; a sync when not (what is out of sync); reads only."""
        app = cluster.get("Application", self.application, self.namespace, API_VERSION)
        if app is None:
            return Diff.cannot(
                f"Application {self.namespace}/{self.application} does not exist: the root app "
                "(phase 1.5) creates it; apply --phase 1.5 and check the root app's sync"
            )
        sync, health = _state(app)
        resources = _out_of_sync(app)
        if (sync, health) == ("Synced", "Healthy") and not resources:
            revision = str(((app.get("status") or {}).get("sync") or {}).get("revision", ""))
            return Diff.none(f"{self.application} Synced and Healthy at {revision[:12]}")
        detail = "; ".join(resources) or "no resource listed yet"
        change = SyncChange(
            f"sync {self.application}: {sync}/{health}; {len(resources)} resource(s) to "
            f"change or heal: {detail}",
            f"{sync}/{health}",
            "Synced/Healthy",
            application=self.application,
        )
        return Diff.change(change)

    def apply(self, cluster: Cluster, progress: Progress | None = None) -> dict[str, Any]:
        """Write the sync operation, then wait until it ran and the app is Synced and Healthy."""
        app = cluster.require("Application", self.application, self.namespace, API_VERSION)
        spec = app.get("spec") or {}
        revision = str((spec.get("source") or {}).get("targetRevision") or "HEAD")
        operation = {
            "initiatedBy": {"username": "labkit"},
            "sync": {"revision": revision, "syncStrategy": {"hook": {}}},
        }
        manifest = {
            "apiVersion": API_VERSION,
            "kind": "Application",
            "metadata": {"name": self.application, "namespace": self.namespace},
            "operation": operation,
        }
        cluster.apply(manifest, force=True, field_manager=SYNC_MANAGER)
        held: dict[str, dict[str, Any]] = {}

        def probe() -> tuple[bool, str]:
            live = cluster.require("Application", self.application, self.namespace, API_VERSION)
            held["app"] = live
            sync, health = _state(live)
            running = "operation" in live
            phase = ((live.get("status") or {}).get("operationState") or {}).get("phase", "")
            done = not running and (sync, health) == ("Synced", "Healthy")
            return done, f"{sync}/{health}, operation {'running' if running else phase or 'none'}"

        def evidence() -> str:
            live = held.get("app") or {}
            message = ((live.get("status") or {}).get("operationState") or {}).get("message", "")
            left = "; ".join(_out_of_sync(live))
            return f"last operation: {message or 'none'}" + (f"; not ready: {left}" if left else "")

        try:
            wait_until(
                f"Application {self.application} Synced and Healthy",
                probe,
                self.timeout_s,
                1.0,
                progress,
                evidence,
            )
        except LabkitError as exc:
            raise StepError(f"sync of {self.application}: {exc}") from exc
        return held["app"]


def phase_objects(lab: Lab, phase: str) -> list[ArgoApplication]:
    """Phase ``phase``'s Applications as plan steps, in sync-wave order."""
    timeout = float(lab.cluster.wait_timeout_s)
    return [
        ArgoApplication(name, lab.argocd.namespace, wave, timeout)
        for wave, name in phase_applications(phase)
    ]
