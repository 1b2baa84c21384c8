"""Phase 2 checks through the Kubernetes API: 2.1 the PGO operator, 2.2 the PostgresCluster.

They read what ArgoCD deployed (Applications and the resources they list), the
operator's Deployment, pods, CRDs and log, and the PostgresCluster's spec and
status as PGO writes it (instance sets ready, the pgBackRest repo host and repo),
its pods and claims. What PostgreSQL itself says (version, database, user) is
asked of the server through a port-forward by 2.2.5/2.2.6 (phase2.py). On the
sandbox these items skip (no Kubernetes API).
"""

from __future__ import annotations

import re
from typing import Any

from labkit.checks.base import Context, Outcome, cluster_for, implements
from labkit.cluster import failing_containers, pod_ready, rollout_status
from labkit.cluster.reach import PGO_CLUSTER, PGO_ROLE
from labkit.cluster.waits import condition_status
from labkit.errors import LabkitError

__all__ = ["PGO_CRDS", "application_outcome", "pods_outcome"]

APPS = "argoproj.io/v1alpha1"
PGO_API = "postgres-operator.crunchydata.com/v1"
PGO_CONTROL_PLANE = {"postgres-operator.crunchydata.com/control-plane": "postgres-operator"}
PGO_CRDS = (
    "postgresclusters.postgres-operator.crunchydata.com",
    "pgupgrades.postgres-operator.crunchydata.com",
    "pgadmins.postgres-operator.crunchydata.com",
)
# A log line at error level or worse, in logfmt (level=error) or JSON ("level":"error").
_ERROR_LINE = re.compile(r"""\blevel["']?\s*[=:]\s*["']?(error|fatal|panic)\b""", re.IGNORECASE)
_LOG_LINES = 200


def _app_resources(app: dict[str, Any]) -> list[str]:
    return [
        f"{r.get('kind')} {r.get('namespace', '')}/{r.get('name')}".replace(" /", " ")
        for r in (app.get("status") or {}).get("resources") or []
    ]


def application_outcome(
    context: Context, name: str, manages: tuple[str, str, str], healthy: bool
) -> Outcome:
    """Application ``name`` exists and manages ``(kind, namespace, name)``; Synced (and Healthy)."""
    cluster = cluster_for(context)
    namespace = context.lab.argocd.namespace
    kind, where, what = manages
    wanted = f"{kind} {where}/{what}" if where else f"{kind} {what}"
    state = "Synced and Healthy" if healthy else "Synced"
    expected = f"Application {namespace}/{name} {state}, managing {wanted}"
    app = cluster.get("Application", name, namespace, api_version=APPS)
    evidence = f"GET applications.argoproj.io {namespace}/{name}"
    if app is None:
        return Outcome.judge(False, expected, f"no Application {namespace}/{name}", evidence, name)
    from labkit.gitops import failing_resources  # noqa: PLC0415 - gitops imports checks' helpers

    status = app.get("status") or {}
    sync = (status.get("sync") or {}).get("status", "Unknown")
    health = (status.get("health") or {}).get("status", "Unknown")
    managed = _app_resources(app)
    ok = sync == "Synced" and wanted in managed and (health == "Healthy" or not healthy)
    failing = failing_resources(app)
    message = ((status.get("operationState") or {}).get("message")) or ""
    observed = f"{sync}/{health}, revision {str((status.get('sync') or {}).get('revision'))[:8]}"
    if wanted not in managed:
        observed += f"; does not manage {wanted} (manages {managed or 'nothing'})"
    if failing:
        observed += f"; failing: {'; '.join(failing)}"
    if message and sync != "Synced":
        observed += f"; last operation: {message}"
    return Outcome.judge(ok, expected, observed, evidence, name)


def pods_outcome(pods: list[dict[str, Any]], expected: str, evidence: str) -> Outcome:
    bad = [
        f"{p['metadata']['name']} {(p.get('status') or {}).get('phase')}: "
        + "; ".join(f"{c} {why}" for c, why in failing_containers(p))
        for p in pods
        if not pod_ready(p)
    ]
    names = ", ".join(sorted(p["metadata"]["name"] for p in pods))
    return Outcome.judge(
        bool(pods) and not bad,
        expected,
        ("not ready: " + "; ".join(bad)) if bad else f"Running and Ready: {names or 'no pods'}",
        evidence,
    )


# -- 2.1 the operator -----------------------------------------------------------------------


@implements("2.1.1")
def operator_application(context: Context) -> Outcome:
    """ArgoCD's postgres-operator Application exists and deploys the pgo Deployment."""
    namespace = context.lab.postgres.operator_namespace
    return application_outcome(
        context, "postgres-operator", ("Deployment", namespace, "pgo"), healthy=False
    )


@implements("2.1.2")
def operator_synced_healthy(context: Context) -> Outcome:
    """The postgres-operator Application is Synced and Healthy."""
    namespace = context.lab.postgres.operator_namespace
    return application_outcome(
        context, "postgres-operator", ("Deployment", namespace, "pgo"), healthy=True
    )


