"""Istio for the double: the mesh's objects, a pod network that obeys them, a gateway stand-in.

``mesh_lab(store)`` is ``healthy_lab`` plus phase 4: istiod and two ingress gateway
pods in istio-system, the Shlink, Redis and PostgreSQL namespaces labelled for
injection with pods carrying ``istio-proxy``, and the lab's own Istio objects read
from ``manifests/istio/*.yaml`` (the files ArgoCD would sync), scaled down for tests
by ``scale_for_tests`` (a 40/s bucket, a 1s route timeout).

``MeshKubelet`` (a store hook) runs the pods labkit creates: it injects the sidecar
where the namespace asks for it, marks them Ready and registers an exec handler.
Exec handlers (``pod_network``) answer ``wget`` and ``nc`` the way the mesh would,
decided at exec time from the store: a plaintext client against a namespace under
STRICT PeerAuthentication is reset; a meshed client whose principal no ALLOW rule of
the target namespace's AuthorizationPolicies names (ports included) gets the
connection closed without a reply. Selectors of policies are not evaluated (every
policy of the namespace applies to every workload there).

``GatewayStandIn`` is an HTTP server playing the ingress gateway's Envoy from the
store's objects, read per request: the local rate limit EnvoyFilter (a token bucket
per Ready gateway pod, requests spread round-robin), the VirtualServices bound to
the Gateway (exact host before ``*``; match on method and exact headers;
``directResponse``; ``fault`` delay and abort by percentage; ``rewrite.authority``;
``timeout``; ``retries`` with ``perTryTimeout`` and retryOn ``gateway-error``,
``5xx``, ``reset``, ``connect-failure``; no ``retries`` means Istio's default of 2
retries on connect failures and 503). Destinations are the Shlink stand-in
(``ShlinkStandIn``: /rest/health and the short-URL list behind the API key) or the
gateway itself. Not modelled: TLS, DestinationRules (load balancing, outlier
detection, connection pools), HTTP AuthorizationPolicies, header manipulation,
weighted routes, per-connection (rather than per-request) spreading over pods.
"""

from __future__ import annotations

import copy
import json
import random
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.kubeapi import fixtures
from tests.kubeapi.store import Store

ISTIO_NS = "istio-system"
MESH_NAMESPACES = ("shlink", "redis", "postgres")
MANIFESTS = Path(__file__).resolve().parents[2] / "manifests" / "istio"
ISTIO_CRDS = (
    ("networking.istio.io", "Gateway", "gateways", "v1"),
    ("networking.istio.io", "VirtualService", "virtualservices", "v1"),
    ("networking.istio.io", "DestinationRule", "destinationrules", "v1"),
    ("networking.istio.io", "EnvoyFilter", "envoyfilters", "v1alpha3"),
    ("security.istio.io", "PeerAuthentication", "peerauthentications", "v1"),
    ("security.istio.io", "AuthorizationPolicy", "authorizationpolicies", "v1"),
)
API_KEY = "api-key-for-tests-123"  # what tests/kubeapi/fixtures.lab_params writes
PROXY_IMAGE = "docker.io/istio/proxyv2:1.24.2"
SHLINK_PODS = ("shlink-6f7d8c9b5-a1b2c", "shlink-6f7d8c9b5-d3e4f")
GATEWAY_PODS = ("istio-ingressgateway-7b9c6d5f4-g1h2j", "istio-ingressgateway-7b9c6d5f4-k3l4m")
ISTIOD_POD = "istiod-5f6d7c8b9-x7y8z"


def _key(group: str, plural: str, namespace: str, name: str) -> tuple[str, str, str, str]:
    return (group, plural, namespace, name)


def meshed_pod(
    name: str, namespace: str, image: str, labels: dict[str, str], account: str
) -> dict[str, Any]:
    """A Running, Ready pod with its app container and an injected istio-proxy."""
    data = fixtures.pod(name, namespace, image, labels)
    data["spec"]["serviceAccountName"] = account
    data["spec"]["containers"].append({"name": "istio-proxy", "image": PROXY_IMAGE})
    data["status"]["containerStatuses"].append(
        fixtures.container_status("istio-proxy", PROXY_IMAGE)
    )
    return data


