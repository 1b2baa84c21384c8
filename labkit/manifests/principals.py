"""AuthorizationPolicy principals against the service accounts the pods really run as.

A principal is ``cluster.local/ns/<namespace>/sa/<service account>``. For a namespace that
holds a PostgresCluster, PGO v6 (postgres-operator internal/naming/names.go and the
reconcilers that use it) runs the PostgreSQL instances as ``<cluster>-instance``, the
pgBackRest repo host (made when a repo has a volume) as ``<cluster>-repohost``, and backup
Jobs as ``<cluster>-pgbackrest``; a Job reaches the repo host only through the Kubernetes API
(pod exec) unless a repo is in a cloud bucket, when it runs pgBackRest itself against the
instances. Between the pods, the repo host pulls backups from the instances and the instances
push WAL to the repo host (pgBackRest's TLS server, 8432), and instances replicate (5432) and
talk Patroni (8008). For other namespaces the tree's own ServiceAccounts are the truth.
"""

from __future__ import annotations

import re
from pathlib import Path

from labkit.manifests.documents import Document, Problem, problem

__all__ = ["check_principals"]

_PRINCIPAL = re.compile(r"^cluster\.local/ns/([^/]+)/sa/([^/]+)$")
_CLUSTER_LABEL = "postgres-operator.crunchydata.com/cluster"
_CLOUD_REPOS = ("s3", "gcs", "azure")


def check_principals(documents: list[Document], kustomizations: dict[Path, str]) -> list[Problem]:
    """Principals that name no pod's identity, and PGO peers a policy over their pods leaves out."""

    def namespace(document: Document) -> str:
        return kustomizations.get(document.path.parent, "") or document.namespace

    clusters = [d for d in documents if d.kind == "PostgresCluster"]
    accounts: dict[str, set[str]] = {}
    for document in documents:
        if document.kind == "ServiceAccount":
            accounts.setdefault(namespace(document), set()).add(document.name)
    peers = {(namespace(c), c.name): _pgo_peers(c) for c in clusters}
    problems: list[Problem] = []
    for policy in (d for d in documents if d.kind == "AuthorizationPolicy"):
        admitted = _principals(policy)
        for field, principal in admitted:
            match = _PRINCIPAL.match(principal)
            if not match:
                continue
            where, account = match.groups()
            known = set(accounts.get(where, set()))
            for (cluster_namespace, _), roles in peers.items():
                if cluster_namespace == where:
                    known |= set(roles)
            pgo = [c for (ns, c) in peers if ns == where]
            if account in known or (not pgo and where not in accounts):
                continue  # a namespace this tree says nothing about (a Helm chart's)
            problems.append(problem(policy, field, _unknown(principal, account, where, pgo, peers)))
        names = {principal for _, principal in admitted}
        for (where, cluster), roles in peers.items():
            if not _selects(policy, namespace(policy), where, cluster):
                continue
            for account, role in roles.items():
                principal = f"cluster.local/ns/{where}/sa/{account}"
                if principal not in names:
                    problems.append(
                        problem(
                            policy,
                            "spec.rules",
                            f"no rule admits {principal}: PostgresCluster {where}/{cluster}'s "
                            f"{role} runs as {account}, so this ALLOW policy would deny it; "
                            f"add {principal} to the rule that admits the cluster's own pods",
                        )
                    )
    return problems


def _pgo_peers(cluster: Document) -> dict[str, str]:
    """Service account -> what it is, for the pods of ``cluster`` that talk to each other."""
    name = cluster.name
    roles = {f"{name}-instance": "PostgreSQL instances (replication, Patroni, WAL push)"}
    repos = [r for r in cluster.get("spec.backups.pgbackrest.repos") or [] if isinstance(r, dict)]
    if any("volume" in repo for repo in repos):
        roles[f"{name}-repohost"] = "pgBackRest repo host (backups pulled from the instances)"
    if any(kind in repo for repo in repos for kind in _CLOUD_REPOS):
        roles[f"{name}-pgbackrest"] = "backup Jobs (pgBackRest run against a cloud repo)"
    return roles


def _principals(policy: Document) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for r, rule in enumerate(policy.get("spec.rules") or []):
        for s, source in enumerate((rule or {}).get("from") or []):
            for p, principal in enumerate(
                ((source or {}).get("source") or {}).get("principals") or []
            ):
                found.append((f"spec.rules.{r}.from.{s}.source.principals.{p}", str(principal)))
    return found


def _selects(policy: Document, policy_namespace: str, where: str, cluster: str) -> bool:
    """Whether an ALLOW ``policy`` applies to the pods of PostgresCluster ``cluster``."""
    if policy_namespace != where or (policy.get("spec.action") or "ALLOW") != "ALLOW":
        return False
    labels = policy.get("spec.selector.matchLabels") or {}
    return not labels or labels.get(_CLUSTER_LABEL) == cluster


def _unknown(
    principal: str,
    account: str,
    where: str,
    clusters: list[str],
    peers: dict[tuple[str, str], dict[str, str]],
) -> str:
    if clusters:
        roles = peers[(where, clusters[0])]
        uses = "; ".join(f"{sa} for its {role}" for sa, role in roles.items())
        return (
            f"{principal}: no pod of PostgresCluster {where}/{clusters[0]} talks to its peers "
            f"as {account!r} (PGO v6 uses {uses}; backup Jobs of a volume repo only call the "
            "Kubernetes API); replace it with the account named there"
        )
    return (
        f"{principal}: no ServiceAccount {account!r} in namespace {where} here; "
        "no pod runs as it, so nothing this rule means to admit is admitted (check the name)"
    )
