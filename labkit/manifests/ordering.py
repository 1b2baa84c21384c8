"""Ordering of the app-of-apps: sync waves that really wait, and CRDs that exist before use.

ArgoCD 1.8 stopped assessing an Application's health from its status, so in an app-of-apps
every child looks Healthy at once and sync waves order nothing, unless ``argocd-cm`` carries
``resource.customizations.health.argoproj.io_Application`` (argo-cd docs, operator-manual
health and the 1.7-1.8 upgrade notes). labkit applies that ConfigMap itself (phase 1.5,
``bootstrap_files``), so it must be among the bootstrap files.

An Application whose custom resources' CRDs come from another Application cannot be
dry-run before those CRDs exist: it needs ``SkipDryRunOnMissingResource=true`` and a
``retry`` policy, and the Application installing the CRDs must be in an earlier wave.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from labkit.manifests.apps import App, sync_options
from labkit.manifests.documents import Document, Problem, problem
from labkit.params import Lab

__all__ = ["BOOTSTRAP", "HEALTH_KEY", "check_ordering", "is_custom_resource"]

# What labkit applies by hand in phase 1.5, in this order, after ArgoCD's install manifest.
BOOTSTRAP = ("argocd/argocd-cm.yaml", "argocd/root-app.yaml")
HEALTH_KEY = "resource.customizations.health.argoproj.io_Application"
_SKIP_DRY_RUN = "SkipDryRunOnMissingResource=true"
_INSTALLED_BY_BOOTSTRAP = {"argoproj.io"}  # ArgoCD's own CRDs come with its install manifest


def _chart(name: str) -> Callable[[App], bool]:
    return lambda app: name in app.charts


def _repository(word: str) -> Callable[[App], bool]:
    return lambda app: any(word in repository.lower() for repository in app.repositories)


# CRD group -> (what installs it, how to recognise that Application).
_PROVIDERS: dict[str, tuple[str, Callable[[App], bool]]] = {
    "postgres-operator.crunchydata.com": (
        "PGO (postgres-operator)",
        _repository("postgres-operator"),
    ),
    "external-secrets.io": ("the external-secrets chart", _chart("external-secrets")),
    "networking.istio.io": ("Istio's base chart", _chart("base")),
    "security.istio.io": ("Istio's base chart", _chart("base")),
    "telemetry.istio.io": ("Istio's base chart", _chart("base")),
    "monitoring.coreos.com": ("the kube-prometheus-stack chart", _chart("kube-prometheus-stack")),
}


def is_custom_resource(document: Document) -> bool:
    """True for a kind that a CustomResourceDefinition provides (not a built-in API group)."""
    group = document.group
    return bool(group) and "." in group and not group.endswith(".k8s.io")


def check_ordering(
    documents: list[Document], apps: list[App], lab: Lab, root: Path
) -> list[Problem]:
    """Waves without the health customization, and CRs synced before their CRDs can exist."""
    return _health_customization(documents, apps, lab, root) + _crds_from_other_apps(apps)


def _health_customization(
    documents: list[Document], apps: list[App], lab: Lab, root: Path
) -> list[Problem]:
    children = [app for app in apps if not any(m.kind == "Application" for m in app.members)]
    waves = sorted({app.wave for app in children})
    if len(waves) < 2:
        return []  # nothing is ordered, so nothing depends on Application health
    bootstrap = {root.name + "/" + name for name in BOOTSTRAP}
    for document in documents:
        data = document.get("data") or {}
        if (
            document.kind == "ConfigMap"
            and document.name == "argocd-cm"
            and document.namespace == lab.argocd.namespace
            and str(document.path) in bootstrap
            and "obj.status.health" in str(data.get(HEALTH_KEY, ""))
        ):
            return []
    parents = [app for app in apps if app not in children]
    where = parents[0] if parents else min(children, key=lambda app: app.wave)
    return [
        problem(
            where.document,
            "(bootstrap)",
            f"child Applications use sync waves {waves}, but nothing installs argocd-cm's "
            f"{HEALTH_KEY} (a Lua check returning obj.status.health): since ArgoCD 1.8 every "
            f"child counts as Healthy at once and the waves order nothing; add it to "
            f"{root.name}/{BOOTSTRAP[0]} (namespace {lab.argocd.namespace}, params "
            "argocd.namespace), which labkit applies before the root app",
        )
    ]


def _crds_from_other_apps(apps: list[App]) -> list[Problem]:
    problems: list[Problem] = []
    for app in apps:
        own = {
            str(m.get("spec.group")) for m in app.members if m.kind == "CustomResourceDefinition"
        }
        used = sorted(
            {
                m.group
                for m in app.members
                if is_custom_resource(m) and m.group not in own | _INSTALLED_BY_BOOTSTRAP
            }
        )
        if not used:
            continue
        kinds = ", ".join(used)
        annotated = all(_SKIP_DRY_RUN in sync_options(m) for m in app.members if m.group in used)
        if _SKIP_DRY_RUN not in sync_options(app.document) and not annotated:
            problems.append(
                problem(
                    app.document,
                    "spec.syncPolicy.syncOptions",
                    f"deploys custom resources of {kinds} whose CRDs another Application "
                    f"installs, without {_SKIP_DRY_RUN}: the dry run fails while those CRDs are "
                    f"missing and the sync never starts; add {_SKIP_DRY_RUN}",
                )
            )
        if not (app.document.get("spec.syncPolicy.retry.limit") or 0):
            problems.append(
                problem(
                    app.document,
                    "spec.syncPolicy.retry",
                    f"deploys custom resources of {kinds} whose CRDs another Application "
                    "installs, with no retry: a sync that starts before they are established "
                    "fails once and stays failed; add retry (limit and backoff)",
                )
            )
        others = [other for other in apps if other is not app]
        for group in used:
            problems += _provider_wave(app, group, others)
    return problems


def _provider_wave(app: App, group: str, others: list[App]) -> list[Problem]:
    provider = _PROVIDERS.get(group)
    if provider is None:
        return [
            problem(
                app.document,
                "spec.source",
                f"deploys custom resources of {group}, and no Application here is known to "
                "install that CRD; add the Application that does (and teach "
                "labkit/manifests/ordering.py which one it is)",
            )
        ]
    what, installs = provider
    found = [other for other in others if installs(other)]
    if not found:
        return [
            problem(
                app.document,
                "spec.source",
                f"deploys custom resources of {group}, but no Application installs {what}",
            )
        ]
    late = [other for other in found if other.wave >= app.wave]
    return [
        problem(
            app.document,
            "metadata.annotations.argocd.argoproj.io/sync-wave",
            f"wave {app.wave}, but {other.name} (wave {other.wave}) installs the {group} CRDs "
            f"it uses; move it to a wave after {other.wave}",
        )
        for other in late
    ]
