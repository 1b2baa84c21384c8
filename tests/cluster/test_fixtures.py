"""The double's fixtures are shaped like real objects: every one passes its schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.manifests.documents import Document
from labkit.manifests.schemas import schema
from tests.kubeapi import Store, fixtures

# Written by the API server, not part of the ObjectMeta a custom resource's schema check allows.
_SERVER_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields")


def _as_checked(data: dict[str, object]) -> dict[str, object]:
    if "." not in str(data.get("apiVersion", "")).rpartition("/")[0] or str(
        data.get("apiVersion", "")
    ).split("/")[0].endswith(".k8s.io"):
        return data
    metadata = {k: v for k, v in dict(data["metadata"]).items() if k not in _SERVER_METADATA}  # type: ignore[call-overload]
    return {**data, "metadata": metadata}


def _states() -> dict[str, Store]:
    states = {}
    for name, breaks in {
        "healthy": [],
        "node-not-ready": [lambda s: fixtures.node_not_ready(s, "k3s-node-02")],
        "crashing": [lambda s: fixtures.pod_crashing(s, "argocd", "argocd-server")],
        "degraded": [lambda s: fixtures.application_degraded(s, "redis")],
        "traefik": [fixtures.traefik_present],
    }.items():
        store = Store()
        fixtures.healthy_lab(store)
        for change in breaks:
            change(store)
        states[name] = store
    return states


@pytest.mark.parametrize("state", sorted(_states()))
def test_every_fixture_object_passes_its_schema(state: str) -> None:
    store = _states()[state]
    problems = []
    for key, data in store.objects.items():
        document = Document(Path(f"double/{'/'.join(key)}"), 1, _as_checked(data))
        problems += [str(p) for p in schema(document, "1.31")]
    assert problems == []
    assert len(store.objects) > 30


def test_a_malformed_fixture_would_be_caught() -> None:
    """The schema check above can fail: a Node with a misspelt status field does."""
    bad = fixtures.node("k3s-node-01", 0)
    bad["status"]["conditionz"] = bad["status"].pop("conditions")
    problems = schema(Document(Path("double/node"), 1, bad), "1.31")
    assert problems, "a misspelt status field must be a schema problem"