def _service(
    name: str, namespace: str, selector: dict[str, str], port: int, target: int
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(selector)},
        "spec": {
            "selector": dict(selector),
            "ports": [{"name": "http", "port": port, "targetPort": target, "protocol": "TCP"}],
        },
    }


def istio_objects() -> list[dict[str, Any]]:
    """The lab's Istio objects, as manifests/istio holds them."""
    documents = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        documents += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    return documents


def mesh_lab(store: Store) -> None:
    """``healthy_lab`` plus Istio installed and the lab's mesh objects applied (phase 4 done)."""
    fixtures.healthy_lab(store)
    for group, kind, plural, version in ISTIO_CRDS:
        store.put(fixtures.crd(group, kind, plural, version))
    store.put(fixtures.namespace(ISTIO_NS))
    for name in MESH_NAMESPACES:
        data = fixtures.namespace(name)
        data["metadata"].setdefault("labels", {})["istio-injection"] = "enabled"
        store.put(data)
    istiod = {"app": "istiod", "istio": "pilot"}
    store.put(fixtures.workload("Deployment", "istiod", ISTIO_NS, istiod))
    store.put(fixtures.pod(ISTIOD_POD, ISTIO_NS, "docker.io/istio/pilot:1.24.2", istiod))
    gateway = {"app": "istio-ingressgateway", "istio": "ingressgateway"}
    store.put(fixtures.workload("Deployment", "istio-ingressgateway", ISTIO_NS, gateway))
    for index, name in enumerate(GATEWAY_PODS):
        data = fixtures.pod(name, ISTIO_NS, PROXY_IMAGE, gateway, ip=f"10.42.{index}.40")
        data["spec"]["containers"][0]["name"] = "istio-proxy"
        data["status"]["containerStatuses"][0]["name"] = "istio-proxy"
        store.put(data)
    store.put(_service("istio-ingressgateway", ISTIO_NS, gateway, 80, 8080))
    shlink = {"app.kubernetes.io/name": "shlink"}
    store.put(fixtures.workload("Deployment", "shlink", "shlink", shlink))
    for name in SHLINK_PODS:
        store.put(meshed_pod(name, "shlink", "shlinkio/shlink:4.4.6", shlink, "shlink"))
        store.exec_handlers[("shlink", name)] = pod_network(store, "shlink", "shlink", True)
    store.put(_service("shlink", "shlink", shlink, 8080, 8080))
    redis = {"app.kubernetes.io/name": "redis"}
    for index in range(3):
        store.put(meshed_pod(f"redis-{index}", "redis", "redis:7.4.2", redis, "redis"))
    pg = {"postgres-operator.crunchydata.com/cluster": "shlink-db"}
    store.put(
        meshed_pod(
            "shlink-db-instance1-abcd-0",
            "postgres",
            "crunchy-postgres:17",
            pg,
            "shlink-db-instance",
        )
    )
    for document in istio_objects():
        store.put(document)
    scale_for_tests(store)


