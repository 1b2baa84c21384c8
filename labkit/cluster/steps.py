"""KubeObject: an object to server-side-apply, as a step that says what it would change.

Its diff reads only: the live object, and a server-side dry run of the apply
(the object as the server would hold it, defaults included). It compares the
two on the fields labkit manages (the manifest's fields, plus what labkit owned
before and would drop) and says create, change (field by field, before ->
after) or unchanged. Applying is one server-side apply (field manager
``labkit``); a CRD is then awaited until Established so its resources can follow.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from labkit.cluster.client import FIELD_MANAGER, Cluster, describe
from labkit.errors import ApplyConflict, NotFound
from labkit.steps.base import Change, Diff

__all__ = ["ApplyChange", "KubeObject", "field_changes", "managed_paths"]

FieldPath = tuple[str, ...]
_MISSING = object()
_SERVER_OWNED = {
    ("metadata", "uid"),
    ("metadata", "resourceVersion"),
    ("metadata", "generation"),
    ("metadata", "creationTimestamp"),
    ("metadata", "managedFields"),
}
_SHOWN = 60  # characters of a value shown in a plan


def _leaves(data: Any, prefix: FieldPath = ()) -> list[FieldPath]:
    if isinstance(data, dict) and data:
        return [path for key, value in data.items() for path in _leaves(value, (*prefix, key))]
    return [prefix]


def _at(data: Any, path: FieldPath) -> Any:
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return _MISSING
        data = data[part]
    return data


def _fields_v1_paths(trie: Mapping[str, Any], prefix: FieldPath = ()) -> list[FieldPath]:
    """Paths of a managedFields ``fieldsV1`` trie; list entries (``k:``/``v:``) end at the list."""
    paths: list[FieldPath] = []
    for key, child in trie.items():
        if key == ".":
            continue
        if not key.startswith("f:"):
            return [prefix]
        path = (*prefix, key[2:])
        paths.extend(_fields_v1_paths(child, path) if child else [path])
    return paths


def managed_paths(live: Mapping[str, Any], manager: str = FIELD_MANAGER) -> list[FieldPath]:
    """The field paths ``manager`` owns in ``live`` (from ``metadata.managedFields``)."""
    paths: list[FieldPath] = []
    for entry in (live.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            paths += _fields_v1_paths(entry.get("fieldsV1") or {})
    return paths


def _shown(value: Any, secret: bool) -> str:
    if value is _MISSING:
        return "(absent)"
    if secret:
        return "(secret value)"
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def field_changes(
    manifest: Mapping[str, Any],
    live: Mapping[str, Any],
    dry_run: Mapping[str, Any],
    manager: str = FIELD_MANAGER,
) -> list[tuple[str, str, str]]:
    """(field, before, after) for every field ``manager`` sets or set that the apply changes."""
    secret = manifest.get("kind") == "Secret"
    wanted = [p for p in _leaves(dict(manifest)) if p[:1] not in {("apiVersion",), ("kind",)}]
    paths = dict.fromkeys([*wanted, *managed_paths(live, manager)])
    changes = []
    for path in paths:
        if path[:1] == ("status",) or path in _SERVER_OWNED:
            continue  # the server's, not labkit's
        before, after = _at(live, path), _at(dry_run, path)
        if before != after:
            hidden = secret and path[:1] in {("data",), ("stringData",)}
            changes.append(("." + ".".join(path), _shown(before, hidden), _shown(after, hidden)))
    return changes


@dataclass(frozen=True)
class ApplyChange(Change):
    """A server-side apply of one object; evidence shows it as the request it is."""

    force: bool = False
    field_manager: str = FIELD_MANAGER

    def command(self) -> str:
        """``server-side apply (fieldManager=labkit, force)``: no argv runs on a node."""
        forced = ", force" if self.force else ""
        return f"server-side apply (fieldManager={self.field_manager}{forced})"


@dataclass(frozen=True, repr=False)
class KubeObject:
    """A desired Kubernetes object (server-side applied); ``force`` takes over owned fields."""

    manifest: Mapping[str, Any] = field(hash=False)
    force: bool = False
    field_manager: str = FIELD_MANAGER  # another one keeps a second set of fields apart

    @property
    def name(self) -> str:
        """``Deployment argocd/argocd-server``: the step's name in a plan."""
        return describe(self.manifest)

    def diff(self, cluster: Cluster) -> Diff:
        """Create, change (labkit-managed fields, before -> after) or unchanged; reads only."""
        metadata = self.manifest.get("metadata") or {}
        kind, api_version = str(self.manifest.get("kind")), self.manifest.get("apiVersion")
        try:
            live = cluster.get(
                kind, metadata.get("name", ""), metadata.get("namespace"), api_version
            )
        except NotFound:
            live = None  # its kind is not served yet: a CRD earlier in the plan brings it
        if live is None:
            count = len(_leaves(dict(self.manifest)))
            change = self._change(cluster, f"create {self.name}", "absent", f"{count} fields")
            return Diff.change(change)
        try:
            would = cluster.apply(
                self.manifest, force=self.force, dry_run=True, field_manager=self.field_manager
            )
        except ApplyConflict as exc:
            return Diff.cannot(f"{exc}")
        changes = field_changes(self.manifest, live, would, self.field_manager)
        if not changes:
            return Diff.none(f"{self.name} unchanged")
        before = "; ".join(f"{path}={old}" for path, old, _ in changes)
        after = "; ".join(f"{path}={new}" for path, _, new in changes)
        fields = ", ".join(path for path, _, _ in changes)
        return Diff.change(self._change(cluster, f"change {self.name}: {fields}", before, after))

    def _change(self, cluster: Cluster, summary: str, before: str, after: str) -> Change:
        def apply() -> None:
            self.apply(cluster)

        return ApplyChange(
            summary, before, after, local=apply, force=self.force, field_manager=self.field_manager
        )

    def apply(self, cluster: Cluster) -> dict[str, Any]:
        """Server-side apply; a CRD is awaited until Established, then discovery refreshed."""
        applied = cluster.apply(self.manifest, force=self.force, field_manager=self.field_manager)
        if self.manifest.get("kind") == "CustomResourceDefinition":
            cluster.wait_for(
                "CustomResourceDefinition",
                str(applied["metadata"]["name"]),
                condition="Established",
                timeout_s=min(cluster.wait_timeout_s, 120.0),
            )
            cluster.refresh_discovery()
        return applied

    def __repr__(self) -> str:
        return f"KubeObject({self.name})"