def _operator_pods(context: Context) -> list[dict[str, Any]]:
    namespace = context.lab.postgres.operator_namespace
    return cluster_for(context).list("Pod", namespace, labels=PGO_CONTROL_PLANE)


@implements("2.1.3")
def operator_running(context: Context) -> list[Outcome]:
    """The pgo Deployment has rolled out and its pods are Running and Ready."""
    cluster = cluster_for(context)
    namespace = context.lab.postgres.operator_namespace
    done, seen = rollout_status(cluster.get("Deployment", "pgo", namespace))
    selector = ",".join(f"{k}={v}" for k, v in PGO_CONTROL_PLANE.items())
    return [
        Outcome.judge(
            done, "all replicas ready", seen, f"GET Deployment {namespace}/pgo", "deployment"
        ),
        pods_outcome(
            _operator_pods(context),
            f"pgo pods in {namespace} Running and Ready",
            f"GET pods -n {namespace} -l {selector}",
        ),
    ]


@implements("2.1.4")
def operator_crds(context: Context) -> Outcome:
    """PGO's CRDs exist and are Established (served by the API)."""
    cluster = cluster_for(context)
    seen = []
    for name in PGO_CRDS:
        found = cluster.get("CustomResourceDefinition", name, api_version="apiextensions.k8s.io/v1")
        seen.append(
            f"{name} "
            + (
                "absent"
                if found is None
                else "Established " + (condition_status(found, "Established") or "unknown")
            )
        )
    return Outcome.judge(
        all(line.endswith("Established True") for line in seen),
        f"{', '.join(PGO_CRDS)} Established",
        "; ".join(seen),
        "GET customresourcedefinitions (kubectl get crd | grep postgres)",
    )


@implements("2.1.5")
def operator_logs(context: Context) -> Outcome:
    """The operator's log has no line at error level (or worse) in its last lines."""
    cluster = cluster_for(context)
    namespace = context.lab.postgres.operator_namespace
    pods = _operator_pods(context)
    if not pods:
        return Outcome.judge(False, "no error lines", f"no pgo pod in {namespace}", "")
    errors: list[str] = []
    read = 0
    for pod in pods:
        name = pod["metadata"]["name"]
        try:
            text = cluster.logs(name, namespace, tail_lines=_LOG_LINES)
        except LabkitError as exc:
            errors.append(f"{name}: log unreadable ({exc})")
            continue
        lines = text.splitlines()
        read += len(lines)
        errors += [f"{name}: {line.strip()[:300]}" for line in lines if _ERROR_LINE.search(line)]
    return Outcome.judge(
        not errors,
        f"no line at level error/fatal/panic in the last {_LOG_LINES} lines of each pgo pod",
        ("; ".join(errors[:5]) + (f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""))
        if errors
        else f"{read} lines read from {len(pods)} pod(s), none at error level",
        f"GET pods/log -n {namespace} tailLines={_LOG_LINES}",
    )


# -- 2.2 the PostgresCluster ----------------------------------------------------------------


@implements("2.2.1")
def cluster_application(context: Context) -> Outcome:
    """ArgoCD's postgres-cluster Application is Synced and manages the PostgresCluster."""
    settings = context.lab.postgres
    return application_outcome(
        context,
        "postgres-cluster",
        ("PostgresCluster", settings.namespace, settings.cluster_name),
        healthy=False,
    )


def _postgres_cluster(context: Context) -> dict[str, Any] | None:
    settings = context.lab.postgres
    return cluster_for(context).get(
        "PostgresCluster", settings.cluster_name, settings.namespace, api_version=PGO_API
    )


def _cluster_pods(context: Context) -> list[dict[str, Any]]:
    settings = context.lab.postgres
    labels = {PGO_CLUSTER: settings.cluster_name}
    return cluster_for(context).list("Pod", settings.namespace, labels=labels)


