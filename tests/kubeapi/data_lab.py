"""Phase 2-3 cluster states for the double: PGO, the PostgresCluster, Redis, Shlink.

``data_lab(store)`` adds, on top of ``fixtures.healthy_lab``, what ArgoCD would have
deployed after phases 2 and 3, shaped like the real objects (status included):
the PGO operator (CRDs, Deployment ``pgo``, its pod and log), PostgresCluster
``shlink-db`` (spec from manifests/postgres, status as PGO writes it: instance set
ready, pgBackRest repo host ready, stanza created), its pods (primary labelled
``role=master``, a replica, ``repo-host``), claims, Services and PGO's user Secret;
Redis (StatefulSet ``redis``, pods redis-0..2 with redis and sentinel containers);
Shlink (ConfigMap, ExternalSecrets Ready with their target Secrets, Deployment,
pods, Service). ``relay_to(api, lab)`` points the double's port-forwards at a
running sandbox's PostgreSQL, Redis, Sentinels and Shlink service, so data-plane
checks talk to real servers through the forward. The breakages change one
thing each, the way the real fault shows.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from tests.kubeapi import fixtures
from tests.kubeapi.fixtures import NODES, TIME, _meta
from tests.kubeapi.store import Store

ROOT = Path(__file__).resolve().parents[2]
PGO_GROUP = "postgres-operator.crunchydata.com"
CLUSTER = "shlink-db"
PRIMARY = "shlink-db-instance1-7xqz-0"
REPLICA = "shlink-db-instance1-b4kd-0"
REPO_HOST = "shlink-db-repo-host-0"
PG_PASSWORD = "pg-password-in-the-double"
API_KEY = "shlink-api-key-in-the-double-0042"
PGO_LOG = (
    '{"level":"info","ts":"2026-12-06T16:59:01Z","msg":"starting controller runtime manager",'
    '"version":"6.0.0"}\n'
    '{"level":"info","ts":"2026-12-06T16:59:02Z","msg":"Starting workers",'
    '"controller":"postgrescluster","worker count":2}\n'
    '{"level":"info","ts":"2026-12-06T17:00:00Z","msg":"reconciled cluster",'
    '"controller":"postgrescluster","PostgresCluster":{"name":"shlink-db","namespace":"postgres"}}\n'
)
SHLINK_LOG = (
    "Creating database tables...\n"
    "Database tables already exist. Ignoring...\n"
    "Updating database...\n"
    "No migrations to execute.\n"
    "Generating proxies...\n"
    "Clearing entities cache...\n"
    "Starting server...\n"
    "INFO RoadRunner server started; version: 2025.1.2\n"
    "INFO http server was started {address: 0.0.0.0:8080}\n"
)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _manifest(path: str) -> list[dict[str, Any]]:
    text = (ROOT / "manifests" / path).read_text(encoding="utf-8")
    return [d for d in yaml.safe_load_all(text) if d]


def _pgo_labels(role: str | None = None, **extra: str) -> dict[str, str]:
    labels = {f"{PGO_GROUP}/cluster": CLUSTER, **{f"{PGO_GROUP}/{k}": v for k, v in extra.items()}}
    if role:
        labels[f"{PGO_GROUP}/role"] = role
    return labels


def _with_ports(pod: dict[str, Any], ports: dict[str, int]) -> dict[str, Any]:
    pod["spec"]["containers"][0]["ports"] = [
        {"name": name, "containerPort": port, "protocol": "TCP"} for name, port in ports.items()
    ]
    return pod


def _service(
    name: str, namespace: str, ports: list[dict[str, Any]], selector: dict[str, str] | None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": ports, "type": "ClusterIP"}
    if selector:
        spec["selector"] = selector
        spec["clusterIP"] = f"10.43.{len(name)}.{len(namespace) + 10}"
    else:
        spec["clusterIP"] = "None"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, namespace),
        "spec": spec,
    }


def _claim(name: str, labels: dict[str, str], phase: str = "Bound") -> dict[str, Any]:
    claim: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(name, "postgres", **labels),
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "20Gi"}},
            "storageClassName": "local-path",
        },
        "status": {"phase": phase},
    }
    if phase == "Bound":
        claim["spec"]["volumeName"] = f"pvc-{sum(map(ord, name)):08d}-1111-2222-3333"
        claim["status"].update({"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "20Gi"}})
    return claim


def _application(name: str, resources: list[tuple[str, str, str, str]]) -> dict[str, Any]:
    """An Application (Synced, Healthy) listing the resources it manages."""
    app = fixtures.application(name)
    app["status"]["resources"] = [
        {
            "group": group,
            "version": "v1",
            "kind": kind,
            "namespace": namespace,
            "name": object_name,
            "status": "Synced",
            "health": {"status": "Healthy"},
        }
        for group, kind, namespace, object_name in resources
    ]
    return app


# -- 2.1 the operator -----------------------------------------------------------------------


def pgo(store: Store) -> None:
    """The PGO operator as its kustomize target installs it, running and logging at info."""
    store.put(fixtures.namespace("postgres-operator"))
    for kind, plural in (
        ("PostgresCluster", "postgresclusters"),
        ("PGUpgrade", "pgupgrades"),
        ("PGAdmin", "pgadmins"),
    ):
        store.put(fixtures.crd(PGO_GROUP, kind, plural, version="v1"))
    labels = {f"{PGO_GROUP}/control-plane": "postgres-operator"}
    store.put(fixtures.workload("Deployment", "pgo", "postgres-operator", labels))
    store.put(
        fixtures.pod(
            "pgo-6d9b8c7f5d-qx7vz",
            "postgres-operator",
            "registry.developers.crunchydata.com/crunchydata/postgres-operator:ubi9-6.0.0-0",
            labels,
            NODES[1],
            ip="10.42.1.40",
        )
    )
    store.logs[("postgres-operator", "pgo-6d9b8c7f5d-qx7vz", "pgo")] = PGO_LOG
    store.put(
        _application("postgres-operator", [("apps", "Deployment", "postgres-operator", "pgo")])
    )


# -- 2.2 the PostgresCluster ----------------------------------------------------------------


def postgres_cluster_object(ready: bool = True) -> dict[str, Any]:
    """manifests/postgres/postgres.yaml with the status PGO writes once it is up."""
    (document,) = [d for d in _manifest("postgres/postgres.yaml") if d["kind"] == "PostgresCluster"]
    document["metadata"]["creationTimestamp"] = TIME
    document["metadata"]["generation"] = 1
    replicas = document["spec"]["instances"][0]["replicas"]
    document["status"] = {
        "observedGeneration": 1,
        "postgresVersion": document["spec"]["postgresVersion"],
        "instances": [
            {
                "name": "instance1",
                "replicas": replicas,
                "readyReplicas": replicas if ready else replicas - 1,
                "updatedReplicas": replicas,
            }
        ],
        "conditions": [
            {
                "type": "PGBackRestRepoHostReady",
                "status": "True",
                "reason": "RepoHostReady",
                "message": "pgBackRest dedicated repository host is ready",
                "lastTransitionTime": TIME,
                "observedGeneration": 1,
            },
            {
                "type": "PGBackRestReplicaRepoReady",
                "status": "True",
                "reason": "StanzaCreated",
                "message": "pgBackRest replica create repo is ready for backups",
                "lastTransitionTime": TIME,
                "observedGeneration": 1,
            },
            {
                "type": "PostgresDataInitialized",
                "status": "True",
                "reason": "PGBackRestBackupComplete",
                "message": "pgBackRest replica creation is now possible",
                "lastTransitionTime": TIME,
                "observedGeneration": 1,
            },
        ],
        "pgbackrest": {
            "repoHost": {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "ready": True,
            },
            "repos": [
                {
                    "name": "repo1",
                    "bound": True,
                    "stanzaCreated": True,
                    "volume": "pvc-0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9",
                    "repoOptionsHash": "5d4f8c7b9",
                }
            ],
        },
        "patroni": {"systemIdentifier": "7410923847561928374"},
        "usersRevision": "6b7c9d8f5",
        "databaseRevision": "7c8d9f6b5",
        "monitoring": {"exporterConfiguration": "5f6d7c8b9"},
    }
    return document


def postgres(store: Store, password: str = PG_PASSWORD) -> None:
    """The PostgresCluster, its pods (primary, replica, repo host), claims, Services, Secret."""
    store.put(fixtures.namespace("postgres"))
    store.put(postgres_cluster_object())
    image = "registry.developers.crunchydata.com/crunchydata/crunchy-postgres:ubi9-18.1-2547"
    for index, (name, role) in enumerate(((PRIMARY, "master"), (REPLICA, "replica"))):
        labels = _pgo_labels(
            role,
            **{"instance-set": "instance1", "instance": name.rsplit("-", 1)[0], "data": "postgres"},
        )
        pod = fixtures.pod(name, "postgres", image, labels, NODES[index], ip=f"10.42.{index}.50")
        pod["spec"]["containers"][0]["name"] = "database"
        pod["status"]["containerStatuses"][0]["name"] = "database"
        store.put(_with_ports(pod, {"postgres": 5432}))
        store.put(_claim(f"{name.rsplit('-', 1)[0]}-pgdata", _pgo_labels(data="postgres")))
    repo = fixtures.pod(
        REPO_HOST,
        "postgres",
        "registry.developers.crunchydata.com/crunchydata/crunchy-pgbackrest:ubi9-2.56.0-2547",
        _pgo_labels(data="pgbackrest", **{"pgbackrest": "", "pgbackrest-dedicated": ""}),
        NODES[2],
        ip="10.42.2.50",
    )
    store.put(repo)
    store.put(
        _claim("shlink-db-repo1", _pgo_labels(data="pgbackrest", **{"pgbackrest-repo": "repo1"}))
    )
    port = [{"name": "postgres", "port": 5432, "protocol": "TCP", "targetPort": "postgres"}]
    store.put(_service("shlink-db-primary", "postgres", port, None))
    store.put(_service("shlink-db-ha", "postgres", port, None))
    store.put(_service("shlink-db-replicas", "postgres", port, _pgo_labels("replica")))
    store.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": _meta(
                "shlink-db-pguser-shlink",
                "postgres",
                **_pgo_labels("pguser", pguser="shlink"),
            ),
            "type": "Opaque",
            "data": {
                "host": _b64("shlink-db-primary.postgres.svc"),
                "port": _b64("5432"),
                "user": _b64("shlink"),
                "password": _b64(password),
                "dbname": _b64("shlink"),
                "uri": _b64("postgresql://shlink:***@shlink-db-primary.postgres.svc:5432/shlink"),
                "verifier": _b64("SCRAM-SHA-256$4096:c2FsdA==$a2V5:c2VydmVy"),
            },
        }
    )
    store.put(
        _application("postgres-cluster", [(PGO_GROUP, "PostgresCluster", "postgres", CLUSTER)])
    )


# -- 2.3 Redis ------------------------------------------------------------------------------


def redis(store: Store) -> None:
    """Redis: StatefulSet redis (3 pods, redis + sentinel), its Services and ConfigMap."""
    store.put(fixtures.namespace("redis"))
    labels = {"app.kubernetes.io/name": "redis"}
    statefulset = fixtures.workload("StatefulSet", "redis", "redis", labels)
    statefulset["spec"]["replicas"] = 3
    statefulset["spec"]["serviceName"] = "redis-headless"
    statefulset["status"].update(
        {"replicas": 3, "readyReplicas": 3, "updatedReplicas": 3, "currentReplicas": 3}
    )
    store.put(statefulset)
    for index in range(3):
        pod = fixtures.pod(
            f"redis-{index}",
            "redis",
            "redis:7.4-alpine",
            labels,
            NODES[index],
            ip=f"10.42.{index}.60",
        )
        pod["spec"]["containers"] = [
            {
                "name": "redis",
                "image": "redis:7.4-alpine",
                "ports": [{"name": "tcp-redis", "containerPort": 6379, "protocol": "TCP"}],
            },
            {
                "name": "sentinel",
                "image": "redis:7.4-alpine",
                "ports": [{"name": "tcp-sentinel", "containerPort": 26379, "protocol": "TCP"}],
            },
        ]
        pod["status"]["containerStatuses"] = [
            fixtures.container_status("redis", "redis:7.4-alpine"),
            fixtures.container_status("sentinel", "redis:7.4-alpine"),
        ]
        store.put(pod)
    for document in _manifest("redis/services.yaml") + _manifest("redis/configmap.yaml"):
        document["metadata"]["creationTimestamp"] = TIME
        store.put(document)
    store.put(_application("redis", [("apps", "StatefulSet", "redis", "redis")]))


# -- 3 Shlink -------------------------------------------------------------------------------


def _external_secret(document: dict[str, Any], ready: bool = True) -> dict[str, Any]:
    document["metadata"]["creationTimestamp"] = TIME
    document["metadata"]["generation"] = 1
    document["status"] = {
        "binding": {"name": document["spec"]["target"]["name"]},
        "conditions": [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "reason": "SecretSynced" if ready else "SecretSyncedError",
                "message": "secret synced" if ready else "could not get secret data from provider",
                "lastTransitionTime": TIME,
            }
        ],
        "refreshTime": TIME,
        "syncedResourceVersion": "1-4f6e2b8c9d0a1b2c3d4e5f60718293a4",
    }
    return document


def shlink(store: Store, api_key: str = API_KEY, db_password: str = PG_PASSWORD) -> None:
    """Shlink: ConfigMap, ExternalSecrets synced into Secrets, Deployment, 2 pods, Service."""
    store.put(fixtures.namespace("shlink"))
    store.put(fixtures.crd("external-secrets.io", "ExternalSecret", "externalsecrets", "v1"))
    store.put(
        fixtures.crd("external-secrets.io", "ClusterSecretStore", "clustersecretstores", "v1")
    )
    for document in _manifest("shlink/configmap.yaml"):
        document["metadata"]["creationTimestamp"] = TIME
        store.put(document)
    values = {
        "shlink-db-password": ("DB_PASSWORD", db_password),
        "shlink-secrets": ("INITIAL_API_KEY", api_key),
    }
    for document in _manifest("shlink/externalsecret.yaml"):
        store.put(_external_secret(document))
        target = document["spec"]["target"]["name"]
        key, value = values[target]
        store.put(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    **_meta(target, "shlink", **{"reconcile.external-secrets.io/managed": "true"}),
                    "ownerReferences": [
                        {
                            "apiVersion": "external-secrets.io/v1",
                            "kind": "ExternalSecret",
                            "name": document["metadata"]["name"],
                            "uid": "5b0c1d2e-3f40-4152-8637-48596a7b8c9d",
                            "controller": True,
                            "blockOwnerDeletion": True,
                        }
                    ],
                },
                "type": "Opaque",
                "data": {key: _b64(value)},
            }
        )
    (deployment,) = _manifest("shlink/deployment.yaml")
    deployment["metadata"].update({"creationTimestamp": TIME, "generation": 1})
    replicas = int(deployment["spec"].get("replicas", 2))
    deployment["status"] = {
        "observedGeneration": 1,
        "replicas": replicas,
        "readyReplicas": replicas,
        "updatedReplicas": replicas,
        "availableReplicas": replicas,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}
        ],
    }
    store.put(deployment)
    labels = {"app.kubernetes.io/name": "shlink"}
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    for index in range(replicas):
        name = f"shlink-7f9c6d5b8-{'kx2wp' if index == 0 else 'm4t8z'}"
        pod = fixtures.pod(name, "shlink", image, labels, NODES[index], ip=f"10.42.{index}.70")
        pod["spec"]["containers"][0]["name"] = "shlink"
        pod["status"]["containerStatuses"][0]["name"] = "shlink"
        store.put(_with_ports(pod, {"http": 8080}))
        store.logs[("shlink", name, "shlink")] = SHLINK_LOG
    for document in _manifest("shlink/service.yaml"):
        document["metadata"]["creationTimestamp"] = TIME
        store.put(document)
    store.put(_application("shlink", [("apps", "Deployment", "shlink", "shlink")]))
    store.put(
        _application(
            "external-secrets",
            [("apps", "Deployment", "external-secrets", "external-secrets")],
        )
    )
    store.put(
        _application(
            "secret-stores",
            [("external-secrets.io", "ClusterSecretStore", "", "aws-secrets-manager")],
        )
    )


def data_lab(store: Store, pg_password: str = PG_PASSWORD, api_key: str = API_KEY) -> None:
    """A healthy lab after phases 1-3: ``fixtures.healthy_lab``, PGO, Postgres, Redis, Shlink."""
    fixtures.healthy_lab(store)
    pgo(store)
    postgres(store, pg_password)
    redis(store)
    shlink(store, api_key, pg_password)


# -- relaying the forwards to a running sandbox ---------------------------------------------


def relay_to(api: Any, lab: Any) -> None:
    """Point the double's port-forwards at sandbox ``lab``'s real servers.

    PostgreSQL's primary pod -> the sandbox's primary; redis-0..2 -> its master and two
    replicas, their sentinels -> its three Sentinels; every Shlink pod -> its service.
    """
    backends = api.wire.backends
    backends[("postgres", PRIMARY, "5432")] = (lab.postgres.host, lab.postgres.port)
    redis_ports = [lab.redis.port, *lab.redis.replica_ports]
    for index, port in enumerate(redis_ports[:3]):
        backends[("redis", f"redis-{index}", "6379")] = (lab.redis.host, port)
    for index, port in enumerate(lab.redis.sentinel_ports[:3]):
        backends[("redis", f"redis-{index}", "26379")] = (lab.redis.host, port)
    url = urlsplit(lab.shlink.base_url)
    for key in list(api.store.objects):
        if key[1] == "pods" and key[2] == "shlink":
            backends[("shlink", key[3], "8080")] = (url.hostname, url.port)


def cluster_params(api: Any, directory: Path, sandbox_lab: Any) -> Path:
    """A homelab-kind params file for the double whose stores behave like ``sandbox_lab``'s.

    Secrets are ``{kubernetes: ...}`` references, read through the double like a real lab's.
    """
    redis_settings = sandbox_lab.redis
    return api.params(
        directory,
        postgres={"password": {"kubernetes": "postgres/shlink-db-pguser-shlink/password"}},
        shlink={
            "api_key": {"kubernetes": "shlink/shlink-secrets/INITIAL_API_KEY"},
            "redirect_cache": sandbox_lab.shlink.redirect_cache,
            "default_domain": "s.lab",
        },
        redis={
            "master_name": redis_settings.master_name,
            "replicas": redis_settings.replicas,
            "sentinels": redis_settings.sentinels,
            "sentinel_quorum": redis_settings.sentinel_quorum,
            "maxmemory": redis_settings.maxmemory,
            "maxmemory_policy": redis_settings.maxmemory_policy,
        },
        versions={"postgresql": sandbox_lab.versions.postgresql},
    )


# -- breakages ------------------------------------------------------------------------------


def postgres_cluster_not_ready(store: Store) -> None:
    """The replica crash-loops: PGO reports 1 of 2 ready in status.instances."""
    store.put(postgres_cluster_object(ready=False))
    fixtures.pod_crashing(store, "postgres", REPLICA)


def backups_missing(store: Store) -> None:
    """No pgBackRest repo: spec.backups removed, status without pgbackrest, no repo host."""
    document = postgres_cluster_object()
    document["spec"].pop("backups")
    document["status"].pop("pgbackrest")
    store.put(document)
    store.objects.pop(("", "pods", "postgres", REPO_HOST))
    store.objects.pop(("", "persistentvolumeclaims", "postgres", "shlink-db-repo1"))


def claim_pending(store: Store) -> None:
    """The repo's claim cannot bind (no volume for it)."""
    store.put(
        _claim(
            "shlink-db-repo1",
            _pgo_labels(data="pgbackrest", **{"pgbackrest-repo": "repo1"}),
            phase="Pending",
        )
    )


