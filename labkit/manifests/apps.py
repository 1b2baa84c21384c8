"""The app-of-apps as data: each Application, its sync wave, and the documents it deploys.

Cross-object checks ask which Application deploys a document (a Namespace, a custom
resource), in which wave, and into which namespace; this module answers once for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit.manifests.documents import Document, is_kustomization, sources

__all__ = ["WAVE", "App", "applications", "namespace_of", "sync_options"]

WAVE = "argocd.argoproj.io/sync-wave"


@dataclass(frozen=True)
class App:
    """One ArgoCD Application and what it deploys."""

    document: Document
    wave: int
    charts: tuple[str, ...]  # Helm charts it installs
    repositories: tuple[str, ...]  # every source's repoURL
    destination: str  # spec.destination.namespace
    members: tuple[Document, ...]  # documents of this repository it deploys

    @property
    def name(self) -> str:
        """The Application's name."""
        return self.document.name

    def values(self, chart: str) -> dict[str, Any]:
        """The Helm values object given to ``chart`` ({} when none or not this chart)."""
        for _, source in sources(self.document):
            if source.get("chart") == chart:
                values = (source.get("helm") or {}).get("valuesObject")
                return values if isinstance(values, dict) else {}
        return {}


def applications(documents: list[Document], root: Path) -> list[App]:
    """Every Application in the tree, with the documents of the folders it deploys."""
    base = root.resolve().parent
    found: list[App] = []
    for document in documents:
        if document.kind != "Application":
            continue
        folders: list[Path] = []
        charts: list[str] = []
        repositories: list[str] = []
        for _, source in sources(document):
            repositories.append(str(source.get("repoURL", "")))
            if isinstance(source.get("chart"), str):
                charts.append(source["chart"])
            path = source.get("path")
            if isinstance(path, str) and path.startswith(f"{root.name}/"):
                folders.append((base / path).resolve())
        members = tuple(
            member
            for member in documents
            if not is_kustomization(member)
            and any((base / member.path).resolve().is_relative_to(f) for f in folders)
        )
        found.append(
            App(
                document,
                _wave(document),
                tuple(charts),
                tuple(repositories),
                str(document.get("spec.destination.namespace") or ""),
                members,
            )
        )
    return found


def _wave(document: Document) -> int:
    annotations = document.get("metadata.annotations") or {}
    try:
        return int(str(annotations.get(WAVE, "0")))
    except ValueError:
        return 0  # the schema check reports a wave that is not a number


def namespace_of(document: Document, kustomizations: dict[Path, str], app: App | None) -> str:
    """Where a namespaced document lands: its own, its kustomization's, else the app's."""
    return (
        kustomizations.get(document.path.parent, "")
        or document.namespace
        or (app.destination if app else "")
    )


def sync_options(document: Document) -> set[str]:
    """An Application's spec.syncPolicy.syncOptions, or a resource's sync-options annotation."""
    if document.kind == "Application":
        options = document.get("spec.syncPolicy.syncOptions") or []
        return {str(option).replace(" ", "") for option in options}
    annotations = document.get("metadata.annotations") or {}
    text = str(annotations.get("argocd.argoproj.io/sync-options", ""))
    return {part.strip() for part in text.split(",") if part.strip()}