@implements("2.2.2")
def cluster_ready(context: Context) -> list[Outcome]:
    """The PostgresCluster asks for the pinned major version, every instance set is ready
    (status.instances), and its pods are Running and Ready."""
    settings = context.lab.postgres
    where = f"PostgresCluster {settings.namespace}/{settings.cluster_name}"
    found = _postgres_cluster(context)
    evidence = (
        f"GET postgresclusters.postgres-operator.crunchydata.com {where.rsplit(maxsplit=1)[-1]}"
    )
    if found is None:
        return [Outcome.judge(False, f"{where} ready", f"{where} does not exist", evidence)]
    spec, status = found.get("spec") or {}, found.get("status") or {}
    wanted = context.lab.versions.postgresql
    version = Outcome.judge(
        spec.get("postgresVersion") == wanted and status.get("postgresVersion", wanted) == wanted,
        f"postgresVersion {wanted} (versions.postgresql)",
        f"spec {spec.get('postgresVersion')}, status {status.get('postgresVersion')}",
        evidence,
        "version",
    )
    sets = {s.get("name"): s for s in status.get("instances") or []}
    seen, ok = [], bool(spec.get("instances"))
    for instance in spec.get("instances") or []:
        name = instance.get("name")
        replicas = int(instance.get("replicas", 1))
        got = sets.get(name) or {}
        ready = int(got.get("readyReplicas", 0))
        ok = ok and ready >= replicas and int(got.get("updatedReplicas", 0)) >= replicas
        seen.append(f"{name}: {ready}/{replicas} ready, {got.get('updatedReplicas', 0)} updated")
    generation = (found.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    ok = ok and (generation is None or observed == generation)
    instances = Outcome.judge(
        ok,
        f"{where}: every instance set's replicas ready and updated, generation observed",
        f"{where} status.instances: "
        + "; ".join(seen or ["no instance sets in spec"])
        + f"; observedGeneration {observed}/{generation}",
        evidence + " (status.instances)",
        "instances",
    )
    pods = pods_outcome(
        _cluster_pods(context),
        f"pods of {where} Running and Ready",
        f"GET pods -n {settings.namespace} -l {PGO_CLUSTER}={settings.cluster_name}",
    )
    return [version, instances, pods]


@implements("2.2.3")
def cluster_pods_and_backups(context: Context) -> list[Outcome]:
    """Pods ``<cluster>-instance1-xxxx-0`` (one primary) and ``<cluster>-repo-host-0``; the
    pgBackRest repo is configured in spec and ready in status (stanza created, volume bound)."""
    settings = context.lab.postgres
    name = settings.cluster_name
    pods = _cluster_pods(context)
    names = sorted(str(p["metadata"]["name"]) for p in pods)
    found = _postgres_cluster(context) or {}
    spec, status = found.get("spec") or {}, found.get("status") or {}
    instance_sets = [i.get("name") for i in spec.get("instances") or []] or ["instance1"]
    wanted = sum(int(i.get("replicas", 1)) for i in spec.get("instances") or []) or 1
    instances = [n for n in names if any(n.startswith(f"{name}-{s}-") for s in instance_sets)]
    primaries = [
        str(p["metadata"]["name"])
        for p in pods
        if (p["metadata"].get("labels") or {}).get(PGO_ROLE) in ("master", "primary")
    ]
    repo_host = [n for n in names if n.startswith(f"{name}-repo-host-")]
    layout = Outcome.judge(
        len(instances) == wanted and len(primaries) == 1 and len(repo_host) == 1,
        f"{wanted} pod(s) {name}-{instance_sets[0]}-xxxx-0 (one labelled primary) and "
        f"{name}-repo-host-0",
        f"pods {names or 'none'}; primary {primaries or 'none'}",
        f"GET pods -n {settings.namespace} -l {PGO_CLUSTER}={name}",
        "pods",
    )
    repos = ((spec.get("backups") or {}).get("pgbackrest") or {}).get("repos") or []
    backrest = status.get("pgbackrest") or {}
    repo_status = {r.get("name"): r for r in backrest.get("repos") or []}
    seen = []
    ok = bool(repos) and bool((backrest.get("repoHost") or {}).get("ready"))
    for repo in repos:
        got = repo_status.get(repo.get("name")) or {}
        ok = ok and bool(got.get("stanzaCreated")) and bool(got.get("bound", "volume" not in repo))
        seen.append(
            f"{repo.get('name')}: stanzaCreated {got.get('stanzaCreated')}, "
            f"bound {got.get('bound')}, schedules {sorted(repo.get('schedules') or {})}"
        )
    backups = Outcome.judge(
        ok,
        "spec.backups.pgbackrest.repos configured; status: repo host ready, each repo's "
        "stanza created and volume bound",
        f"repo host ready {(backrest.get('repoHost') or {}).get('ready')}; "
        + ("; ".join(seen) if seen else "no pgBackRest repos in spec"),
        "PostgresCluster spec.backups.pgbackrest, status.pgbackrest",
        "backups",
    )
    return [layout, backups]


@implements("2.2.4")
def cluster_claims_bound(context: Context) -> Outcome:
    """Every PersistentVolumeClaim of the PostgresCluster (data and backup repo) is Bound."""
    settings = context.lab.postgres
    claims = cluster_for(context).list(
        "PersistentVolumeClaim", settings.namespace, labels={PGO_CLUSTER: settings.cluster_name}
    )
    seen = {
        str(c["metadata"]["name"]): str((c.get("status") or {}).get("phase", "Pending"))
        for c in claims
    }
    found = _postgres_cluster(context) or {}
    spec = found.get("spec") or {}
    wanted = sum(int(i.get("replicas", 1)) for i in spec.get("instances") or []) + len(
        ((spec.get("backups") or {}).get("pgbackrest") or {}).get("repos") or []
    )
    return Outcome.judge(
        len(seen) >= max(wanted, 1) and all(phase == "Bound" for phase in seen.values()),
        f"{wanted} claim(s) (data per instance, one per backup repo) Bound",
        ", ".join(f"{n} {p}" for n, p in sorted(seen.items())) or "no claims",
        f"GET pvc -n {settings.namespace} -l {PGO_CLUSTER}={settings.cluster_name}",
    )
