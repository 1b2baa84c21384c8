"""Manifest documents: loading every YAML document under manifests/, and the Problem they report."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "Document",
    "Problem",
    "default_root",
    "field_value",
    "is_kustomization",
    "kustomization_namespaces",
    "load_documents",
    "problem",
    "seconds",
    "sources",
]

_KUSTOMIZE_GROUP = "kustomize.config.k8s.io"


@dataclass(frozen=True)
class Document:
    """One YAML document of one manifest file."""

    path: Path  # relative to the repository root, e.g. manifests/redis/statefulset.yaml
    index: int  # 1-based position in its file
    data: dict[str, Any]

    @property
    def kind(self) -> str:
        """The document's kind, or '' when it has none."""
        return str(self.data.get("kind", ""))

    @property
    def api_version(self) -> str:
        """The document's apiVersion, or '' when it has none."""
        return str(self.data.get("apiVersion", ""))

    @property
    def group(self) -> str:
        """The API group ('' for the core group)."""
        return self.api_version.rpartition("/")[0]

    @property
    def name(self) -> str:
        """metadata.name, or '' when missing."""
        return str(field_value(self.data, "metadata.name") or "")

    @property
    def namespace(self) -> str:
        """metadata.namespace, or '' when not set in the document."""
        return str(field_value(self.data, "metadata.namespace") or "")

    @property
    def label(self) -> str:
        """How a problem names this document: position, kind and namespace/name."""
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"document {self.index}, {self.kind or '?'} {where or '?'}"

    def get(self, field: str) -> Any:
        """The value at a dotted field path (list items by number), or None."""
        return field_value(self.data, field)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the manifests: file, document, field, and what was seen."""

    file: str
    document: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file} [{self.document}] {self.field}: {self.message}"


def load_documents(root: Path) -> tuple[list[Document], list[Problem]]:
    """Every YAML document under ``root``, and a Problem for each file that does not parse."""
    base = root.resolve().parent
    documents: list[Document] = []
    problems: list[Problem] = []
    for path in sorted([*root.rglob("*.yaml"), *root.rglob("*.yml")]):
        relative = path.relative_to(base)
        try:
            loaded = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}" if mark else "(file)"
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            problems.append(Problem(str(relative), "file", where, f"not valid YAML: {problem}"))
            continue
        for index, data in enumerate(loaded, start=1):
            if data is None:  # an empty document, e.g. a trailing '---'
                continue
            if not isinstance(data, dict):
                problems.append(
                    Problem(
                        str(relative),
                        f"document {index}",
                        "(top level)",
                        f"a manifest is a mapping, saw {type(data).__name__}",
                    )
                )
                continue
            documents.append(Document(relative, index, data))
    return documents, problems


def field_value(data: Any, field: str) -> Any:
    """The value at a dotted field path (list items by number), or None."""
    for part in field.split("."):
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def problem(document: Document, field: str, message: str) -> Problem:
    """A Problem about ``field`` of ``document``."""
    return Problem(str(document.path), document.label, field, message)


def is_kustomization(document: Document) -> bool:
    """True for a kustomization.yaml (kustomize's own config, not a Kubernetes resource)."""
    return document.group == _KUSTOMIZE_GROUP and document.kind == "Kustomization"


def kustomization_namespaces(documents: list[Document]) -> dict[Path, str]:
    """Directory -> the namespace its kustomization.yaml imposes ('' when none)."""
    return {
        document.path.parent: str(document.data.get("namespace") or "")
        for document in documents
        if is_kustomization(document)
    }


def sources(document: Document) -> Iterator[tuple[str, dict[str, Any]]]:
    """An Application's sources with their field paths (spec.source, spec.sources.N)."""
    source = document.get("spec.source")
    if isinstance(source, dict):
        yield "spec.source", source
    sources = document.get("spec.sources")
    if isinstance(sources, list):
        for index, item in enumerate(sources):
            if isinstance(item, dict):
                yield f"spec.sources.{index}", item


def seconds(value: Any) -> float | None:
    """An Envoy/Istio duration ('5s', '500ms', '1m', '1.5s') in seconds, or None."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", str(value).strip())
    if not match:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[match.group(2)]
    return float(match.group(1)) * scale


def default_root() -> Path:
    """The manifests/ folder of the repository this labkit was installed from."""
    return Path(__file__).resolve().parents[2] / "manifests"