def scale_for_tests(
    store: Store, tokens: int = 40, timeout: str = "1s", per_try: str = "300ms"
) -> None:
    """A bucket a test can overflow in seconds, and route timeouts a test can wait for."""
    with store.lock:
        limit = store.objects[
            _key("networking.istio.io", "envoyfilters", ISTIO_NS, "ingress-local-ratelimit")
        ]
        bucket = limit["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["value"]
        bucket["token_bucket"].update({"max_tokens": tokens, "tokens_per_fill": tokens})
        service = store.objects[_key("networking.istio.io", "virtualservices", "shlink", "shlink")]
        for route in service["spec"]["http"]:
            route["timeout"] = timeout
            route["retries"]["perTryTimeout"] = per_try


# -- breakages (one thing each, the way it shows on a real cluster) ------------------------------


def _obj(store: Store, group: str, plural: str, namespace: str, name: str) -> dict[str, Any]:
    return store.objects[_key(group, plural, namespace, name)]


def istiod_not_ready(store: Store) -> None:
    """istiod crash-looping: Deployment unavailable, its pod not Ready."""
    store.put(fixtures.workload("Deployment", "istiod", ISTIO_NS, {"app": "istiod"}, ready=0))
    store.put(
        fixtures.pod(
            ISTIOD_POD, ISTIO_NS, "docker.io/istio/pilot:1.24.2", {"app": "istiod"}, ready=False
        )
    )


def gateway_pods_down(store: Store) -> None:
    """Every ingress gateway pod crash-looping."""
    for name in GATEWAY_PODS:
        data = _obj(store, "", "pods", ISTIO_NS, name)
        data["status"]["conditions"][0]["status"] = "False"
        data["status"]["containerStatuses"][0] = fixtures.container_status(
            "istio-proxy", PROXY_IMAGE, False
        )


def injection_label_removed(store: Store, namespace: str) -> None:
    """A mesh namespace without its istio-injection label."""
    _obj(store, "", "namespaces", "", namespace)["metadata"]["labels"].pop("istio-injection")


def proxy_missing(store: Store, namespace: str, pod: str) -> None:
    """A pod started before injection was on: its app container only."""
    data = _obj(store, "", "pods", namespace, pod)
    data["spec"]["containers"] = [
        c for c in data["spec"]["containers"] if c["name"] != "istio-proxy"
    ]
    data["status"]["containerStatuses"] = [
        s for s in data["status"]["containerStatuses"] if s["name"] != "istio-proxy"
    ]


def remove(store: Store, group: str, plural: str, namespace: str, name: str) -> None:
    """Delete one object (a policy ArgoCD never synced)."""
    del store.objects[_key(group, plural, namespace, name)]


def no_rate_limit(store: Store) -> None:
    """The gateway without its local rate limit EnvoyFilter."""
    remove(store, "networking.istio.io", "envoyfilters", ISTIO_NS, "ingress-local-ratelimit")


def read_route(store: Store, **changes: Any) -> None:
    """Change the reads route of VirtualService shlink/shlink (``timeout=None`` removes it)."""
    route = _obj(store, "networking.istio.io", "virtualservices", "shlink", "shlink")["spec"][
        "http"
    ][0]
    for key, value in changes.items():
        if value is None:
            route.pop(key, None)
        else:
            route[key] = value


def mtls_permissive(store: Store) -> None:
    """The mesh-wide PeerAuthentication left PERMISSIVE."""
    _obj(store, "security.istio.io", "peerauthentications", ISTIO_NS, "default")["spec"]["mtls"][
        "mode"
    ] = "PERMISSIVE"


# -- the pod network ---------------------------------------------------------------------------


def _mtls_mode(store: Store, namespace: str) -> str:
    with store.lock:
        own = store.objects.get(
            _key("security.istio.io", "peerauthentications", namespace, "default")
        )
        root = store.objects.get(
            _key("security.istio.io", "peerauthentications", ISTIO_NS, "default")
        )
    for policy in (own, root):
        mode = (((policy or {}).get("spec") or {}).get("mtls") or {}).get("mode")
        if mode:
            return str(mode)
    return "PERMISSIVE"  # Istio's default


def _authorized(store: Store, namespace: str, principal: str, port: int) -> bool:
    with store.lock:
        policies = [
            copy.deepcopy(o)
            for k, o in store.objects.items()
            if k[:3] == ("security.istio.io", "authorizationpolicies", namespace)
        ]
    allow = [p for p in policies if (p.get("spec") or {}).get("action", "ALLOW") == "ALLOW"]
    if not allow:
        return True
    for policy in allow:
        for rule in policy["spec"].get("rules") or []:
            sources = [s.get("source") or {} for s in rule.get("from") or []]
            operations = [o.get("operation") or {} for o in rule.get("to") or []]
            who = not sources or any(principal in s.get("principals", []) for s in sources)
            where = not operations or any(str(port) in o.get("ports", []) for o in operations)
            if who and where:
                return True
    return False


def pod_network(store: Store, namespace: str, account: str, meshed: bool) -> Any:
    """An exec handler: busybox ``wget`` and ``nc`` to mesh services, as the mesh decides."""
    principal = f"cluster.local/ns/{namespace}/sa/{account}"

    def run(argv: list[str], container: str) -> tuple[int, str, str]:
        command = " ".join(argv)
        target = re.search(
            r"(?:http://)?([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local[: ](\d+)", command
        )
        if target is None:
            return 127, "", f"sh: {argv[:1]}: not understood by the double\n"
        service, server_ns, port = target.group(1), target.group(2), int(target.group(3))
        if not meshed and _mtls_mode(store, server_ns) == "STRICT":
            if "wget" in command:
                return 1, "", "wget: error getting response: Connection reset by peer\n"
            return 1, "", ""
        if meshed and not _authorized(store, server_ns, principal, port):
            return 1, "", ""  # Envoy's RBAC network filter closes the connection, no reply
        if "wget" in command:
            return 0, json.dumps({"status": "pass", "version": "4.4.6"}), ""
        if port in {6379, 26379}:
            return 0, "+PONG\r\n", ""
        if port == 5432:
            return 0, "N", ""
        return 1, "", f"nc: {service}: no such service in the double\n"

    return run


@dataclass
class MeshKubelet:
    """Runs pods labkit creates: injects the sidecar where asked, marks them Ready, wires exec."""

    def __call__(self, store: Store, verb: str, data: dict[str, Any]) -> None:
        if verb not in {"create", "apply"} or data.get("kind") != "Pod":
            return
        metadata = data["metadata"]
        key = _key("", "pods", metadata["namespace"], metadata["name"])
        stored = store.objects.get(key)
        if stored is None or (stored.get("status") or {}).get("phase"):
            return
        namespace = store.objects.get(_key("", "namespaces", "", metadata["namespace"])) or {}
        wanted = (namespace.get("metadata") or {}).get("labels", {}).get(
            "istio-injection"
        ) == "enabled"
        opted_out = "false" in {
            (metadata.get("labels") or {}).get("sidecar.istio.io/inject"),
            (metadata.get("annotations") or {}).get("sidecar.istio.io/inject"),
        }
        meshed = wanted and not opted_out
        if meshed:
            stored["spec"]["containers"].append({"name": "istio-proxy", "image": PROXY_IMAGE})
        stored["status"] = {
            "phase": "Running",
            "podIP": "10.42.0.77",
            "startTime": fixtures.TIME,
            "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "PodScheduled", "status": "True"},
            ],
            "containerStatuses": [
                fixtures.container_status(c["name"], c.get("image", ""))
                for c in stored["spec"]["containers"]
            ],
        }
        account = stored["spec"].get("serviceAccountName", "default")
        store.exec_handlers[(metadata["namespace"], metadata["name"])] = pod_network(
            store, metadata["namespace"], account, meshed
        )


