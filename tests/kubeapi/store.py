"""The double's object store: resources known to discovery, objects, server-side apply.

Server-side apply follows the API server's rules closely enough for labkit's
plan and apply to be tested at the wire: each field manager owns a set of
field paths (recorded in ``metadata.managedFields`` as ``fieldsV1``); applying
a configuration sets its fields, removes the fields the manager owned before
and no longer names (unless another manager owns them), and conflicts (409)
when another manager owns a field the configuration sets to a different
value, unless ``force``. Lists are atomic (one field), which is how the API
server treats lists without merge keys.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

Path = tuple[str, ...]
Key = tuple[str, str, str, str]  # group, plural, namespace ("" when cluster-scoped), name

# Fields the server owns: never part of a manager's set, never compared.
_SERVER_FIELDS: tuple[Path, ...] = (
    ("apiVersion",),
    ("kind",),
    ("status",),
    ("metadata", "name"),
    ("metadata", "namespace"),
    ("metadata", "uid"),
    ("metadata", "resourceVersion"),
    ("metadata", "generation"),
    ("metadata", "creationTimestamp"),
    ("metadata", "managedFields"),
    ("metadata", "deletionTimestamp"),
)


@dataclass(frozen=True)
class Resource:
    """One kind as discovery lists it."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    subresources: tuple[str, ...] = ("status",)
    short_names: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        """``v1`` or ``apps/v1``."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def discovery(self) -> list[dict[str, Any]]:
        """This resource and its subresources as APIResource entries."""
        verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
        main = {
            "name": self.plural,
            "singularName": self.kind.lower(),
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": verbs,
            "shortNames": list(self.short_names),
        }
        subs = [
            {
                "name": f"{self.plural}/{sub}",
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind if sub == "status" else "Status",
                "verbs": ["get", "patch", "update"] if sub == "status" else ["get", "create"],
            }
            for sub in self.subresources
        ]
        return [main, *subs]


BUILTIN: tuple[Resource, ...] = (
    Resource("", "v1", "Namespace", "namespaces", False, short_names=("ns",)),
    Resource("", "v1", "Node", "nodes", False, short_names=("no",)),
    Resource("", "v1", "Pod", "pods", True, ("status", "log", "exec", "portforward")),
    Resource("", "v1", "Service", "services", True, ("status", "proxy")),
    Resource("", "v1", "ConfigMap", "configmaps", True, ()),
    Resource("", "v1", "Secret", "secrets", True, ()),
    Resource("", "v1", "ServiceAccount", "serviceaccounts", True, ()),
    Resource("", "v1", "Event", "events", True, ()),
    Resource("", "v1", "Endpoints", "endpoints", True, ()),
    Resource("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True),
    Resource("", "v1", "PersistentVolume", "persistentvolumes", False),
    Resource("apps", "v1", "Deployment", "deployments", True, ("status", "scale")),
    Resource("apps", "v1", "StatefulSet", "statefulsets", True, ("status", "scale")),
    Resource("apps", "v1", "DaemonSet", "daemonsets", True),
    Resource("apps", "v1", "ReplicaSet", "replicasets", True),
    Resource("batch", "v1", "Job", "jobs", True),
    Resource("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", True),
    Resource("storage.k8s.io", "v1", "StorageClass", "storageclasses", False, ()),
    Resource("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False, ()),
    Resource(
        "rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False, ()
    ),
    Resource("rbac.authorization.k8s.io", "v1", "Role", "roles", True, ()),
    Resource("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True, ()),
    Resource("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", True, ()),
    Resource(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        False,
        short_names=("crd",),
    ),
)


class ApiFailure(Exception):
    """An API error the server answers with a Status object."""

    def __init__(
        self, code: int, reason: str, message: str, causes: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.causes = causes or []

    def status(self) -> dict[str, Any]:
        """The Status body a real API server sends."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.causes:
            body["details"] = {"causes": self.causes}
        return body


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def leaf_paths(data: Any, prefix: Path = ()) -> list[Path]:
    """Every leaf's path: a scalar, a list (atomic) or an empty mapping ends a path."""
    if isinstance(data, dict) and data:
        paths: list[Path] = []
        for key, value in data.items():
            paths.extend(leaf_paths(value, (*prefix, str(key))))
        return paths
    return [prefix]


def value_at(data: Any, path: Path) -> Any:
    """The value at ``path``, or ``_MISSING``."""
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return _MISSING
        data = data[part]
    return data


_MISSING = object()


def _set(data: dict[str, Any], path: Path, value: Any) -> None:
    for part in path[:-1]:
        child = data.get(part)
        if not isinstance(child, dict):
            child = data[part] = {}
        data = child
    data[path[-1]] = copy.deepcopy(value)


