"""Schema checks: structure of every document, CRD schemas shipped in labkit/data, core kinds."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jsonschema

from labkit.errors import ConfigError
from labkit.manifests.documents import Document, Problem, is_kustomization, problem

__all__ = ["kubernetes_minor", "schema", "structure"]

_SCHEMAS = Path(__file__).parent.parent / "data" / "crd-schemas"
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# Kinds without a namespace; every other kind the lab uses is namespaced.
_CLUSTER_SCOPED = {
    "APIService",
    "ClusterIssuer",
    "ClusterRole",
    "ClusterRoleBinding",
    "ClusterSecretStore",
    "CustomResourceDefinition",
    "IngressClass",
    "MutatingWebhookConfiguration",
    "Namespace",
    "PersistentVolume",
    "PriorityClass",
    "StorageClass",
    "ValidatingWebhookConfiguration",
}
_MESSAGE_LIMIT = 240
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_OBJECT_META = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "generateName": {"type": "string"},
        "namespace": {"type": "string"},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
        "finalizers": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": False,
}


def structure(document: Document, kustomizations: dict[Path, str]) -> list[Problem]:
    """apiVersion, kind, a DNS name, and a namespace exactly where the kind is namespaced."""
    problems: list[Problem] = []
    for field in ("apiVersion", "kind"):
        if not isinstance(document.data.get(field), str) or not document.data[field]:
            problems.append(problem(document, field, "required but missing"))
    if problems or is_kustomization(document):
        return problems
    name = document.get("metadata.name")
    if not isinstance(name, str) or not name:
        problems.append(problem(document, "metadata.name", "required but missing"))
    elif not _DNS_SUBDOMAIN.match(name) or len(name) > 253:
        problems.append(problem(document, "metadata.name", f"{name!r} is not a lowercase DNS name"))
    imposed = kustomizations.get(document.path.parent, "")
    if document.kind in _CLUSTER_SCOPED:
        if document.namespace:
            problems.append(
                problem(
                    document,
                    "metadata.namespace",
                    f"{document.kind} is cluster-scoped, yet namespace {document.namespace!r} "
                    "is set; remove it",
                )
            )
    elif not document.namespace and not imposed:
        problems.append(
            problem(
                document,
                "metadata.namespace",
                f"{document.kind} is namespaced but no namespace is set here or in "
                "the folder's kustomization.yaml; it would land in whatever namespace ArgoCD uses",
            )
        )
    elif imposed and document.namespace and document.namespace != imposed:
        problems.append(
            problem(
                document,
                "metadata.namespace",
                f"says {document.namespace!r} but kustomization.yaml sets namespace "
                f"{imposed!r}, which overrides it",
            )
        )
    return problems


def schema(document: Document, kubernetes: str) -> list[Problem]:
    """Every schema violation: CRD schemas for custom resources, Kubernetes' for core kinds."""
    if not document.kind or not document.api_version or is_kustomization(document):
        return []
    version = document.api_version.rpartition("/")[2]
    crd = _SCHEMAS / document.group / f"{document.kind.lower()}_{version}.json"
    if document.group and "." in document.group and not document.group.endswith(".k8s.io"):
        if not crd.is_file():
            return [
                problem(
                    document,
                    "apiVersion",
                    f"no schema for {document.api_version} {document.kind}; add the CRD's "
                    f"JSON schema as {crd.relative_to(_SCHEMAS.parent.parent)}",
                )
            ]
        return [
            problem(document, field, message)
            for field, message in _schema_errors(_crd_validator(crd), document.data)
        ]
    return _core_schema(document, kubernetes)


@functools.cache
def _crd_validator(path: Path) -> jsonschema.protocols.Validator:
    schema = json.loads(path.read_text(encoding="utf-8"))
    # CRD schemas describe spec and status only; the API server would silently prune any other
    # top-level key (a misspelt "spec" deploys an empty resource), so forbid them here, and
    # check metadata as the ObjectMeta fields a manifest may set.
    properties = schema.setdefault("properties", {})
    properties["apiVersion"] = {"type": "string"}
    properties["kind"] = {"type": "string"}
    properties["metadata"] = _OBJECT_META
    schema.setdefault("additionalProperties", False)
    import jsonschema  # noqa: PLC0415 - loading it costs seconds; only validation needs it

    validator_class = jsonschema.validators.validator_for(schema, jsonschema.Draft7Validator)
    validator: jsonschema.protocols.Validator = validator_class(schema)
    return validator


def _schema_errors(
    validator: jsonschema.protocols.Validator, data: dict[str, Any]
) -> Iterator[tuple[str, str]]:
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.path))):
        yield _describe(error)


def _describe(error: jsonschema.ValidationError) -> tuple[str, str]:
    """Field path and message; unknown and missing keys are named as fields of their own."""
    path = [str(part) for part in error.absolute_path]
    message = error.message
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        schema = error.schema if isinstance(error.schema, dict) else {}
        allowed = set(schema.get("properties", {}))
        unknown = sorted(key for key in error.instance if key not in allowed)
        if unknown:
            path.append(str(unknown[0]))
            names = ", ".join(repr(key) for key in unknown)
            message = f"unknown field ({names} not in the schema; check spelling and nesting)"
    elif error.validator == "required":
        missing = re.match(r"'([^']+)' is a required property", error.message)
        if missing:
            path.append(missing.group(1))
            message = "required but missing"
    if len(message) > _MESSAGE_LIMIT:
        message = message[: _MESSAGE_LIMIT - 3] + "..."
    return ".".join(path) or "(top level)", message


def _core_schema(document: Document, kubernetes: str) -> list[Problem]:
    text = json.dumps(document.data, sort_keys=True, default=str)
    return [
        problem(document, field, message)
        for field, message in _core_errors(text, document.api_version, document.kind, kubernetes)
    ]


# kubernetes-validate rereads its 1.4 MB definitions file on every call; the same document
# always gets the same answer, so remember it (a tree is validated many times in tests).
@functools.lru_cache(maxsize=1024)
def _core_errors(
    text: str, api_version: str, kind: str, kubernetes: str
) -> tuple[tuple[str, str], ...]:
    import kubernetes_validate  # type: ignore[import-untyped]  # noqa: PLC0415 - slow to load

    try:
        kubernetes_validate.validate(json.loads(text), kubernetes, strict=True)
    except kubernetes_validate.ValidationError as exc:
        field, message = _describe(exc)
        return ((field, f"{message} (Kubernetes {exc.version} schema)"),)
    except kubernetes_validate.SchemaNotFoundError:
        return (("apiVersion", f"Kubernetes {kubernetes} has no {api_version} {kind}"),)
    return ()


def kubernetes_minor(k3s: str) -> str:
    """'v1.33.6+k3s1' -> '1.33', capped at the newest schemas kubernetes-validate ships."""
    match = re.match(r"^v?(\d+)\.(\d+)", k3s)
    if not match:
        raise ConfigError(f"versions.k3s {k3s!r} does not start with a Kubernetes version")
    import kubernetes_validate  # noqa: PLC0415 - slow to load

    newest = kubernetes_validate.latest_version()
    wanted = (int(match.group(1)), int(match.group(2)))
    shipped = tuple(int(part) for part in newest.split(".")[:2])
    return f"{wanted[0]}.{wanted[1]}" if wanted <= shipped else ".".join(map(str, shipped))
