"""The lab's data stores reached through the cluster: port-forwards labkit opens and closes.

On a cluster lab, phase 2-3 checks (and anything else that talks to PostgreSQL,
Redis or Shlink) get their endpoints here instead of from hand-made
port-forwards: ``Reach(cluster, lab)`` forwards a loopback port, on first use,

- to PGO's primary pod (label ``postgres-operator.crunchydata.com/role=master``)
  for PostgreSQL (PGO's ``<cluster>-primary`` Service has no selector to follow);
- to each Redis pod's Redis (6379) and Sentinel (26379) ports;
- to the Shlink Service's ``http`` port for its REST API and redirects.

``redis_master`` maps the master the Sentinels name (a pod's DNS name or IP inside
the cluster) to the forward of that pod. Every forward closes with ``close``.
The sandbox never comes here: its stores listen on this machine.
"""

from __future__ import annotations

from contextlib import ExitStack, closing
from typing import Any

from labkit.cluster.client import Cluster
from labkit.cluster.forward import open_pod, open_service
from labkit.cluster.waits import pod_ready
from labkit.errors import ConnectError
from labkit.params import Lab
from labkit.stores import Endpoint, lab_redis

__all__ = ["PGO_CLUSTER", "PGO_ROLE", "PRIMARY_ROLES", "REDIS_LABELS", "Reach"]

PGO_CLUSTER = "postgres-operator.crunchydata.com/cluster"
PGO_ROLE = "postgres-operator.crunchydata.com/role"
REDIS_LABELS = {"app.kubernetes.io/name": "redis"}
PRIMARY_ROLES = ("master", "primary")  # Patroni's leader label; "primary" in newer releases
REDIS_PORT = 6379
SENTINEL_PORT = 26379


class Reach:
    """Loopback endpoints of the lab's stores inside the cluster, each opened on first use."""

    def __init__(self, cluster: Cluster, lab: Lab) -> None:
        self.cluster = cluster
        self.lab = lab
        self._stack = ExitStack()
        self._open: dict[tuple[str, str, int], Endpoint] = {}

    def close(self) -> None:
        """Close every forward opened so far."""
        self._stack.close()
        self._open.clear()

    def __enter__(self) -> Reach:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pod(self, namespace: str, pod: str, port: int) -> Endpoint:
        key = (namespace, pod, port)
        if key not in self._open:
            host, local = self._stack.enter_context(open_pod(self.cluster, namespace, pod, port))
            self._open[key] = Endpoint(host, local)
        return self._open[key]

    # -- PostgreSQL -------------------------------------------------------------------------

    def postgres_primary(self) -> str:
        """The PostgresCluster's primary pod (Ready); ConnectError says what was seen."""
        settings = self.lab.postgres
        pods = self.cluster.list(
            "Pod", settings.namespace, labels={PGO_CLUSTER: settings.cluster_name}
        )
        leaders = [
            p
            for p in pods
            if (p["metadata"].get("labels") or {}).get(PGO_ROLE) in PRIMARY_ROLES and pod_ready(p)
        ]
        if len(leaders) != 1:
            seen = ", ".join(
                f"{p['metadata']['name']} (role {(p['metadata'].get('labels') or {}).get(PGO_ROLE)}"
                f", ready {pod_ready(p)})"
                for p in pods
            )
            raise ConnectError(
                f"PostgresCluster {settings.namespace}/{settings.cluster_name}: expected one Ready "
                f"pod labelled {PGO_ROLE}=master, saw {len(leaders)} among [{seen or 'no pods'}]; "
                f"`kubectl get pods -n {settings.namespace} -L {PGO_ROLE}`"
            )
        return str(leaders[0]["metadata"]["name"])

    def postgres(self) -> Endpoint:
        """A loopback endpoint forwarded to the primary's PostgreSQL port (5432)."""
        return self._pod(self.lab.postgres.namespace, self.postgres_primary(), 5432)

    # -- Redis and Sentinel -----------------------------------------------------------------

    def redis_pods(self) -> list[dict[str, Any]]:
        """The Redis pods (``app.kubernetes.io/name=redis``), by name."""
        pods = self.cluster.list("Pod", self.lab.redis.namespace, labels=REDIS_LABELS)
        return sorted(pods, key=lambda p: str(p["metadata"]["name"]))

    def redis(self, pod: str) -> Endpoint:
        """A loopback endpoint forwarded to ``pod``'s Redis."""
        return self._pod(self.lab.redis.namespace, pod, REDIS_PORT)

    def sentinels(self) -> dict[Endpoint, str]:
        """Loopback endpoints of every Redis pod's Sentinel -> the pod's name."""
        return {
            self._pod(self.lab.redis.namespace, name, SENTINEL_PORT): name
            for name in (str(p["metadata"]["name"]) for p in self.redis_pods())
        }

    def redis_master(self, named: Endpoint) -> Endpoint:
        """Where this machine reaches the master the Sentinels name (``named``).

        A name like ``redis-0.redis-headless...`` or a pod IP picks that pod. Otherwise the
        pod whose Redis says ``role:master`` is it, if its replicas follow ``named``.
        """
        pods = self.redis_pods()
        for pod in pods:
            name = str(pod["metadata"]["name"])
            ip = (pod.get("status") or {}).get("podIP")
            if named.host in (name, ip) or named.host.startswith(name + "."):
                return self.redis(name)
        roles: dict[str, dict[str, Any]] = {}
        for pod in pods:
            name = str(pod["metadata"]["name"])
            try:
                with closing(lab_redis(self.lab, self.redis(name))) as client:
                    roles[name] = client.info("replication")
            except ConnectError as exc:
                roles[name] = {"role": f"unreachable ({exc})"}
        masters = [name for name, info in roles.items() if info.get("role") == "master"]
        followed = {
            f"{info.get('master_host')}:{info.get('master_port')}"
            for info in roles.values()
            if info.get("role") == "slave"
        }
        if len(masters) == 1 and followed <= {str(named)}:
            return self.redis(masters[0])
        seen = "; ".join(f"{name}: role {info.get('role')}" for name, info in roles.items())
        raise ConnectError(
            f"the Sentinels name {named} as master of {self.lab.redis.master_name}, which is no "
            f"Redis pod in {self.lab.redis.namespace} (saw {seen}; replicas follow "
            f"{sorted(followed) or 'nothing'})"
        )

    # -- Shlink -----------------------------------------------------------------------------

    def shlink_url(self) -> str:
        """``http://127.0.0.1:<port>`` forwarded to the Shlink Service's ``http`` port."""
        key = (self.lab.shlink.namespace, "service/shlink", 0)
        if key not in self._open:
            host, local = self._stack.enter_context(
                open_service(self.cluster, self.lab.shlink.namespace, "shlink", "http")
            )
            self._open[key] = Endpoint(host, local)
        endpoint = self._open[key]
        return f"http://{endpoint.host}:{endpoint.port}"