def _remove(data: dict[str, Any], path: Path) -> None:
    parents = [data]
    for part in path[:-1]:
        child = parents[-1].get(part)
        if not isinstance(child, dict):
            return
        parents.append(child)
    parents[-1].pop(path[-1], None)
    for depth in range(len(path) - 1, 0, -1):  # drop mappings left empty
        if parents[depth]:
            break
        parents[depth - 1].pop(path[depth - 1], None)


def _owned(path: Path) -> bool:
    return not any(path[: len(server)] == server for server in _SERVER_FIELDS)


def _overlaps(one: Path, other: Path) -> bool:
    shorter = min(len(one), len(other))
    return one[:shorter] == other[:shorter]


def fields_v1(paths: list[Path]) -> dict[str, Any]:
    """Paths as the API server's ``fieldsV1`` trie (``{"f:spec": {"f:replicas": {}}}``)."""
    trie: dict[str, Any] = {}
    for path in paths:
        node = trie
        for part in path:
            node = node.setdefault(f"f:{part}", {})
    return trie


def paths_of(trie: dict[str, Any], prefix: Path = ()) -> list[Path]:
    """Inverse of ``fields_v1``; a ``k:``/``v:`` entry ends the path at its list."""
    paths: list[Path] = []
    for key, child in trie.items():
        if key == ".":
            continue
        if not key.startswith("f:"):
            return [prefix]
        path = (*prefix, key[2:])
        paths.extend(paths_of(child, path) if child else [path])
    return paths


# A hook runs after every stored write: (store, verb, object). Scripted controllers use it.
Hook = Callable[["Store", str, dict[str, Any]], None]


