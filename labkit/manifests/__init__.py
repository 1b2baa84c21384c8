"""The lab's Kubernetes manifests, proven offline: schemas, tree consistency, pins against params.

Every YAML document under ``manifests/`` is checked three ways, without a cluster:

- against a schema: custom resources against the published CRD schemas shipped in
  ``labkit/data/crd-schemas/``; core kinds against ``kubernetes-validate``'s strict schemas for
  the lab's Kubernetes minor version; every document structurally (apiVersion, kind, name,
  namespace where namespaced);
- as a tree: every kustomization lists files that exist and every file is listed, every ArgoCD
  Application that points into this repository points at a directory that exists;
- against params: versions, sizes, Redis and Sentinel settings, Istio traffic policy, secret
  locations and alert thresholds say what the lab's params say.

``validate(lab)`` returns a list of Problems, each naming file, document, field and what was seen.
"""

from __future__ import annotations

from pathlib import Path

from labkit.errors import ConfigError
from labkit.manifests.apps import applications
from labkit.manifests.dashboards import check_dashboards
from labkit.manifests.documents import (
    Document,
    Problem,
    default_root,
    kustomization_namespaces,
    load_documents,
)
from labkit.manifests.namespaces import check_namespaces
from labkit.manifests.ordering import BOOTSTRAP, check_ordering
from labkit.manifests.pins import check_pins
from labkit.manifests.principals import check_principals
from labkit.manifests.schemas import kubernetes_minor, schema, structure
from labkit.manifests.sentinel import check_sentinels
from labkit.manifests.traffic import check_rate_limit, check_traffic
from labkit.manifests.tree import duplicates, tree
from labkit.params import Lab

__all__ = [
    "Document",
    "Problem",
    "bootstrap_files",
    "default_root",
    "load_documents",
    "validate",
]


def bootstrap_files(root: Path | None = None) -> list[Path]:
    """What labkit applies by hand in phase 1.5, in order, after ArgoCD's install manifest.

    ``argocd-cm.yaml`` (the Application health check that makes sync waves wait) and then
    the root app. Apply the ConfigMap with a field manager of its own: the install manifest
    holds an empty argocd-cm too, and re-applying it under the same manager would remove the
    health check.
    """
    root = (root or default_root()).resolve()
    return [root / name for name in BOOTSTRAP]


def validate(lab: Lab, root: Path | None = None) -> list[Problem]:
    """Every problem in the manifests under ``root`` (default: the repository's), for ``lab``."""
    root = (root or default_root()).resolve()
    if not root.is_dir():
        raise ConfigError(
            f"{root}: no manifests folder here; pass the repository's manifests/ directory"
        )
    documents, problems = load_documents(root)
    kubernetes = kubernetes_minor(lab.versions.k3s)
    kustomizations = kustomization_namespaces(documents)
    for document in documents:
        problems += structure(document, kustomizations)
        problems += schema(document, kubernetes)
    problems += tree(documents, root)
    problems += duplicates(documents, kustomizations)
    problems += check_pins(documents, lab, root)
    problems += check_principals(documents, kustomizations)
    problems += check_traffic(documents)
    problems += check_sentinels(documents, kustomizations)
    apps = applications(documents, root)
    problems += check_ordering(documents, apps, kustomizations, lab, root)
    problems += check_namespaces(apps, kustomizations)
    problems += check_rate_limit(documents, apps, lab)
    problems += check_dashboards(documents)
    return problems
