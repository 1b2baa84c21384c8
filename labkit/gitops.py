"""Phase 1.5, GitOps: ArgoCD from its pinned install manifest, then the root app-of-apps.

What labkit applies (``labkit plan/apply --phase 1.5``), in order: the ArgoCD
namespace; every object of ArgoCD's install manifest (the release pinned by
``versions.argocd``, read from ``argocd.install_manifest`` on an air-gapped lab,
else downloaded once into labkit's cache), with the ``argocd-server`` Service as
a NodePort on ``argocd.node_port``; the repository connection secret; then the
bootstrap manifests (``labkit.manifests.bootstrap_files``: argocd-cm's Application
health check, under a field manager of its own, and the root Application, pointed
at ``argocd.repo_url`` and ``argocd.revision``, the one place the GitOps source is
named). Afterwards
``applications`` reads every Application's sync, health, revision and last
message, and ``wait_synced`` waits (progress, deadline) until all are Synced
and Healthy, naming each failing app's failing resources otherwise.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit.cluster.client import Cluster
from labkit.cluster.documents import apply_order, load_documents
from labkit.cluster.steps import KubeObject
from labkit.errors import ConfigError, ConnectError, WaitTimeout
from labkit.params import Lab
from labkit.secrets import Secret, redact, register

__all__ = [
    "BOOTSTRAP_MANAGER",
    "INSTALL_URL",
    "REPO_SECRET",
    "Applications",
    "access",
    "admin_password",
    "applications",
    "bootstrap_objects",
    "failing_resources",
    "install_documents",
    "repository_secret",
    "root_application",
    "wait_synced",
]

INSTALL_URL = "https://raw.githubusercontent.com/argoproj/argo-cd/{version}/manifests/install.yaml"
REPO_SECRET = "labkit-gitops-repo"
ADMIN_SECRET = "argocd-initial-admin-secret"
BOOTSTRAP_MANAGER = "labkit-bootstrap"
_DOWNLOAD_TIMEOUT_S = 60.0

Progress = Callable[[str], None]


def _cache_dir() -> Path:
    return Path("~/.cache/labkit/argocd").expanduser()


def _download(lab: Lab) -> Path:
    """The pinned install.yaml, downloaded once into labkit's cache (needs internet)."""
    version = (
        lab.versions.argocd if lab.versions.argocd.startswith("v") else (f"v{lab.versions.argocd}")
    )
    target = _cache_dir() / f"install-{version}.yaml"
    if target.is_file():
        return target
    if not lab.internet:
        raise ConfigError(
            f"lab {lab.name} has no internet and no argocd.install_manifest: download ArgoCD "
            f"{version}'s install.yaml elsewhere and set argocd.install_manifest to its path"
        )
    import httpx  # noqa: PLC0415 - only a lab with internet downloads

    url = INSTALL_URL.format(version=version)
    try:
        response = httpx.get(
            url, timeout=_DOWNLOAD_TIMEOUT_S, follow_redirects=True, trust_env=False
        )
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise ConnectError(
            f"cannot download ArgoCD {version} from {url} ({exc}); set "
            "argocd.install_manifest to a local copy"
        ) from None
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(response.content)
    return target


def install_documents(lab: Lab) -> list[dict[str, Any]]:
    """ArgoCD's install manifest as objects, namespaced ones placed in ``argocd.namespace``."""
    settings = lab.argocd
    path = lab.path(settings.install_manifest) if settings.install_manifest else _download(lab)
    documents = load_documents(path)
    if not documents:
        raise ConfigError(f"{path} holds no Kubernetes objects; is it ArgoCD's install.yaml?")
    namespace = settings.namespace
    cluster_scoped = {
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "Namespace",
        "PriorityClass",
        "StorageClass",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "APIService",
    }
    for document in documents:
        metadata = document.setdefault("metadata", {})
        if document.get("kind") not in cluster_scoped and not metadata.get("namespace"):
            metadata["namespace"] = namespace
        if document.get("kind") == "Service" and metadata.get("name") == "argocd-server":
            _node_port(document, settings.node_port)
    return documents


