"""The Kubernetes side of labkit: the only package that imports ``kubernetes``.

How a check uses it (phases 1.3-3.x register checks in labkit/checks/phases/)::

    from labkit.checks.base import cluster_for

    @implements("2.1.3")
    def operator_running(context: Context) -> Outcome:
        cluster = cluster_for(context)              # one Cluster per check run, closed after
        pods = cluster.list("Pod", "postgres-operator", labels={"app.kubernetes.io/name": "pgo"})
        ready = [p["metadata"]["name"] for p in pods if pod_ready(p)]
        return Outcome.judge(bool(ready), "a pgo pod Running and Ready", ...)

``Cluster`` verbs: ``get`` (None when absent), ``require`` (NotFound naming it),
``exists``, ``list`` (label/field selectors), ``apply`` (server-side, field manager
``labkit``, ``force`` explicit, ``dry_run``), ``apply_all`` (multi-document YAML),
``create``, ``delete``, ``logs``, ``events``, ``exec`` (a command in a pod: exit code,
stdout, stderr), ``secret_value`` (a masked Secret),
``proxy`` (HTTP to a Service or Pod through the API's proxy), ``open_service``
(a ``with`` block holding a local port forwarded to a Service through the API: hand
the yielded (host, port) to psycopg or redis), ``wait`` /
``wait_for`` / ``rollout`` (deadline, progress, evidence on timeout). Kinds are
plain names (``"Deployment"``, ``"Application"``) resolved through discovery;
pass ``api_version`` when a kind is ambiguous. Errors are ClusterError, NotFound,
ApplyConflict, ConnectError, WaitTimeout (labkit.errors), each naming the verb,
the object and what to try.

How a test builds a healthy or broken cluster: tests/kubeapi/ is an API double
over real HTTP on loopback (``KubeApi``); ``tests/kubeapi/fixtures.py`` has
``healthy_lab(store)`` and one-line breakages (``node_not_ready``,
``pod_crashing``, ``application_degraded``, ``traefik_present``...), and
``Kubelet`` (a hook that runs the short-lived pods checks create). The fixtures
``api``, ``lab`` and ``cluster`` in tests/cluster/conftest.py give a running
double holding the healthy lab, a homelab-kind Lab pointing at it, and an open
Cluster. See tests/kubeapi/__init__.py.
"""

from labkit.cluster.client import FIELD_MANAGER, Cluster, ExecResult, describe, kubeconfig_path
from labkit.cluster.documents import apply_order, load_documents, parse_documents
from labkit.cluster.forward import open_service
from labkit.cluster.secrets import resolve_secret
from labkit.cluster.steps import KubeObject
from labkit.cluster.waits import (
    condition_status,
    failing_containers,
    object_evidence,
    pod_ready,
    rollout_status,
    wait_until,
)

__all__ = [
    "FIELD_MANAGER",
    "Cluster",
    "ExecResult",
    "KubeObject",
    "apply_order",
    "condition_status",
    "describe",
    "failing_containers",
    "kubeconfig_path",
    "load_documents",
    "object_evidence",
    "open_service",
    "parse_documents",
    "pod_ready",
    "resolve_secret",
    "rollout_status",
    "wait_until",
]