@dataclass
class Store:
    """Objects by key, the resources discovery lists, and the scripted controllers' hooks."""

    resources: list[Resource] = field(default_factory=lambda: list(BUILTIN))
    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    logs: dict[tuple[str, str, str], str] = field(default_factory=dict)
    hooks: list[Hook] = field(default_factory=list)
    # (namespace, pod) -> what running a command there prints: (argv, container) -> (code, out, err)
    exec_handlers: dict[tuple[str, str], Callable[[list[str], str], tuple[int, str, str]]] = field(
        default_factory=dict
    )
    lock: threading.RLock = field(default_factory=threading.RLock)
    _versions: Iterator[int] = field(default_factory=lambda: itertools.count(1000))

    # -- resources -------------------------------------------------------------------------

    def resource(self, group: str, version: str, plural: str) -> Resource:
        """The resource served at ``/apis/group/version/plural``; 404 when unknown."""
        for resource in self.resources:
            if (resource.group, resource.version, resource.plural) == (group, version, plural):
                return resource
        raise ApiFailure(
            404, "NotFound", f"the server could not find the requested resource ({plural})"
        )

    def resource_for(self, api_version: str, kind: str) -> Resource:
        """The resource of ``kind`` in ``api_version``; 404 when no such kind is served."""
        group, _, version = api_version.rpartition("/")
        for resource in self.resources:
            if (resource.group, resource.version, resource.kind) == (group, version, kind):
                return resource
        raise ApiFailure(
            404, "NotFound", f'no matches for kind "{kind}" in version "{api_version}"'
        )

    def _serve_crd(self, crd: dict[str, Any]) -> None:
        spec = crd.get("spec", {})
        names = spec.get("names", {})
        for version in spec.get("versions", []):
            resource = Resource(
                spec.get("group", ""),
                version.get("name", "v1"),
                names.get("kind", ""),
                names.get("plural", ""),
                spec.get("scope", "Namespaced") == "Namespaced",
                ("status",) if "status" in (version.get("subresources") or {}) else (),
                tuple(names.get("shortNames", [])),
            )
            if resource not in self.resources:
                self.resources.append(resource)
        crd["status"] = {
            "acceptedNames": names,
            "storedVersions": [v.get("name") for v in spec.get("versions", [])],
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts"},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted"},
            ],
        }

    # -- objects ---------------------------------------------------------------------------

    def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any]:
        """A deep copy of the object; 404 names it as the API server does."""
        with self.lock:
            found = self.objects.get(self._key(resource, namespace, name))
            if found is None:
                noun = f"{resource.plural}.{resource.group}" if resource.group else resource.plural
                raise ApiFailure(404, "NotFound", f'{noun} "{name}" not found')
            return copy.deepcopy(found)

    def list(self, resource: Resource, namespace: str = "") -> list[dict[str, Any]]:
        """Objects of ``resource`` (in ``namespace`` when given), by namespace and name."""
        with self.lock:
            return [
                copy.deepcopy(data)
                for key, data in sorted(self.objects.items())
                if key[:2] == (resource.group, resource.plural)
                and (not namespace or key[2] == namespace)
            ]

    def put(self, data: dict[str, Any]) -> dict[str, Any]:
        """Store a fixture as given (status included), filling server fields; no hooks run."""
        with self.lock:
            resource = self.resource_for(data["apiVersion"], data["kind"])
            stored = copy.deepcopy(data)
            self._stamp(stored, None)
            if resource.kind == "CustomResourceDefinition" and "status" not in data:
                self._serve_crd(stored)
            elif resource.kind == "CustomResourceDefinition":
                self._serve_crd(copy.deepcopy(stored))
            metadata = stored["metadata"]
            self.objects[self._key(resource, metadata.get("namespace", ""), metadata["name"])] = (
                stored
            )
            return copy.deepcopy(stored)

    def update_status(
        self, api_version: str, kind: str, namespace: str, name: str, status: dict[str, Any]
    ) -> None:
        """Replace an object's status, as its controller would (bumps resourceVersion)."""
        with self.lock:
            resource = self.resource_for(api_version, kind)
            key = self._key(resource, namespace, name)
            if key not in self.objects:
                raise KeyError(f"{kind} {namespace}/{name} is not in the double")
            self.objects[key]["status"] = copy.deepcopy(status)
            self.objects[key]["metadata"]["resourceVersion"] = str(next(self._versions))

    def create(self, resource: Resource, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST: a new object; 409 AlreadyExists when the name is taken."""
        name = body.get("metadata", {}).get("name", "")
        with self.lock:
            self._require_namespace(resource, namespace)
            if self._key(resource, namespace, name) in self.objects:
                raise ApiFailure(409, "AlreadyExists", f'{resource.plural} "{name}" already exists')
            stored = copy.deepcopy(body)
            stored.setdefault("metadata", {})
            if resource.namespaced:
                stored["metadata"]["namespace"] = namespace
            self._stamp(stored, None)
            self._default(resource, stored)
            stored["metadata"]["managedFields"] = [
                self._entry("labkit-test", "Update", leaf_paths(body), stored)
            ]
            self._store(resource, stored, "create")
            return copy.deepcopy(stored)

    def delete(self, resource: Resource, namespace: str, name: str) -> dict[str, Any]:
        """DELETE: removes the object (a Namespace takes its objects with it)."""
        with self.lock:
            gone = self.get(resource, namespace, name)
            key = self._key(resource, namespace, name)
            if gone["metadata"].get("finalizers"):  # held until a controller removes them
                self.objects[key]["metadata"].setdefault("deletionTimestamp", _now())
                return copy.deepcopy(self.objects[key])
            del self.objects[key]
            if resource.kind == "Namespace":
                for key in [key for key in self.objects if key[2] == name]:
                    del self.objects[key]
        self._run_hooks("delete", gone)
        return gone

    def apply(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        config: dict[str, Any],
        manager: str,
        force: bool,
        dry_run: bool,
    ) -> tuple[dict[str, Any], bool]:
        """Server-side apply of ``config`` by ``manager``; returns (object, created)."""
        if not manager:
            raise ApiFailure(
                400, "BadRequest", "PATCH with apply-patch+yaml requires a fieldManager"
            )
        config = copy.deepcopy(config)
        metadata = config.setdefault("metadata", {})
        if metadata.get("name", name) != name:
            raise ApiFailure(
                400, "BadRequest", "the name of the object does not match the name on the URL"
            )
        config.pop("status", None)  # status is a subresource: the main resource ignores it
        with self.lock:
            self._require_namespace(resource, namespace)
            key = self._key(resource, namespace, name)
            live = self.objects.get(key)
            created = live is None
            result = copy.deepcopy(live) if live is not None else {}
            applied = [path for path in leaf_paths(config) if _owned(path)]
            managers = self._managers(result)
            conflicts = [
                (other, path)
                for other, paths in managers.items()
                if other != manager
                for path in applied
                for owned in paths
                if _overlaps(path, owned)
                and value_at(result, owned) != value_at(config, owned)
                and value_at(result, owned) is not _MISSING
            ]
            if conflicts and not force:
                causes = [
                    {
                        "type": "FieldManagerConflict",
                        "message": f'conflict with "{other}"',
                        "field": "." + ".".join(path),
                    }
                    for other, path in conflicts
                ]
                listed = "\n".join(
                    f'- conflict with "{other}": .{".".join(path)}' for other, path in conflicts
                )
                raise ApiFailure(
                    409,
                    "Conflict",
                    f"Apply failed with {len(conflicts)} conflict(s):\n{listed}",
                    causes,
                )
            for other, path in conflicts:  # forced: the fields change hands
                managers[other] = [p for p in managers[other] if not _overlaps(p, path)]
            before = set(managers.get(manager, []))
            others = {p for o, ps in managers.items() if o != manager for p in ps}
            for path in before - set(applied) - others:
                _remove(result, path)
            for path in applied:
                _set(result, path, value_at(config, path))
            result["apiVersion"] = resource.api_version
            result["kind"] = resource.kind
            result.setdefault("metadata", {})["name"] = name
            if resource.namespaced:
                result["metadata"]["namespace"] = namespace
            managers[manager] = applied
            entries = [
                self._entry(owner, "Apply" if owner == manager else "Update", paths, result)
                for owner, paths in managers.items()
                if paths
            ]
            self._default(resource, result)
            changed = live is None or self._content(result) != self._content(live)
            self._stamp(result, live, spec_changed=changed)
            result["metadata"]["managedFields"] = entries
            if live is not None and not changed and not dry_run:
                result["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
            if dry_run:
                return result, created
            if resource.kind == "CustomResourceDefinition":
                self._serve_crd(result)
            if changed or managers != self._managers(live or {}):
                self._store(resource, result, "create" if created else "apply")
            return copy.deepcopy(result), created

    # -- internals -------------------------------------------------------------------------

    @staticmethod
    def _key(resource: Resource, namespace: str, name: str) -> Key:
        return (resource.group, resource.plural, namespace if resource.namespaced else "", name)

    def _require_namespace(self, resource: Resource, namespace: str) -> None:
        if not resource.namespaced:
            return
        if ("", "namespaces", "", namespace) not in self.objects:
            raise ApiFailure(404, "NotFound", f'namespaces "{namespace}" not found')

    def _stamp(
        self, data: dict[str, Any], live: dict[str, Any] | None, spec_changed: bool = True
    ) -> None:
        metadata = data.setdefault("metadata", {})
        if live is None:
            metadata.setdefault("uid", str(uuid.uuid4()))
            metadata.setdefault("creationTimestamp", _now())
            metadata.setdefault("generation", 1)
        elif spec_changed and data.get("spec") != live.get("spec"):
            metadata["generation"] = int(live["metadata"].get("generation", 1)) + 1
        metadata["resourceVersion"] = str(next(self._versions))

    @staticmethod
    def _default(resource: Resource, data: dict[str, Any]) -> None:
        """A few of the API server's defaults, so a plan must not mistake them for drift."""
        spec = data.get("spec")
        if resource.kind == "Service" and isinstance(spec, dict):
            spec.setdefault("type", "ClusterIP")
            spec.setdefault("clusterIP", f"10.43.0.{sum(map(ord, str(data))) % 250 + 2}")
            spec.setdefault("sessionAffinity", "None")
        if resource.kind in {"Deployment", "StatefulSet"} and isinstance(spec, dict):
            spec.setdefault("replicas", 1)
            spec.setdefault("revisionHistoryLimit", 10)
        if resource.kind == "Secret":
            data.setdefault("type", "Opaque")
        if resource.kind == "PersistentVolumeClaim":
            data.setdefault("status", {"phase": "Pending"})

    @staticmethod
    def _content(data: dict[str, Any]) -> dict[str, Any]:
        copied = copy.deepcopy(data)
        for name in ("resourceVersion", "managedFields", "generation"):
            copied.get("metadata", {}).pop(name, None)
        return copied

    @staticmethod
    def _managers(data: dict[str, Any]) -> dict[str, list[Path]]:
        managers: dict[str, list[Path]] = {}
        for entry in data.get("metadata", {}).get("managedFields") or []:
            managers.setdefault(entry["manager"], []).extend(paths_of(entry.get("fieldsV1", {})))
        return managers

    def _entry(
        self, manager: str, operation: str, paths: list[Path], data: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "manager": manager,
            "operation": operation,
            "apiVersion": data.get("apiVersion", ""),
            "time": _now(),
            "fieldsType": "FieldsV1",
            "fieldsV1": fields_v1([path for path in paths if _owned(path)]),
        }

    def _store(self, resource: Resource, data: dict[str, Any], verb: str) -> None:
        metadata = data["metadata"]
        self.objects[self._key(resource, metadata.get("namespace", ""), metadata["name"])] = data
        self._run_hooks(verb, copy.deepcopy(data))

    def _run_hooks(self, verb: str, data: dict[str, Any]) -> None:
        for hook in list(self.hooks):
            hook(self, verb, data)