def _node_port(service: dict[str, Any], node_port: int | None) -> None:
    """Make the argocd-server Service a NodePort (its https port on ``node_port``)."""
    if node_port is None:
        return
    spec = service.setdefault("spec", {})
    spec["type"] = "NodePort"
    for port in spec.get("ports") or []:
        if port.get("name") == "https" or port.get("port") == 443:
            port["nodePort"] = node_port


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def repository_secret(lab: Lab) -> dict[str, Any]:
    """The Secret through which ArgoCD connects to the GitOps repository."""
    settings = lab.argocd
    if not settings.repo_url:
        raise ConfigError("argocd.repo_url is empty: name the GitOps repository in params")
    data = {"type": _b64("git"), "url": _b64(settings.repo_url), "project": _b64("default")}
    if settings.repo_password is not None:
        password = lab.secret(settings.repo_password)
        data["username"] = _b64(settings.repo_username or "git")
        data["password"] = _b64(password.reveal())
        register(data["password"])  # the manifest holds it base64-encoded: mask that form too
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": REPO_SECRET,
            "namespace": settings.namespace,
            "labels": {"argocd.argoproj.io/secret-type": "repository"},
        },
        "type": "Opaque",
        "data": data,
    }


def _bootstrap_documents() -> list[dict[str, Any]]:
    """The manifests labkit applies by hand after the install (manifests.bootstrap_files)."""
    from labkit.manifests import bootstrap_files  # noqa: PLC0415 - schemas load lazily

    return [document for path in bootstrap_files() for document in load_documents(path)]


def root_application(lab: Lab) -> dict[str, Any]:
    """The root app-of-apps, its source set to the params' repository and revision."""
    apps = [d for d in _bootstrap_documents() if d.get("kind") == "Application"]
    if len(apps) != 1:
        raise ConfigError(f"the bootstrap manifests hold {len(apps)} Applications, not one root")
    app = copy.deepcopy(apps[0])
    app.setdefault("metadata", {})["namespace"] = lab.argocd.namespace
    source = app.setdefault("spec", {}).setdefault("source", {})
    if lab.argocd.repo_url:
        source["repoURL"] = lab.argocd.repo_url
    source["targetRevision"] = lab.argocd.revision
    return app


def bootstrap_objects(lab: Lab) -> list[KubeObject]:
    """Everything phase 1.5 applies, in order: the namespace, ArgoCD's install (CRDs, RBAC,
    config, workloads), the repository secret, argocd-cm's health check, the root app."""
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": lab.argocd.namespace},
    }
    installed = apply_order([namespace, *install_documents(lab), repository_secret(lab)])
    # ArgoCD's own objects may be rewritten by ArgoCD's controllers (it manages some of its
    # config); force keeps labkit's pinned version authoritative, as `--force-conflicts` does.
    objects = [KubeObject(document, force=True) for document in installed]
    for document in _bootstrap_documents():
        if document.get("kind") == "Application":
            objects.append(KubeObject(root_application(lab)))
            continue
        document.setdefault("metadata", {})["namespace"] = lab.argocd.namespace
        # Its own field manager: the install manifest's (empty) argocd-cm is applied as
        # "labkit", and one manager applying both would drop these keys every other time.
        objects.append(KubeObject(document, field_manager=BOOTSTRAP_MANAGER))
    return objects


def admin_password(cluster: Cluster, lab: Lab, timeout_s: float = 120.0) -> Secret:
    """The initial admin password (masked), once ArgoCD has written it."""
    namespace = lab.argocd.namespace

    def written() -> tuple[bool, str]:
        found = cluster.get("Secret", ADMIN_SECRET, namespace, api_version="v1")
        return found is not None, "present" if found else "not written yet"

    cluster.wait(f"Secret {namespace}/{ADMIN_SECRET}", written, timeout_s)
    return cluster.secret_value(namespace, ADMIN_SECRET, "password")


def access(cluster: Cluster, lab: Lab) -> dict[str, str]:
    """Where the ArgoCD UI answers and how to log in (the password masked, with where it is)."""
    namespace = lab.argocd.namespace
    service = cluster.require("Service", "argocd-server", namespace, api_version="v1")
    ports = {p.get("name"): p.get("nodePort") for p in (service.get("spec") or {}).get("ports", [])}
    node_port = ports.get("https") or lab.argocd.node_port
    first = lab.node(lab.k3s.cluster_init_node).address
    present = cluster.exists("Secret", ADMIN_SECRET, namespace)
    password = str(admin_password(cluster, lab, timeout_s=5)) if present else "(changed)"
    return {
        "ui": f"https://{first}:{node_port}" if node_port else "(no NodePort)",
        "user": "admin",
        "password": password,
        "password from": f"kubectl -n {namespace} get secret {ADMIN_SECRET} "
        "-o jsonpath='{.data.password}' | base64 -d",
    }


