"""Phase 1 checks through the Kubernetes API: 1.3 the cluster, 1.4 storage and network, 1.5 ArgoCD.

They read the cluster with the lab's Cluster (shared per run). Checks that need
a workload create short-lived pods and claims named ``labkit-probe-...`` in the
``default`` namespace and delete them afterwards, even when the check fails.
Pod-to-pod networking and DNS are judged by what a probe pod printed and how it
ended (busybox ``wget``/``nslookup``), the test pod by the API's pod proxy, and
ArgoCD's UI and login through the API's service proxy: nothing needs a
port-forward made by hand. On the sandbox these items skip (no Kubernetes API).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from labkit.checks.base import Context, Outcome, cluster_for, implements
from labkit.cluster import Cluster, failing_containers, pod_ready, rollout_status
from labkit.cluster.waits import condition_status
from labkit.errors import LabkitError, WaitTimeout

__all__: list[str] = []  # checks register themselves

PROBE_NAMESPACE = "default"
NGINX_IMAGE = "nginx:1.27-alpine"
BUSYBOX_IMAGE = "busybox:1.36"
_PROBE_LABEL = "labkit.io/probe"
_ETCD_MEMBER = "etcd.k3s.cattle.io/node-name"
_PONG = "labkit-pong"
_DNS_NAME = "kubernetes.default.svc.cluster.local"
_ARGOCD_CORE = (
    ("Deployment", "argocd-server"),
    ("Deployment", "argocd-repo-server"),
    ("StatefulSet", "argocd-application-controller"),
)


def _wait_s(context: Context) -> float:
    return min(context.lab.cluster.wait_timeout_s, 180.0)


def _pod(name: str, image: str, command: list[str] | None = None, node: str = "") -> dict[str, Any]:
    container: dict[str, Any] = {"name": "probe", "image": image}
    if command:
        container["command"] = command
    spec: dict[str, Any] = {
        "containers": [container],
        "restartPolicy": "Never" if command else "Always",
        "terminationGracePeriodSeconds": 1,
    }
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": PROBE_NAMESPACE, "labels": {_PROBE_LABEL: "1"}},
        "spec": spec,
    }


def _probe_name(what: str) -> str:
    return f"labkit-probe-{what}-{uuid.uuid4().hex[:6]}"


@contextmanager
def _created(cluster: Cluster, manifest: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Create a short-lived object; delete it on the way out, whatever happened."""
    created = cluster.create(manifest)
    try:
        yield created
    finally:
        with suppress(LabkitError):  # a failed clean-up must not hide the check's result
            cluster.delete(manifest["kind"], manifest["metadata"]["name"], PROBE_NAMESPACE)


def _finished(cluster: Cluster, name: str, timeout_s: float) -> tuple[str, str]:
    """Wait until a run-once probe pod ends; (phase, its log)."""

    def ended(pod: dict[str, Any]) -> bool:
        return (pod.get("status") or {}).get("phase") in {"Succeeded", "Failed"}

    pod = cluster.wait_for("Pod", name, PROBE_NAMESPACE, predicate=ended, timeout_s=timeout_s)
    phase = str((pod.get("status") or {}).get("phase"))
    return phase, cluster.logs(name, PROBE_NAMESPACE, "probe", tail_lines=20)


def _waited(error: WaitTimeout) -> str:
    return str(error).splitlines()[0]


# -- 1.3 the cluster ------------------------------------------------------------------------


@implements("1.3.2")
def api_answers(context: Context) -> Outcome:
    """The API answers with the lab's kubeconfig: its version, and the node list."""
    try:
        cluster = cluster_for(context)
        version = cluster.version()
        names = [node["metadata"]["name"] for node in cluster.list("Node")]
    except LabkitError as exc:
        return Outcome.judge(False, "the API answers (kubectl get nodes)", str(exc))
    return Outcome.judge(
        bool(names),
        "the API answers and lists nodes",
        f"{version}; nodes: {', '.join(names) or 'none'}",
        f"GET {cluster.server}/version; GET /api/v1/nodes (context {cluster.context})",
    )


def _roles(node: dict[str, Any]) -> list[str]:
    prefix = "node-role.kubernetes.io/"
    labels = (node.get("metadata") or {}).get("labels") or {}
    return sorted(key.removeprefix(prefix) for key in labels if key.startswith(prefix))


