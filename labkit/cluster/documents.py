"""Multi-document YAML for the cluster: parse, drop empty documents, order for applying."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from labkit.errors import ConfigError

__all__ = ["apply_order", "load_documents", "parse_documents"]

# What must exist before other objects can be applied: namespaces and CRDs first,
# then what pods need (accounts, RBAC, config), then workloads; unknown kinds last.
_FIRST = (
    "Namespace",
    "CustomResourceDefinition",
    "ServiceAccount",
    "ClusterRole",
    "Role",
    "ClusterRoleBinding",
    "RoleBinding",
    "ConfigMap",
    "Secret",
    "Service",
)


def parse_documents(text: str, where: str = "manifest") -> list[dict[str, Any]]:
    """Every non-empty mapping document of ``text``; ConfigError names a broken one."""
    try:
        loaded = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{where}:{line} is not valid YAML; fix the file") from None
    documents: list[dict[str, Any]] = []
    for index, document in enumerate(loaded, start=1):
        if document is None:
            continue
        if not isinstance(document, dict) or "kind" not in document or "apiVersion" not in document:
            raise ConfigError(
                f"{where}: document {index} is not a Kubernetes object (needs apiVersion and kind)"
            )
        if document["kind"].endswith("List") and "items" in document:
            documents.extend(document.get("items") or [])
        else:
            documents.append(document)
    return documents


def load_documents(path: Path) -> list[dict[str, Any]]:
    """The objects in the YAML file at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path} cannot be read ({exc.strerror}); check the path") from None
    return parse_documents(text, str(path))


def apply_order(documents: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``documents`` ordered: namespaces and CRDs, then RBAC and config, then the rest."""
    rank = {kind: index for index, kind in enumerate(_FIRST)}
    ordered = sorted(
        enumerate(documents), key=lambda pair: (rank.get(str(pair[1].get("kind")), 99), pair[0])
    )
    return [dict(document) for _, document in ordered]