def failing_resources(app: dict[str, Any]) -> list[str]:
    """``Kind ns/name (OutOfSync, Degraded: message)`` for each resource not Synced and Healthy."""
    failing = []
    for resource in (app.get("status") or {}).get("resources") or []:
        health = resource.get("health") or {}
        sync = resource.get("status", "")
        healthy = health.get("status", "Healthy") in {"Healthy", ""}
        if sync == "Synced" and healthy:
            continue
        where = f"{resource.get('namespace')}/" if resource.get("namespace") else ""
        detail = ", ".join(
            part for part in (sync, health.get("status", ""), health.get("message", "")) if part
        )
        failing.append(f"{resource.get('kind')} {where}{resource.get('name')} ({detail})")
    return failing


def _row(app: dict[str, Any]) -> dict[str, str]:
    status = app.get("status") or {}
    operation = status.get("operationState") or {}
    conditions = [c.get("message", "") for c in status.get("conditions") or []]
    return {
        "name": str(app["metadata"]["name"]),
        "sync": str((status.get("sync") or {}).get("status", "Unknown")),
        "health": str((status.get("health") or {}).get("status", "Unknown")),
        "revision": str((status.get("sync") or {}).get("revision", "")),
        "message": str(operation.get("message") or "; ".join(conditions)),
        "failing": "; ".join(failing_resources(app)),
    }


@dataclass(frozen=True)
class Applications:
    """Every ArgoCD Application's state; shows itself as a table (report.py renders it)."""

    rows: tuple[dict[str, str], ...]

    def __iter__(self) -> Iterator[dict[str, str]]:
        return iter(self.rows)

    @property
    def unhealthy(self) -> list[dict[str, str]]:
        """Rows not Synced and Healthy."""
        return [r for r in self.rows if (r["sync"], r["health"]) != ("Synced", "Healthy")]

    def text(self) -> str:
        """A terminal table."""
        from labkit.report import application_table_text  # noqa: PLC0415

        return application_table_text(self.rows)

    def _repr_html_(self) -> str:
        from labkit.report import application_table_html  # noqa: PLC0415

        return application_table_html(self.rows)

    def summary(self) -> str:
        """``4/5 Synced and Healthy; redis OutOfSync/Degraded``."""
        bad = ", ".join(f"{r['name']} {r['sync']}/{r['health']}" for r in self.unhealthy)
        good = len(self.rows) - len(self.unhealthy)
        return f"{good}/{len(self.rows)} Synced and Healthy" + (f"; {bad}" if bad else "")


def applications(cluster: Cluster, lab: Lab) -> Applications:
    """Every Application in ArgoCD's namespace, by name."""
    found = cluster.list("Application", lab.argocd.namespace, api_version="argoproj.io/v1alpha1")
    rows = sorted((_row(app) for app in found), key=lambda row: row["name"])
    return Applications(tuple(rows))


def wait_synced(
    cluster: Cluster,
    lab: Lab,
    timeout_s: float | None = None,
    progress: Progress | None = None,
    expected: int = 1,
) -> Applications:
    """Wait until at least ``expected`` Applications exist and all are Synced and Healthy."""
    held: dict[str, Applications] = {}

    def probe() -> tuple[bool, str]:
        state = applications(cluster, lab)
        held["state"] = state
        done = len(state.rows) >= expected and not state.unhealthy
        return done, state.summary()

    def evidence() -> str:
        state = held.get("state")
        if state is None:
            return ""
        return "\n".join(
            f"{row['name']}: {row['message']}"
            + (f"; failing: {row['failing']}" if row["failing"] else "")
            for row in state.unhealthy
        )

    try:
        cluster.wait("ArgoCD Applications Synced and Healthy", probe, timeout_s, progress, evidence)
    except WaitTimeout as exc:
        raise WaitTimeout(
            redact(f"{exc}\nlook at these apps in the ArgoCD UI or `argocd app get`")
        ) from None
    return held["state"]
