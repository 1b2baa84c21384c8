"""Where phase 2-3 checks reach PostgreSQL, Redis, the Sentinels and Shlink, per kind of lab.

The sandbox's stores listen on this machine: its params name them and nothing
changes for it here. On a cluster lab every endpoint is a port-forward labkit
opens through the Kubernetes API (``labkit.cluster.reach``), once per check run
and closed when the run ends, and ``{kubernetes: ns/name/key}`` secrets are read
through the same Cluster.
"""

from __future__ import annotations

from collections.abc import Callable

from labkit.checks.base import Context, cluster_for
from labkit.cluster import resolve_secret
from labkit.cluster.reach import Reach
from labkit.params import Lab
from labkit.secrets import Secret, SecretRef
from labkit.shlink import ShlinkClient
from labkit.stores import Endpoint, lab_sentinels

__all__ = [
    "on_cluster",
    "postgres_where",
    "reach",
    "secret",
    "sentinels",
    "shlink_client",
]


def on_cluster(lab: Lab) -> bool:
    """Whether the stores are inside a cluster (reached through port-forwards)."""
    return lab.kind != "sandbox"


def reach(context: Context) -> Reach:
    """The run's forwards into the cluster (opened on first use, closed after the run)."""
    opened: Reach = context.resource(
        "cluster.reach", lambda: Reach(cluster_for(context), context.lab), Reach.close
    )
    return opened


def secret(context: Context, ref: SecretRef) -> Secret:
    """A secret from params; a Kubernetes Secret's key through the run's Cluster."""
    if ref.kind == "kubernetes" and on_cluster(context.lab):
        return resolve_secret(context.lab, ref, cluster_for(context))
    return context.lab.secret(ref)


def postgres_where(lab: Lab) -> str:
    """How a result names the PostgreSQL it asked."""
    settings = lab.postgres
    if on_cluster(lab):
        return (
            f"{settings.user}@PostgresCluster {settings.namespace}/{settings.cluster_name} "
            f"primary (port-forward)/{settings.database}"
        )
    return f"{settings.user}@{settings.host}:{settings.port}/{settings.database}"


def sentinels(context: Context) -> dict[Endpoint, str]:
    """The Sentinels to ask -> how a result names each (the pod on a cluster lab)."""
    if on_cluster(context.lab):
        return {endpoint: f"sentinel {pod}" for endpoint, pod in reach(context).sentinels().items()}
    return {endpoint: str(endpoint) for endpoint in lab_sentinels(context.lab)}


def master_reach(context: Context) -> Callable[[Endpoint], Endpoint] | None:
    """Maps the master the Sentinels name to where this machine reaches it (None: as named)."""
    return reach(context).redis_master if on_cluster(context.lab) else None


def shlink_client(context: Context) -> ShlinkClient:
    """A Shlink client for the run: the params' URL, or the Service forwarded on a cluster."""
    lab = context.lab
    if not on_cluster(lab):
        return ShlinkClient.from_lab(lab)
    return ShlinkClient(reach(context).shlink_url(), secret(context, lab.shlink.api_key))