@implements("1.3.3")
def nodes_ready(context: Context) -> list[Outcome]:
    """Every lab node is Ready; servers have the control-plane and etcd roles and joined etcd."""
    cluster = cluster_for(context)
    found = {node["metadata"]["name"]: node for node in cluster.list("Node")}
    outcomes = []
    for wanted in context.lab.nodes:
        node = found.get(wanted.name)
        roles_wanted = ["control-plane", "etcd"] if wanted.role == "server" else []
        expected = "Ready" + (f", roles {', '.join(roles_wanted)}" if roles_wanted else "")
        if node is None:
            outcomes.append(
                Outcome.judge(
                    False,
                    expected,
                    f"not in the cluster (nodes: {sorted(found)})",
                    "GET /api/v1/nodes",
                    wanted.name,
                )
            )
            continue
        ready = condition_status(node, "Ready")
        roles = _roles(node)
        message = next(
            (
                c.get("message", "")
                for c in node["status"].get("conditions", [])
                if c.get("type") == "Ready"
            ),
            "",
        )
        missing = [role for role in roles_wanted if role not in roles]
        # K3s writes this annotation on every server that joined the embedded etcd cluster.
        annotations = node["metadata"].get("annotations") or {}
        member = annotations.get(_ETCD_MEMBER, "")
        if wanted.role == "server" and not member:
            missing.append(f"etcd member ({_ETCD_MEMBER})")
        observed = f"Ready={ready or 'absent'} ({message}); roles {','.join(roles) or 'none'}"
        if member:
            observed += f"; etcd member {member}"
        if missing:
            observed += f"; missing roles {missing}"
        version = (node["status"].get("nodeInfo") or {}).get("kubeletVersion", "")
        outcomes.append(
            Outcome.judge(
                ready == "True" and not missing,
                expected,
                observed,
                f"GET /api/v1/nodes/{wanted.name}: kubelet {version}",
                wanted.name,
            )
        )
    return outcomes


@implements("1.3.4")
def default_namespace(context: Context) -> Outcome:
    """The ``default`` namespace exists and is Active."""
    namespace = cluster_for(context).get("Namespace", "default")
    phase = ((namespace or {}).get("status") or {}).get("phase", "absent")
    return Outcome.judge(
        phase == "Active", "namespace default Active", f"phase {phase}", "GET /api/v1/namespaces"
    )


