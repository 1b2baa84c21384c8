"""Drill faults on a cluster lab, through the Cluster: pod deletes and a cordon, then the wait back.

Each fault has the sandbox faults' shape (labkit.drills): ``prepare`` reads what it
will break before the load starts, ``inject`` breaks it (returns what it did),
``follow`` watches the lab's own failover while the load still runs, ``failover``
says what it saw and when, ``restore`` waits (with deadlines) until the topology is
back and returns what it saw, ``close`` undoes anything left (a cordon).

- redis-master: the master the Sentinels name (asked through a port-forward to the
  ``redis-sentinel`` Service) is mapped to its pod, which is deleted; the failover is
  the Sentinels naming another address; restored when every Redis pod is Ready and
  ``SENTINEL CKQUORUM`` says OK.
- postgres-primary: the PostgresCluster's pod labelled
  ``postgres-operator.crunchydata.com/role=master`` is deleted; the promotion is
  another pod taking that label (Patroni writes it); restored when the instance pods
  are Ready again and the new master's ``pg_stat_replication`` shows a streaming replica.
- shlink-pod: one Ready pod of the Shlink Deployment is deleted; restored when as many
  pods are Ready again (a new one among them).
- node-cut: a node running a Shlink pod is cordoned and its pods in the lab's
  namespaces (shlink, redis, postgres) are deleted, as a drain would; after
  ``drills.cut_s`` it is uncordoned; restored when it is schedulable and those
  namespaces' pods are Ready again. Always uncordoned on ``close``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import closing
from typing import Any

from labkit.cluster.client import Cluster
from labkit.cluster.reach import PGO_CLUSTER, PGO_ROLE, PRIMARY_ROLES, REDIS_LABELS, SENTINEL_PORT
from labkit.cluster.waits import pod_ready, wait_until
from labkit.errors import LabkitError
from labkit.params import Lab

__all__ = ["CLUSTER_FAULTS", "ClusterFault"]

SHLINK_LABELS = {"app.kubernetes.io/name": "shlink"}
SENTINEL_SERVICE = "redis-sentinel"
DRILL_MANAGER = "labkit-drill"  # the field manager of a drill's cordon
_NS = 1_000_000_000
Progress = Callable[[str], None]


def _name(pod: dict[str, Any]) -> str:
    return str(pod["metadata"]["name"])


class ClusterFault:
    """A fault through the Cluster: prepare, inject, follow, failover, restore, close."""

    def __init__(self, lab: Lab, cluster: Cluster, progress: Progress, settle_s: float) -> None:
        self.lab, self.cluster, self.progress, self.settle_s = lab, cluster, progress, settle_s
        self.injected_ns = 0
        self.changed_ns = 0  # when the lab's own failover was seen

    def prepare(self) -> None:
        """Read what the fault needs before the load starts."""

    def inject(self) -> str:
        """Break it now; returns what was done."""
        raise NotImplementedError

    def follow(self) -> None:
        """While the load still runs: watch the failover."""

    def failover(self) -> dict[str, Any]:
        """What the lab's own failover did, and when."""
        return {}

    def restore(self) -> list[str]:
        """Wait until the topology is back; what was seen (WaitTimeout when it is not)."""
        return []

    def close(self) -> None:
        """Undo whatever the fault left (always called)."""

    def _seconds(self, at_ns: int) -> float | None:
        return round((at_ns - self.injected_ns) / _NS, 3) if at_ns else None

    def _pods(self, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        return self.cluster.list("Pod", namespace, labels=labels)

    def _wait_ready(self, namespace: str, labels: dict[str, str], count: int, what: str) -> str:
        def probe() -> tuple[bool, str]:
            pods = self._pods(namespace, labels)
            ready = sorted(_name(p) for p in pods if pod_ready(p))
            return len(ready) >= count, f"{len(ready)}/{count} Ready ({', '.join(ready)})"

        return f"{what}: " + wait_until(
            f"{what} Ready again in {namespace}", probe, self.settle_s, 0.2, self.progress
        )


class RedisMaster(ClusterFault):
    """Delete the pod of the master the Sentinels name."""

    def _ask(self, command: Callable[[Any], Any]) -> Any:
        from labkit import stores  # noqa: PLC0415 - psycopg/redis only when a drill runs

        namespace = self.lab.redis.namespace
        with self.cluster.open_service(namespace, SENTINEL_SERVICE, SENTINEL_PORT) as (host, port):
            endpoint = stores.Endpoint(host, port)
            with closing(stores.redis_client(endpoint)) as client:
                return command(client)

    def _master(self) -> str:
        reply = self._ask(
            lambda client: client.sentinel_get_master_addr_by_name(self.lab.redis.master_name)
        )
        if not isinstance(reply, tuple | list) or len(reply) != 2:
            raise LabkitError(
                f"redis-master drill: the Sentinels know no master {self.lab.redis.master_name!r}"
            )
        return str(reply[0])

    def _pod_of(self, address: str) -> dict[str, Any]:
        pods = self._pods(self.lab.redis.namespace, REDIS_LABELS)
        for pod in pods:
            ip = (pod.get("status") or {}).get("podIP")
            if address == ip or address.split(".", maxsplit=1)[0] == _name(pod):
                return pod
        raise LabkitError(
            f"redis-master drill: no pod in namespace {self.lab.redis.namespace} is the master "
            f"the Sentinels name ({address}); pods: {', '.join(_name(p) for p in pods) or 'none'}"
        )

    def prepare(self) -> None:
        self.master = self._master()
        self.victim = _name(self._pod_of(self.master))
        self.count = len(self._pods(self.lab.redis.namespace, REDIS_LABELS))
        self.new_master = ""

    def inject(self) -> str:
        self.cluster.delete("Pod", self.victim, self.lab.redis.namespace)
        where = f"{self.lab.redis.namespace}/{self.victim}"
        return f"deleted the Redis master's pod {where} ({self.master})"

    def follow(self) -> None:
        deadline = time.monotonic() + self.settle_s
        while time.monotonic() < deadline:
            try:
                named = self._master()
            except LabkitError:
                named = ""
            if named and named != self.master:
                self.changed_ns, self.new_master = time.monotonic_ns(), named
                return
            time.sleep(0.2)

    def failover(self) -> dict[str, Any]:
        promoted = self._seconds(self.changed_ns)
        return {
            "source": "SENTINEL get-master-addr-by-name through a port-forward to redis-sentinel",
            "old_master": self.master,
            "new_master": self.new_master,
            "promoted_s": promoted,
            "summary": (
                f"Sentinels named {self.new_master} instead of {self.master} {promoted}s after "
                "the delete"
                if promoted is not None
                else f"the Sentinels still named {self.master} after {self.settle_s:.0f}s"
            ),
        }

    def restore(self) -> list[str]:
        if not self.changed_ns:
            raise LabkitError(
                f"redis-master drill: no failover within {self.settle_s:.0f}s (the Sentinels "
                f"still name {self.master}); see `kubectl -n {self.lab.redis.namespace} logs "
                f"{self.victim} -c sentinel`"
            )
        seen = [self._wait_ready(self.lab.redis.namespace, REDIS_LABELS, self.count, "Redis pods")]

        def quorum() -> tuple[bool, str]:
            reply = self._ask(
                lambda client: client.execute_command(
                    "SENTINEL", "CKQUORUM", self.lab.redis.master_name
                )
            )
            text = str(reply)
            return text.startswith("OK") or text == "True", text

        seen.append(
            "Sentinel quorum: "
            + wait_until("Sentinel quorum", quorum, self.settle_s, 0.5, self.progress)
        )
        return seen


class PostgresPrimary(ClusterFault):
    """Delete the PostgresCluster's master pod; Patroni promotes a replica (its label moves)."""

    def _labels(self, role: str | None = None) -> dict[str, str]:
        labels = {PGO_CLUSTER: self.lab.postgres.cluster_name}
        return labels | ({PGO_ROLE: role} if role else {})

    def _instances(self) -> list[dict[str, Any]]:
        pods = self._pods(self.lab.postgres.namespace, self._labels())
        return [p for p in pods if (p["metadata"].get("labels") or {}).get(PGO_ROLE)]

    def _masters(self) -> list[str]:
        # Patroni labels its leader "master"; newer releases say "primary": either counts.
        return [
            _name(p)
            for p in self._instances()
            if (p["metadata"].get("labels") or {}).get(PGO_ROLE) in PRIMARY_ROLES
        ]

    def prepare(self) -> None:
        masters = self._masters()
        where = f"{self.lab.postgres.namespace}/{self.lab.postgres.cluster_name}"
        if len(masters) != 1:
            raise LabkitError(
                f"postgres-primary drill: PostgresCluster {where} has {len(masters)} pods "
                f"labelled {PGO_ROLE}=master ({', '.join(masters)}); expected one"
            )
        self.victim = masters[0]
        self.count = len(self._instances())
        if self.count < 2:
            raise LabkitError(
                f"postgres-primary drill: PostgresCluster {where} runs {self.count} instance "
                "pod(s); with no replica, deleting the master is an outage, not a failover"
            )
        self.new_master = ""

    def inject(self) -> str:
        self.cluster.delete("Pod", self.victim, self.lab.postgres.namespace)
        return f"deleted the PostgreSQL master pod {self.lab.postgres.namespace}/{self.victim}"

    def follow(self) -> None:
        deadline = time.monotonic() + self.settle_s
        while time.monotonic() < deadline:
            others = [name for name in self._masters() if name != self.victim]
            if others:
                self.changed_ns, self.new_master = time.monotonic_ns(), others[0]
                return
            time.sleep(0.2)

    def failover(self) -> dict[str, Any]:
        promoted = self._seconds(self.changed_ns)
        return {
            "source": f"the {PGO_ROLE}=master label (Patroni writes it on promotion)",
            "old_master": self.victim,
            "new_master": self.new_master,
            "promoted_s": promoted,
            "summary": (
                f"{self.new_master} labelled master {promoted}s after {self.victim} was deleted"
                if promoted is not None
                else f"no other pod labelled master within {self.settle_s:.0f}s"
            ),
        }

    def restore(self) -> list[str]:
        if not self.changed_ns:
            raise LabkitError(
                f"postgres-primary drill: no replica promoted within {self.settle_s:.0f}s; see "
                f"`kubectl -n {self.lab.postgres.namespace} logs {self.victim} -c database`"
            )
        namespace = self.lab.postgres.namespace
        seen = [self._wait_ready(namespace, self._labels(), self.count, "PostgreSQL instances")]
        query = "select count(*) from pg_stat_replication where state = 'streaming'"

        def streaming() -> tuple[bool, str]:
            masters = self._masters()
            if len(masters) != 1:
                return False, f"{len(masters)} pods labelled master"
            result = self.cluster.exec(
                masters[0], namespace, ["psql", "-tAc", query], container="database"
            )
            count = result.stdout.strip()
            ok = result.exit_code == 0 and count.isdigit() and int(count) >= 1
            return ok, f"{masters[0]}: {count or result.stderr.strip()} streaming replica(s)"

        seen.append(wait_until("a streaming replica", streaming, self.settle_s, 0.5, self.progress))
        return seen


class ShlinkPod(ClusterFault):
    """Delete one Ready pod of the Shlink Deployment."""

    def prepare(self) -> None:
        ready = [p for p in self._pods(self.lab.shlink.namespace, SHLINK_LABELS) if pod_ready(p)]
        if len(ready) < 2:
            raise LabkitError(
                f"shlink-pod drill: {len(ready)} Ready Shlink pod(s) in namespace "
                f"{self.lab.shlink.namespace}; with fewer than 2 deleting one is an outage"
            )
        self.before = {_name(p) for p in ready}
        self.victim = sorted(self.before)[0]

    def inject(self) -> str:
        self.cluster.delete("Pod", self.victim, self.lab.shlink.namespace)
        where = f"{self.lab.shlink.namespace}/{self.victim}"
        return f"deleted Shlink pod {where} (1 of {len(self.before)})"

    def follow(self) -> None:
        deadline = time.monotonic() + self.settle_s
        while time.monotonic() < deadline:
            pods = self._pods(self.lab.shlink.namespace, SHLINK_LABELS)
            fresh = [_name(p) for p in pods if pod_ready(p) and _name(p) not in self.before]
            if fresh:
                self.changed_ns, self.replacement = time.monotonic_ns(), fresh[0]
                return
            time.sleep(0.2)

    def failover(self) -> dict[str, Any]:
        replaced = self._seconds(self.changed_ns)
        if replaced is None:
            return {"summary": f"no replacement pod Ready within {self.settle_s:.0f}s"}
        return {
            "source": "the Shlink pods' Ready condition",
            "replaced_s": replaced,
            "summary": f"replacement pod {self.replacement} Ready {replaced}s after the delete",
        }

    def restore(self) -> list[str]:
        return [
            self._wait_ready(self.lab.shlink.namespace, SHLINK_LABELS, len(self.before), "Shlink")
        ]


class NodeCut(ClusterFault):
    """Cordon a node running a Shlink pod, delete its pods in the lab's namespaces, uncordon."""

    def _namespaces(self) -> list[str]:
        lab = self.lab
        return list(
            dict.fromkeys([lab.shlink.namespace, lab.redis.namespace, lab.postgres.namespace])
        )

    def _cordon(self, on: bool) -> None:
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.node}}
        node["spec"] = {"unschedulable": on}
        self.cluster.apply(node, force=True, field_manager=DRILL_MANAGER)

    def prepare(self) -> None:
        shlink = [p for p in self._pods(self.lab.shlink.namespace, SHLINK_LABELS) if pod_ready(p)]
        nodes = sorted({str(p["spec"].get("nodeName", "")) for p in shlink} - {""})
        if len(shlink) < 2 or len(nodes) < 2:
            raise LabkitError(
                f"node-cut drill: Shlink runs {len(shlink)} Ready pod(s) on {len(nodes)} node(s); "
                "cutting one off needs it spread over at least 2"
            )
        self.node = nodes[-1]
        self.counts = {ns: len(self.cluster.list("Pod", ns)) for ns in self._namespaces()}
        self.cordoned = False
        self.uncordoned_ns = 0

    def inject(self) -> str:
        self._cordon(True)
        self.cordoned = True
        deleted = []
        for namespace in self._namespaces():
            for pod in self.cluster.list("Pod", namespace, fields=f"spec.nodeName={self.node}"):
                owners = pod["metadata"].get("ownerReferences") or []
                if any(owner.get("kind") == "DaemonSet" for owner in owners):
                    continue
                self.cluster.delete("Pod", _name(pod), namespace)
                deleted.append(f"{namespace}/{_name(pod)}")
        self.deleted = deleted
        return f"cordoned {self.node} and deleted its {len(deleted)} pod(s): {', '.join(deleted)}"

    def follow(self) -> None:
        time.sleep(self.lab.drills.cut_s)
        self._cordon(False)
        self.cordoned = False
        self.uncordoned_ns = time.monotonic_ns()

    def failover(self) -> dict[str, Any]:
        return {
            "source": "the node's spec.unschedulable and its pods",
            "node": self.node,
            "deleted": self.deleted,
            "uncordoned_s": self._seconds(self.uncordoned_ns),
            "summary": (
                f"{self.node} cordoned with {len(self.deleted)} pod(s) deleted, uncordoned "
                f"{self._seconds(self.uncordoned_ns)}s later"
            ),
        }

    def restore(self) -> list[str]:
        if self.cordoned:
            self._cordon(False)
            self.cordoned = False
        node = self.cluster.require("Node", self.node)
        if (node.get("spec") or {}).get("unschedulable"):
            raise LabkitError(f"node-cut drill: {self.node} still unschedulable after uncordon")
        seen = [f"{self.node} schedulable again"]
        for namespace, count in self.counts.items():

            def probe(namespace: str = namespace, count: int = count) -> tuple[bool, str]:
                pods = self.cluster.list("Pod", namespace)
                ready = [p for p in pods if pod_ready(p)]
                return len(ready) >= count, f"{len(ready)}/{count} pods Ready"

            seen.append(
                f"{namespace}: "
                + wait_until(f"pods Ready in {namespace}", probe, self.settle_s, 0.2, self.progress)
            )
        return seen

    def close(self) -> None:
        if getattr(self, "cordoned", False):
            self._cordon(False)
            self.cordoned = False


CLUSTER_FAULTS: dict[str, type[ClusterFault]] = {
    "redis-master": RedisMaster,
    "postgres-primary": PostgresPrimary,
    "shortener-worker": ShlinkPod,
    "node-cut": NodeCut,
}