def operator_logging_errors(store: Store) -> None:
    """The operator's log has reconcile errors."""
    key = next(k for k in store.logs if k[0] == "postgres-operator")
    store.logs[key] = PGO_LOG + (
        '{"level":"error","ts":"2026-12-06T17:01:00Z","msg":"Reconciler error",'
        '"controller":"postgrescluster","error":"pods \\"shlink-db-repo-host-0\\" is forbidden"}\n'
    )


def crd_missing(store: Store, plural: str = "pgupgrades") -> None:
    """One of PGO's CRDs is absent (an install that did not finish)."""
    store.objects.pop(
        ("apiextensions.k8s.io", "customresourcedefinitions", "", f"{plural}.{PGO_GROUP}")
    )


def external_secret_not_synced(store: Store, name: str = "shlink-secrets") -> None:
    """ExternalSecret ``name`` cannot fetch from its provider: Ready False, no target Secret."""
    (document,) = [
        d for d in _manifest("shlink/externalsecret.yaml") if d["metadata"]["name"] == name
    ]
    store.put(_external_secret(document, ready=False))
    store.objects.pop(("", "secrets", "shlink", document["spec"]["target"]["name"]))


def config_wrong(store: Store) -> None:
    """The ConfigMap points at a Service that does not exist and has an undocumented key."""
    data = store.objects[("", "configmaps", "shlink", "shlink-config")]["data"]
    data["DB_HOST"] = "postgres.postgres.svc.cluster.local"
    data["REDIS_HOST"] = "redis"
    data["IS_HTTPS_ENABLED"] = "yes"


def shlink_crashing(store: Store) -> None:
    """A Shlink pod crash-loops: the database refuses it (its log says so)."""
    name = next(k[3] for k in store.objects if k[1] == "pods" and k[2] == "shlink")
    fixtures.pod_crashing(store, "shlink", name)
    store.logs[("shlink", name, "shlink")] = (
        "Creating database tables...\n"
        "In ExceptionConverter.php line 101:\n"
        "  An exception occurred in the driver: SQLSTATE[08006] [7] connection to server at "
        '"shlink-db-primary.postgres.svc.cluster.local" (10.42.0.50), port 5432 failed: '
        'FATAL:  password authentication failed for user "shlink"\n'
    )
    deployment = store.objects[("apps", "deployments", "shlink", "shlink")]
    deployment["status"]["readyReplicas"] = deployment["status"]["availableReplicas"] = 1
