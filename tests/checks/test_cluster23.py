"""Phase 2-3 cluster checks against the API double: a healthy lab passes, each breakage fails.

These are the ``needs="cluster"`` items (objects, status, logs). The data-plane items
reached through port-forwards are in tests/checks/test_data_cluster.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit.checks import Status, run_checks
from labkit.params import Lab, load_lab
from tests.kubeapi import KubeApi, Store, data_lab, fixtures

CLUSTER_ITEMS = [
    "2.1.1", "2.1.2", "2.1.3", "2.1.4", "2.1.5", "2.2.1", "2.2.2", "2.2.3", "2.2.4",
    "3.1.1", "3.1.2", "3.1.3", "3.1.4", "3.2.1", "3.2.2", "3.2.3",
]  # fmt: skip
LOCAL = Path(__file__).resolve().parents[2] / "params" / "local.yaml"

Results = dict[tuple[str, str], tuple[Status, str]]


@pytest.fixture
def api() -> Iterator[KubeApi]:
    with KubeApi() as double:
        data_lab.data_lab(double.store)
        yield double


def _run(api: KubeApi, directory: Path, ids: list[str]) -> Results:
    lab: Lab = api.lab(directory)
    return {(r.id, r.subject): (r.status, r.observed) for r in run_checks(lab, ids=ids)}


def test_a_healthy_lab_passes_every_phase_2_3_cluster_item(api: KubeApi, tmp_path: Path) -> None:
    results = _run(api, tmp_path, CLUSTER_ITEMS)
    failed = {key: value for key, value in results.items() if value[0] is not Status.PASS}
    assert failed == {}
    assert {key[0] for key in results} == set(CLUSTER_ITEMS)


def test_on_the_sandbox_they_skip_with_the_reason() -> None:
    results = run_checks(load_lab(LOCAL), ids=CLUSTER_ITEMS)
    assert {r.status for r in results} == {Status.SKIP}
    assert all("needs a Kubernetes API" in r.observed for r in results)


def _crash_operator(store: Store) -> None:
    fixtures.pod_crashing(store, "postgres-operator", "pgo-")
    store.objects[("apps", "deployments", "postgres-operator", "pgo")]["status"].pop(
        "readyReplicas"
    )


# (breakage, the item, the subject, words the observation must hold: object and what was seen)
BROKEN: list[tuple[str, Callable[[Store], Any], str, str, list[str]]] = [
    (
        "operator app degraded",
        lambda s: fixtures.application_degraded(s, "postgres-operator"),
        "2.1.2",
        "postgres-operator",
        ["OutOfSync/Degraded", "does not manage Deployment postgres-operator/pgo"],
    ),
    (
        "operator app missing",
        lambda s: s.objects.pop(("argoproj.io", "applications", "argocd", "postgres-operator")),
        "2.1.1",
        "postgres-operator",
        ["no Application argocd/postgres-operator"],
    ),
    (
        "operator crashing",
        _crash_operator,
        "2.1.3",
        "",
        ["pgo-6d9b8c7f5d-qx7vz", "CrashLoopBackOff"],
    ),
    ("crd missing", data_lab.crd_missing, "2.1.4", "", ["pgupgrades.postgres-operator", "absent"]),
    ("operator errors", data_lab.operator_logging_errors, "2.1.5", "", ["Reconciler error"]),
    (
        "cluster app out of sync",
        lambda s: fixtures.application_degraded(s, "postgres-cluster"),
        "2.2.1",
        "postgres-cluster",
        ["OutOfSync", "one or more objects failed to apply"],
    ),
    (
        "postgres cluster not ready",
        data_lab.postgres_cluster_not_ready,
        "2.2.2",
        "instances",
        ["instance1: 1/2 ready"],
    ),
    (
        "replica pod crashing",
        data_lab.postgres_cluster_not_ready,
        "2.2.2",
        "",
        [data_lab.REPLICA, "CrashLoopBackOff"],
    ),
    ("backups missing", data_lab.backups_missing, "2.2.3", "backups", ["no pgBackRest repos"]),
    (
        "repo host missing",
        data_lab.backups_missing,
        "2.2.3",
        "pods",
        ["primary ['shlink-db-instance1-7xqz-0']"],
    ),
    ("claim pending", data_lab.claim_pending, "2.2.4", "", ["shlink-db-repo1 Pending"]),
    (
        "configmap wrong",
        data_lab.config_wrong,
        "3.1.3",
        "postgres",
        ["postgres.postgres.svc.cluster.local", "Service postgres/postgres absent"],
    ),
    (
        "configmap undocumented",
        data_lab.config_wrong,
        "3.1.4",
        "",
        ["unknown ['REDIS_HOST']", "IS_HTTPS_ENABLED='yes'"],
    ),
    (
        "configmap missing",
        lambda s: s.objects.pop(("", "configmaps", "shlink", "shlink-config")),
        "3.1.1",
        "",
        ["ConfigMap shlink/shlink-config does not exist"],
    ),
    (
        "external secret not synced",
        data_lab.external_secret_not_synced,
        "3.1.2",
        "shlink-secrets",
        [
            "Ready=False",
            "SecretSyncedError",
            "could not get secret data",
            "Secret shlink-secrets absent",
        ],
    ),
    (
        "api key never synced",
        data_lab.external_secret_not_synced,
        "3.1.2",
        "credentials",
        ["missing ['INITIAL_API_KEY']"],
    ),
    (
        "shlink pod crashing",
        data_lab.shlink_crashing,
        "3.2.1",
        "",
        ["shlink-7f9c6d5b8-kx2wp", "CrashLoopBackOff"],
    ),
    ("shlink rollout", data_lab.shlink_crashing, "3.2.1", "deployment", ["1/2 ready"]),
    (
        "shlink db refused",
        data_lab.shlink_crashing,
        "3.2.2",
        "",
        ["SQLSTATE[08006]", "password authentication failed"],
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("breaks", "item_id", "subject", "words"),
    [pytest.param(b, i, s, w, id=name) for name, b, i, s, w in BROKEN],
)
def test_a_broken_lab_fails_naming_the_object_and_what_was_seen(
    api: KubeApi,
    tmp_path: Path,
    breaks: Callable[[Store], Any],
    item_id: str,
    subject: str,
    words: list[str],
) -> None:
    breaks(api.store)
    results = _run(api, tmp_path, [item_id])
    status, observed = results[(item_id, subject)]
    assert status is Status.FAIL, observed
    for word in words:
        assert word in observed


def test_redis_errors_in_shlink_logs_fail_3_2_3(api: KubeApi, tmp_path: Path) -> None:
    key = next(k for k in api.store.logs if k[0] == "shlink")
    api.store.logs[key] += (
        "ERROR Predis\\Connection\\ConnectionException: No sentinel server available for "
        "autodiscovery.\n"
    )
    status, observed = _run(api, tmp_path, ["3.2.3"])[("3.2.3", "")]
    assert status is Status.FAIL and "No sentinel server available" in observed
    assert _run(api, tmp_path, ["3.2.2"])[("3.2.2", "")][0] is Status.PASS


STATES: dict[str, list[Callable[[Store], Any]]] = {
    "healthy": [],
    "postgres-not-ready": [data_lab.postgres_cluster_not_ready],
    "backups-missing": [data_lab.backups_missing],
    "claim-pending": [data_lab.claim_pending],
    "secret-not-synced": [data_lab.external_secret_not_synced],
    "shlink-crashing": [data_lab.shlink_crashing],
}


@pytest.mark.parametrize("state", sorted(STATES))
def test_the_phase_2_3_fixtures_pass_their_schemas(state: str) -> None:
    """PostgresCluster, ExternalSecret and the built-in kinds validate (status included)."""
    from labkit.manifests.documents import Document
    from labkit.manifests.schemas import schema
    from tests.cluster.test_fixtures import _as_checked

    store = Store()
    data_lab.data_lab(store)
    for change in STATES[state]:
        change(store)
    problems = []
    kinds = set()
    for key, data in store.objects.items():
        kinds.add(data["kind"])
        document = Document(Path(f"double/{'/'.join(key)}"), 1, _as_checked(data))
        problems += [str(p) for p in schema(document, "1.31")]
    assert problems == []
    assert {"PostgresCluster", "ExternalSecret", "PersistentVolumeClaim", "StatefulSet"} <= kinds


def test_a_malformed_postgres_cluster_status_would_be_caught() -> None:
    from labkit.manifests.documents import Document
    from labkit.manifests.schemas import schema
    from tests.cluster.test_fixtures import _as_checked

    bad = data_lab.postgres_cluster_object()
    bad["status"]["instances"][0]["readyReplicaz"] = 2
    assert schema(Document(Path("double/pgc"), 1, _as_checked(bad)), "1.31")
