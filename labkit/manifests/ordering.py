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
    documents: list[Document],
    apps: list[App],
    kustomizations: dict[Path, str],
    lab: Lab,
    root: Path,
) -> list[Problem]:
    """Waves without the health check, CRs before their CRDs, injected pods before istiod."""
    return (
        _health_customization(documents, apps, lab, root)
        + _crds_from_other_apps(apps)
        + _injection_after_istiod(documents, apps, kustomizations)
    )


def _injection_after_istiod(
    documents: list[Document], apps: list[App], kustomizations: dict[Path, str]
) -> list[Problem]:
    """Apps whose pods get a sidecar are in a wave after the one installing istiod.

    istiod serves the injection webhook; a pod created before it answers starts without its
    proxy and is not fixed until it is recreated. The gateway chart's container image is
    ``auto``, which only injection replaces: without it the gateway never even starts.
    """
    injected = {
        d.name
        for d in documents
        if d.kind == "Namespace"
        and (
            (d.get("metadata.labels") or {}).get("istio-injection") == "enabled"
            or "istio.io/rev" in (d.get("metadata.labels") or {})
        )
    }
    istiods = [app for app in apps if "istiod" in app.charts]
    problems: list[Problem] = []
    for app in apps:
        why = _needs_injection(app, injected, kustomizations)
        if not why:
            continue
        if not istiods:
            problems.append(
                problem(app.document, "spec.source", f"{why}, but no Application installs istiod")
            )
        for istiod in istiods:
            if app.wave <= istiod.wave:
                problems.append(
                    problem(
                        app.document,
                        "metadata.annotations.argocd.argoproj.io/sync-wave",
                        f"wave {app.wave}, but {why} and {istiod.name}, which serves the "
                        f"injection webhook, is in wave {istiod.wave}: its pods would start "
                        f"without a sidecar; move it to a wave after {istiod.wave}",
                    )
                )
    return problems


_WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "PostgresCluster"}


def _needs_injection(app: App, injected: set[str], kustomizations: dict[Path, str]) -> str:
    """Why ``app``'s pods get an Istio sidecar ('' when they do not)."""
    if "gateway" in app.charts and any("istio" in r for r in app.repositories):
        annotations = app.values("gateway").get("podAnnotations") or {}
        if annotations.get("sidecar.istio.io/inject") != "false":
            return "Istio's gateway chart injects its pods (sidecar.istio.io/inject)"
    for member in app.members:
        where = kustomizations.get(member.path.parent, "") or member.namespace or app.destination
        if member.kind in _WORKLOADS and where in injected:
            return (
                f"its {member.kind} {member.name} runs in namespace {where}, labelled for injection"
            )
    return ""


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