class _TestPod:
    """The nginx test pod of 1.3.5-1.3.8, shared by those checks and deleted at the end."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.name = _probe_name("nginx")
        self.error = ""
        try:
            cluster.create(_pod(self.name, NGINX_IMAGE))
        except LabkitError as exc:
            self.error = str(exc)

    def close(self) -> None:
        with suppress(LabkitError):
            self.cluster.delete("Pod", self.name, PROBE_NAMESPACE)


def _test_pod(context: Context) -> _TestPod:
    made: _TestPod = context.resource(
        "cluster1.test-pod", lambda: _TestPod(cluster_for(context)), _TestPod.close
    )
    return made


@implements("1.3.5")
def test_pod_created(context: Context) -> Outcome:
    """The API accepts a pod (kubectl run nginx --image=nginx)."""
    pod = _test_pod(context)
    return Outcome.judge(
        not pod.error,
        f"pod {PROBE_NAMESPACE}/{pod.name} ({NGINX_IMAGE}) accepted",
        pod.error or "created",
        f"POST /api/v1/namespaces/{PROBE_NAMESPACE}/pods",
    )


@implements("1.3.6")
def test_pod_started(context: Context) -> Outcome:
    """The test pod becomes Running and Ready."""
    pod = _test_pod(context)
    if pod.error:
        return Outcome.judge(False, "test pod Running and Ready", f"not created: {pod.error}")
    try:
        found = pod.cluster.wait_for(
            "Pod", pod.name, PROBE_NAMESPACE, predicate=pod_ready, timeout_s=_wait_s(context)
        )
    except WaitTimeout as exc:
        return Outcome.judge(False, "test pod Running and Ready", _waited(exc), str(exc))
    return Outcome.judge(
        True,
        "test pod Running and Ready",
        f"Running on {found['spec'].get('nodeName', '?')}, IP {found['status'].get('podIP')}",
        f"GET /api/v1/namespaces/{PROBE_NAMESPACE}/pods/{pod.name}",
    )


@implements("1.3.7")
def test_pod_answers(context: Context) -> Outcome:
    """nginx in the test pod answers HTTP (through the API's pod proxy, like curl localhost)."""
    pod = _test_pod(context)
    if pod.error:
        return Outcome.judge(False, "nginx answers", f"no test pod: {pod.error}")
    try:
        pod.cluster.wait_for(
            "Pod", pod.name, PROBE_NAMESPACE, predicate=pod_ready, timeout_s=_wait_s(context)
        )
        status, body = pod.cluster.proxy(PROBE_NAMESPACE, pod.name, 80, "/", kind="pods")
    except LabkitError as exc:
        return Outcome.judge(False, "nginx answers 200", str(exc).splitlines()[0])
    return Outcome.judge(
        status == 200 and "nginx" in body.lower(),
        "HTTP 200 from nginx",
        f"HTTP {status}: {' '.join(body.split())[:80]}",
        f"GET /api/v1/namespaces/{PROBE_NAMESPACE}/pods/{pod.name}:80/proxy/",
    )


@implements("1.3.8")
def test_pod_deleted(context: Context) -> Outcome:
    """The test pod is deleted and gone."""
    pod = _test_pod(context)
    if pod.error:
        return Outcome.judge(False, "test pod deleted", f"there was none: {pod.error}")
    cluster = pod.cluster
    cluster.delete("Pod", pod.name, PROBE_NAMESPACE)
    try:
        cluster.wait(
            f"pod {pod.name} gone",
            lambda: (not cluster.exists("Pod", pod.name, PROBE_NAMESPACE), "still there"),
            _wait_s(context),
        )
    except WaitTimeout as exc:
        return Outcome.judge(False, "test pod gone", _waited(exc), str(exc))
    return Outcome.judge(
        True, "test pod gone", "deleted; GET answers 404", f"DELETE .../pods/{pod.name}"
    )


# -- 1.4 storage and networking -------------------------------------------------------------

_DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"


@implements("1.4.1")
def storage_class(context: Context) -> Outcome:
    """A StorageClass exists and one is the default."""
    classes = cluster_for(context).list("StorageClass")
    shown = []
    defaults = []
    for item in classes:
        name = item["metadata"]["name"]
        annotations = item["metadata"].get("annotations") or {}
        is_default = annotations.get(_DEFAULT_CLASS) == "true"
        shown.append(f"{name} ({item.get('provisioner', '?')}{', default' if is_default else ''})")
        if is_default:
            defaults.append(name)
    return Outcome.judge(
        len(defaults) == 1,
        "exactly one default StorageClass",
        "; ".join(shown) or "no StorageClass",
        "GET /apis/storage.k8s.io/v1/storageclasses",
    )


@implements("1.4.2")
def claim_binds(context: Context) -> Outcome:
    """A 1Mi claim on the default class binds once a pod uses it (both deleted after)."""
    cluster = cluster_for(context)
    claim = _probe_name("pvc")
    manifest = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim, "namespace": PROBE_NAMESPACE, "labels": {_PROBE_LABEL: "1"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}},
    }
    consumer = _pod(_probe_name("pvc-user"), BUSYBOX_IMAGE, ["sh", "-c", "date > /data/probe"])
    consumer["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    consumer["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
    with _created(cluster, manifest), _created(cluster, consumer):
        try:
            found = cluster.wait_for(
                "PersistentVolumeClaim",
                claim,
                PROBE_NAMESPACE,
                predicate=lambda pvc: (pvc.get("status") or {}).get("phase") == "Bound",
                timeout_s=_wait_s(context),
                describe_state=lambda pvc: f"phase {(pvc.get('status') or {}).get('phase')}",
            )
        except WaitTimeout as exc:
            return Outcome.judge(False, "claim Bound", _waited(exc), str(exc))
    volume = found["spec"].get("volumeName", "?")
    return Outcome.judge(
        True, "claim Bound", f"Bound to {volume}", f"PersistentVolumeClaim {claim} (deleted)"
    )


def _run_probe(
    context: Context, what: str, command: list[str], node: str = ""
) -> tuple[str, str, str]:
    """Run a busybox command in a pod until it ends: (phase, log, pod name); pod deleted."""
    cluster = cluster_for(context)
    name = _probe_name(what)
    with _created(cluster, _pod(name, BUSYBOX_IMAGE, command, node)):
        phase, log = _finished(cluster, name, _wait_s(context))
    return phase, log, name


@implements("1.4.3")
def pod_network(context: Context) -> Outcome:
    """A pod on one node fetches a page from a pod on another node (by pod IP)."""
    cluster = cluster_for(context)
    nodes = context.lab.node_names
    server_node, client_node = nodes[0], nodes[1 % len(nodes)]
    server = _probe_name("http")
    script = f"mkdir -p /www && echo {_PONG} > /www/index.html && httpd -f -p 8080 -h /www"
    manifest = _pod(server, BUSYBOX_IMAGE, ["sh", "-c", script], server_node)
    manifest["spec"]["restartPolicy"] = "Always"
    with _created(cluster, manifest):
        try:
            running = cluster.wait_for(
                "Pod", server, PROBE_NAMESPACE, predicate=pod_ready, timeout_s=_wait_s(context)
            )
        except WaitTimeout as exc:
            return Outcome.judge(False, "a server pod to reach", _waited(exc), str(exc))
        address = running["status"].get("podIP", "")
        url = f"http://{address}:8080/"
        try:
            phase, log, client = _run_probe(
                context, "wget", ["wget", "-qO-", "-T", "5", url], client_node
            )
        except WaitTimeout as exc:
            return Outcome.judge(False, f"{url} fetched", _waited(exc), str(exc))
    across = "across nodes" if server_node != client_node else "(one node only)"
    return Outcome.judge(
        phase == "Succeeded" and _PONG in log,
        f"pod on {client_node} fetches {_PONG} from pod on {server_node} {across}",
        f"{phase}: {' '.join(log.split())[:100] or '(no output)'}",
        f"pod {client} on {client_node}: wget -qO- {url} (server {server} on {server_node})",
    )


@implements("1.4.4")
def coredns_running(context: Context) -> Outcome:
    """CoreDNS pods (k8s-app=kube-dns) run and are Ready."""
    pods = cluster_for(context).list("Pod", "kube-system", labels={"k8s-app": "kube-dns"})
    shown = [
        f"{p['metadata']['name']} {p['status'].get('phase')}"
        + ("" if pod_ready(p) else f" not ready ({failing_containers(p)})")
        for p in pods
    ]
    return Outcome.judge(
        bool(pods) and all(pod_ready(p) for p in pods),
        "CoreDNS pods Running and Ready",
        "; ".join(shown) or "no pod labelled k8s-app=kube-dns in kube-system",
        "GET /api/v1/namespaces/kube-system/pods?labelSelector=k8s-app=kube-dns",
    )


@implements("1.4.5")
def dns_resolves(context: Context) -> Outcome:
    """A pod resolves kubernetes.default.svc.cluster.local."""
    try:
        phase, log, name = _run_probe(context, "dns", ["nslookup", _DNS_NAME])
    except WaitTimeout as exc:
        return Outcome.judge(False, f"{_DNS_NAME} resolves", _waited(exc), str(exc))
    answered = _DNS_NAME in log and log.rstrip().splitlines()[-1].startswith("Address")
    return Outcome.judge(
        phase == "Succeeded" and answered,
        f"{_DNS_NAME} resolves to an address",
        f"{phase}: {' '.join(log.split())[-120:] or '(no output)'}",
        f"pod {name}: nslookup {_DNS_NAME}",
    )


@implements("1.4.6")
def traefik_absent(context: Context) -> Outcome:
    """No Traefik: no workload, pod or Service of that name in kube-system."""
    cluster = cluster_for(context)
    found = [
        f"{kind} {item['metadata']['name']}"
        for kind in ("Deployment", "Service", "Pod")
        for item in cluster.list(kind, "kube-system")
        if "traefik" in item["metadata"]["name"]
        or (item["metadata"].get("labels") or {}).get("app.kubernetes.io/name") == "traefik"
    ]
    disabled = "traefik" in context.lab.k3s.disable
    return Outcome.judge(
        not found,
        "no Traefik in kube-system",
        (f"found: {', '.join(found)}" if found else "none found")
        + f"; params k3s.disable {'includes' if disabled else 'lacks'} traefik",
        "GET deployments, services, pods in kube-system",
    )


# -- 1.5 ArgoCD -----------------------------------------------------------------------------


@implements("1.5.1")
def argocd_pods(context: Context) -> Outcome:
    """Every pod in ArgoCD's namespace is Running and Ready."""
    namespace = context.lab.argocd.namespace
    pods = cluster_for(context).list("Pod", namespace)
    bad = [
        f"{p['metadata']['name']} {p['status'].get('phase')}: "
        + "; ".join(f"{c} {why}" for c, why in failing_containers(p))
        for p in pods
        if not pod_ready(p)
    ]
    return Outcome.judge(
        bool(pods) and not bad,
        f"every pod in {namespace} Running and Ready",
        "; ".join(bad) if bad else f"{len(pods)} pods Running and Ready",
        f"GET /api/v1/namespaces/{namespace}/pods",
    )


@implements("1.5.2")
def argocd_core_ready(context: Context) -> list[Outcome]:
    """argocd-server, argocd-repo-server and argocd-application-controller have rolled out."""
    cluster = cluster_for(context)
    namespace = context.lab.argocd.namespace
    outcomes = []
    for kind, name in _ARGOCD_CORE:
        done, seen = rollout_status(cluster.get(kind, name, namespace))
        outcomes.append(
            Outcome.judge(done, "all replicas ready", seen, f"GET {kind} {namespace}/{name}", name)
        )
    return outcomes


def _session(context: Context) -> tuple[int, str] | str:
    """POST /api/v1/session as admin through the service proxy; a string says why not."""
    from labkit.gitops import ADMIN_SECRET  # noqa: PLC0415 - gitops imports checks' helpers

    cluster = cluster_for(context)
    namespace = context.lab.argocd.namespace
    if not cluster.exists("Secret", ADMIN_SECRET, namespace):
        return f"{ADMIN_SECRET} is deleted (the admin password was changed); log in by hand"
    password = cluster.secret_value(namespace, ADMIN_SECRET, "password")
    return cluster.proxy(
        namespace,
        "https:argocd-server",
        443,
        "/api/v1/session",
        method="POST",
        json_body={"username": "admin", "password": password.reveal()},
    )


@implements("1.5.3")
def argocd_ui(context: Context) -> Outcome:
    """argocd-server is a NodePort on params' port, and its UI answers (API service proxy)."""
    cluster = cluster_for(context)
    settings = context.lab.argocd
    service = cluster.get("Service", "argocd-server", settings.namespace)
    if service is None:
        return Outcome.judge(False, "Service argocd-server", "absent")
    spec = service.get("spec") or {}
    ports = {p.get("name"): p.get("nodePort") for p in spec.get("ports") or []}
    wanted = settings.node_port
    exposed = spec.get("type") == "NodePort" and (wanted is None or wanted in ports.values())
    try:
        status, body = cluster.proxy(settings.namespace, "https:argocd-server", 443, "/healthz")
    except LabkitError as exc:
        status, body = 0, str(exc)
    return Outcome.judge(
        exposed and status == 200,
        f"NodePort {wanted or '(any)'}; GET /healthz 200",
        f"type {spec.get('type')}, nodePorts {ports}; /healthz: HTTP {status} "
        f"{' '.join(body.split())[:60]}",
        f"GET Service {settings.namespace}/argocd-server; "
        f"GET .../services/https:argocd-server:443/proxy/healthz",
    )


@implements("1.5.5")
def argocd_login(context: Context) -> Outcome:
    """The admin login the CLI makes (POST /api/v1/session) returns a token."""
    answer = _session(context)
    if isinstance(answer, str):
        return Outcome.skip(answer)
    status, body = answer
    try:
        token = json.loads(body).get("token", "") if status == 200 else ""
    except ValueError:
        token = ""
    return Outcome.judge(
        status == 200 and bool(token),
        "HTTP 200 with a session token",
        f"HTTP {status}" + (", token received" if token else f": {body[:80]}"),
        "POST .../services/https:argocd-server:443/proxy/api/v1/session (admin, password masked)",
    )


@implements("1.5.6")
def repository_connected(context: Context) -> Outcome:
    """ArgoCD has the repository secret and the root app fetched a revision from it."""
    from labkit.gitops import REPO_SECRET  # noqa: PLC0415

    cluster = cluster_for(context)
    settings = context.lab.argocd
    secret = cluster.get("Secret", REPO_SECRET, settings.namespace)
    root = cluster.get("Application", "root", settings.namespace)
    problems = []
    if secret is None:
        problems.append(f"no Secret {settings.namespace}/{REPO_SECRET}")
    if root is None:
        problems.append("no root Application")
    status = (root or {}).get("status") or {}
    revision = (status.get("sync") or {}).get("revision", "")
    errors = [
        f"{c.get('type')}: {c.get('message')}"
        for c in status.get("conditions") or []
        if "Error" in str(c.get("type"))
    ]
    if root is not None and not revision:
        problems.append("root app has no synced revision")
    problems += errors
    return Outcome.judge(
        not problems,
        f"{settings.repo_url} connected (root app at a revision)",
        "; ".join(problems) or f"root app at {revision[:12]}",
        f"GET Secret {REPO_SECRET}; GET Application root",
    )