# -- HTTP stand-ins ------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a client that hung up (a per-try timeout, the load engine closing) is normal


@contextmanager
def _serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[tuple[str, int]]:
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK stalls

    def log_message(self, format: str, *args: Any) -> None:
        return

    def reply(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
        data = body.encode()
        self.send_response_only(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def shlink_stand_in(api_key: str = API_KEY) -> Iterator[tuple[str, int]]:
    """Shlink's health endpoint and its short-URL list (X-Api-Key required)."""

    class Handler(_Handler):
        def do_GET(self) -> None:
            if self.path.startswith("/rest/health"):
                self.reply(200, json.dumps({"status": "pass", "version": "4.4.6"}))
            elif self.path.startswith("/rest/v3/short-urls"):
                if self.headers.get("X-Api-Key") != api_key:
                    self.reply(401, json.dumps({"type": "INVALID_API_KEY", "status": 401}))
                else:
                    self.reply(200, json.dumps({"shortUrls": {"data": [], "pagination": {}}}))
            else:
                self.reply(404, json.dumps({"status": 404, "title": "Short URL not found"}))

    with _serving(Handler) as address:
        yield address


@dataclass
class _Bucket:
    tokens: float
    filled: float


@dataclass
class GatewayStandIn:
    """The ingress gateway's Envoy, as the store's EnvoyFilter and VirtualServices configure it."""

    store: Store
    shlink: tuple[str, int]
    address: tuple[str, int] = ("127.0.0.1", 0)
    buckets: dict[str, _Bucket] = field(default_factory=dict)
    turn: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    seen: list[tuple[str, str, int]] = field(default_factory=list)  # (host, path, status)
    client: httpx.Client = field(default_factory=lambda: httpx.Client(trust_env=False))

    # -- configuration, read from the store per request ------------------------------------

    def _objects(self, group: str, plural: str) -> list[dict[str, Any]]:
        with self.store.lock:
            return [
                copy.deepcopy(o) for k, o in self.store.objects.items() if k[:2] == (group, plural)
            ]

    def _limit(self) -> dict[str, Any] | None:
        for found in self._objects("networking.istio.io", "envoyfilters"):
            if found["metadata"].get("namespace") != ISTIO_NS:
                continue
            for patch in found["spec"].get("configPatches") or []:
                value = (patch.get("patch") or {}).get("value") or {}
                if value.get("name") == "envoy.filters.http.local_ratelimit":
                    bucket: dict[str, Any] = value["typed_config"]["value"]["token_bucket"]
                    return bucket
        return None

    def _admit(self) -> bool:
        bucket = self._limit()
        if bucket is None:
            return True
        interval = _seconds(bucket.get("fill_interval", "1s"))
        pods = [
            o["metadata"]["name"]
            for o in self._objects("", "pods")
            if o["metadata"].get("labels", {}).get("istio") == "ingressgateway"
            and any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in o.get("status", {}).get("conditions", [])
            )
        ] or ["none"]
        now = time.monotonic()
        with self.lock:
            self.turn += 1
            pod = pods[self.turn % len(pods)]
            state = self.buckets.setdefault(pod, _Bucket(float(bucket["max_tokens"]), now))
            fills = int((now - state.filled) / interval)
            if fills:
                state.tokens = min(
                    float(bucket["max_tokens"]), state.tokens + fills * bucket["tokens_per_fill"]
                )
                state.filled += fills * interval
            if state.tokens >= 1:
                state.tokens -= 1
                return True
            return False

    def _virtual_service(self, host: str) -> dict[str, Any] | None:
        gateways = {
            (g["metadata"]["namespace"], g["metadata"]["name"])
            for g in self._objects("networking.istio.io", "gateways")
            if (g["spec"].get("selector") or {}).get("istio") == "ingressgateway"
        }
        bound = []
        for service in self._objects("networking.istio.io", "virtualservices"):
            namespace = service["metadata"]["namespace"]
            refs = {
                r if "/" in r else f"{namespace}/{r}" for r in service["spec"].get("gateways") or []
            }
            if any(f"{ns}/{name}" in refs for ns, name in gateways):
                bound.append(service)
        exact = [s for s in bound if host in s["spec"].get("hosts", [])]
        wildcard = [s for s in bound if "*" in s["spec"].get("hosts", [])]
        chosen = (exact or wildcard or [None])[0]
        return chosen

    @staticmethod
    def _matches(route: dict[str, Any], method: str, headers: Any) -> bool:
        for match in route.get("match") or [{}]:
            if "method" in match and match["method"].get("exact") != method:
                continue
            wanted = match.get("headers") or {}
            if all(headers.get(name) == rule.get("exact") for name, rule in wanted.items()):
                return True
        return False

    # -- forwarding ---------------------------------------------------------------------

    def _upstream(self, host: str) -> tuple[str, int]:
        if host.startswith("istio-ingressgateway."):
            return self.address
        return self.shlink

    def forward(self, route: dict[str, Any], path: str, headers: dict[str, str]) -> tuple[int, str]:
        destination = route["route"][0]["destination"]
        address = self._upstream(destination["host"])
        authority = (route.get("rewrite") or {}).get("authority") or headers.get("host", "")
        sent = {k: v for k, v in headers.items() if k.lower() not in {"host", "content-length"}}
        sent["Host"] = authority
        retries = route.get("retries")
        if retries is None:  # Istio's default retry policy
            retries = {
                "attempts": 2,
                "retryOn": "connect-failure,refused-stream,retriable-status-codes",
            }
        attempts = 1 + int(retries.get("attempts", 0))
        retry_on = set(str(retries.get("retryOn", "")).split(","))
        overall = _seconds(route["timeout"]) if route.get("timeout") else None
        per_try = _seconds(retries["perTryTimeout"]) if retries.get("perTryTimeout") else None
        deadline = time.monotonic() + overall if overall else None
        status, body = 503, "no healthy upstream"
        for attempt in range(attempts):
            if attempt:
                time.sleep(0.025)  # Envoy's base retry back-off
            left = deadline - time.monotonic() if deadline else None
            if left is not None and left <= 0:
                return 504, "upstream request timeout"
            limit = min(x for x in (left, per_try, 60.0) if x is not None)
            try:
                response = self.client.get(
                    f"http://{address[0]}:{address[1]}{path}", headers=sent, timeout=limit
                )
                status, body = response.status_code, response.text
                retriable = (
                    (status in {502, 503, 504} and "gateway-error" in retry_on)
                    or (status >= 500 and "5xx" in retry_on)
                    or (status == 503 and "retriable-status-codes" in retry_on)
                )
            except httpx.TimeoutException:
                if deadline and time.monotonic() >= deadline - 0.001:
                    return 504, "upstream request timeout"
                status, body = 504, "upstream request timeout"
                retriable = bool({"gateway-error", "5xx", "reset"} & retry_on)
            except httpx.TransportError:
                status, body = 503, "upstream connect error or disconnect/reset before headers"
                retriable = bool({"connect-failure", "5xx", "gateway-error"} & retry_on)
            if not retriable:
                return status, body
        return status, body

    def handle(
        self, method: str, path: str, headers: dict[str, str]
    ) -> tuple[int, str, dict[str, str]]:
        """What the gateway answers (status, body, extra headers)."""
        if not self._admit():
            return 429, "local_rate_limited", {"x-local-rate-limit": "true"}
        host = headers.get("host", "").split(":")[0]
        service = self._virtual_service(host)
        if service is None:
            return 404, "", {}
        route = next(
            (r for r in service["spec"].get("http") or [] if self._matches(r, method, headers)),
            None,
        )
        if route is None:
            return 404, "", {}
        if "directResponse" in route:
            return int(route["directResponse"]["status"]), "", {}
        fault = route.get("fault") or {}
        delay = fault.get("delay")
        if delay and random.uniform(0, 100) < float(
            (delay.get("percentage") or {}).get("value", 100)
        ):
            time.sleep(_seconds(delay["fixedDelay"]))
        abort = fault.get("abort")
        if abort and random.uniform(0, 100) < float(
            (abort.get("percentage") or {}).get("value", 100)
        ):
            return int(abort["httpStatus"]), "fault filter abort", {}
        status, body = self.forward(route, path, headers)
        return status, body, {}

    @contextmanager
    def serving(self) -> Iterator[tuple[str, int]]:
        """Listen on loopback; yields the address."""
        gateway = self

        class Handler(_Handler):
            def do_GET(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, body, extra = gateway.handle("GET", self.path, headers)
                with gateway.lock:
                    gateway.seen.append((headers.get("host", ""), self.path, status))
                self.reply(status, body, {"server": "istio-envoy", **extra})

        with _serving(Handler) as address:
            self.address = address
            yield address


def _seconds(value: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(ms|s)", str(value))
    if not match:
        raise ValueError(f"duration {value!r}")
    return float(match.group(1)) * (0.001 if match.group(2) == "ms" else 1.0)


@contextmanager
def mesh_running(api: Any) -> Iterator[GatewayStandIn]:
    """Shlink and the gateway stand-ins listening, wired into the double's proxy/port-forward."""
    with shlink_stand_in() as shlink:
        gateway = GatewayStandIn(api.store, shlink)
        with gateway.serving() as address, _istiod_ready() as ready:
            for name in GATEWAY_PODS:
                api.wire.backends[(ISTIO_NS, name, "8080")] = address
            for name in SHLINK_PODS:
                api.wire.backends[("shlink", name, "8080")] = shlink
            api.wire.backends[(ISTIO_NS, ISTIOD_POD, "8080")] = ready
            api.store.hooks.append(MeshKubelet())
            yield gateway


@contextmanager
def _istiod_ready() -> Iterator[tuple[str, int]]:
    class Handler(_Handler):
        def do_GET(self) -> None:
            self.reply(200 if self.path == "/ready" else 404, "")

    with _serving(Handler) as address:
        yield address
