"""Phase 4, the service mesh (4.1-4.3), and 6.2.5 (what Istio costs), on a cluster lab.

Objects are read through the lab's Cluster; behaviour is proven with requests:

- **The gateway** is reached at ``istio.gateway_url`` (its NodePort or LoadBalancer,
  allow-listed) or, when that is empty, through a port-forward to one gateway pod.
- **Rate limit (4.2.4)**: labkit's load engine sends 1.5x the limit (per gateway pod
  x the pods sharing that address) for a few seconds; 429s are counted and the rate
  let through is compared with what the token bucket admits.
- **Timeouts and retries (4.2.5, 4.2.6)**: labkit server-side applies a temporary
  two-hop probe (removed in a ``finally``): VirtualService *route* (a host of its own
  on the lab's Gateway) carries a copy of the live Shlink read route's timeout and
  retries and sends to the gateway again with a second host, whose VirtualService
  *fault* injects a delay or an abort in front of Shlink. Fault injection acts before
  the router of the hop it is on, so only a fault one hop further shows what the
  route's timeout and retries do. A DestinationRule lets the first hop talk plain HTTP
  to the gateway's own listener. A ``directResponse`` match tells when the probe is live.
- **STRICT mTLS (4.3.2)**: a short-lived pod outside the mesh (injection off) asks
  Shlink in plaintext; it must be refused. **Authorization (4.3.3)**: a short-lived
  pod inside the mesh with another identity (the shlink namespace's ``default``
  service account) speaks to the Redis Sentinel port; the lab's policies are TCP
  (principals and ports), so a denial is a connection closed without a Redis reply.
  Probe pods are named ``labkit-probe-...`` and deleted afterwards, whatever happened.
- **6.2.5**: the same scenario (GET /rest/health at a fixed rate) through a
  port-forward to the gateway and through a port-forward to the Shlink Service (the
  same transport both ways, so the difference is the gateway and sidecar hops).

On the sandbox every item skips (no Kubernetes API, no mesh).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from labkit.checks.base import Context, Outcome, cluster_for, implements
from labkit.cluster import Cluster, pod_ready, rollout_status
from labkit.cluster.secrets import resolve_secret
from labkit.errors import ConnectError, LabkitError, WaitTimeout
from labkit.params import Lab

__all__: list[str] = []  # checks register themselves

PROXY = "istio-proxy"
ISTIOD = "istiod"
GATEWAY = "shlink-gateway"  # manifests/istio/gateway.yaml, in the Shlink namespace
VIRTUAL_SERVICE = "shlink"  # manifests/istio/virtualservice.yaml
GATEWAY_LABELS = {"istio": "ingressgateway"}
LOCAL_RATE_LIMIT = "envoy.filters.http.local_ratelimit"
PROBE_IMAGE = "busybox:1.36"
PROBE_DOMAIN = "labkit.invalid"  # probe hosts: never resolvable, only matched by Host header
_HEALTH = "/rest/health"
_READY_HEADER = "x-labkit-probe-ready"
_RATE_FACTOR = 1.5  # send this many times what the bucket admits
_RATE_SECONDS = 3.0
_RETRY_REQUESTS = 40
_RETRY_ABORT_PERCENT = 50.0
_RETRY_MAX_FAILED = 0.25  # without retries about half fail; with 3 retries about 6%
_REFUSED = ("reset", "refused", "error getting response", "closed")  # busybox wget's words
_CONFIG_WAIT_S = 30.0  # istiod pushes a VirtualService to the gateway in about a second


def _wait_s(context: Context) -> float:
    return min(context.lab.cluster.wait_timeout_s, 180.0)


def _names(items: list[dict[str, Any]]) -> str:
    return ", ".join(str(i["metadata"]["name"]) for i in items) or "none"


def _pod_state(pod: dict[str, Any]) -> str:
    status = pod.get("status") or {}
    ready = "Ready" if pod_ready(pod) else "not Ready"
    return f"{pod['metadata']['name']} ({status.get('phase', '?')}, {ready})"


def seconds(value: Any) -> float | None:
    """Istio's duration strings (``5s``, ``250ms``, ``1.5s``, ``1m``) in seconds; None if unset."""
    if value in (None, ""):
        return None
    match = re.fullmatch(r"([0-9.]+)(ms|s|m|h)", str(value).strip())
    if not match:
        raise LabkitError(f"duration {value!r} is not Istio's form (e.g. 5s, 250ms)")
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[match.group(2)]
    return float(match.group(1)) * scale


def _duration(value: float) -> str:
    return f"{round(value * 1000)}ms"


# -- the gateway, reached from this machine ---------------------------------------------------


@dataclass
class Gateway:
    """Where this machine reaches the ingress gateway, and how many pods answer there."""

    url: str
    via: str
    pods: int
    closer: ExitStack = field(default_factory=ExitStack)

    def close(self) -> None:
        """Close the port-forward, if one was opened."""
        self.closer.close()


def _gateway_pods(cluster: Cluster, lab: Lab) -> list[dict[str, Any]]:
    return cluster.list("Pod", lab.istio.namespace, labels=GATEWAY_LABELS)


def _open_gateway(context: Context) -> Gateway:
    lab = context.lab
    cluster = cluster_for(context)
    ready = [p for p in _gateway_pods(cluster, lab) if pod_ready(p)]
    if lab.istio.gateway_url:
        host = urlsplit(lab.istio.gateway_url).hostname or ""
        lab.require_allowed(host)
        url = lab.istio.gateway_url.rstrip("/")
        return Gateway(url, f"istio.gateway_url {url}", max(len(ready), 1))
    gateway = Gateway("", "", 1)
    try:
        host, port = gateway.closer.enter_context(
            cluster.open_service(lab.istio.namespace, lab.istio.gateway_service, 80)
        )
    except LabkitError:
        gateway.close()
        raise
    gateway.url = f"http://{host}:{port}"
    gateway.via = (
        f"a port-forward to one pod of Service {lab.istio.namespace}/"
        f"{lab.istio.gateway_service}:80 (set istio.gateway_url for the external address)"
    )
    return gateway


def gateway_for(context: Context) -> Gateway:
    """The lab's gateway for this check run: opened on first use, closed with the context."""
    opened: Gateway = context.resource(
        "mesh.gateway", lambda: _open_gateway(context), Gateway.close
    )
    return opened


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status, headers (lower-case names), body, seconds taken."""

    status: int
    headers: dict[str, str]
    body: str
    elapsed_s: float

    def line(self) -> str:
        """``200 in 0.012s: {"status":"pass"}`` (body cut short)."""
        text = re.sub(r"\s+", " ", self.body)[:160]
        return f"{self.status} in {self.elapsed_s:.3f}s: {text}"


def request(
    gateway: Gateway,
    path: str,
    *,
    host: str | None = None,
    headers: dict[str, str] | None = None,
    timeout_s: float = 10.0,
) -> Answer:
    """One GET through the gateway (``host`` sets the Host header); ConnectError if no answer."""
    sent = dict(headers or {})
    if host:
        sent["Host"] = host
    started = time.monotonic()
    try:
        # trust_env=False: an http_proxy from the environment must never carry lab traffic off.
        with httpx.Client(timeout=timeout_s, follow_redirects=False, trust_env=False) as client:
            response = client.get(gateway.url + path, headers=sent)
    except httpx.HTTPError as exc:
        raise ConnectError(
            f"GET {path} through the gateway ({gateway.via}): {type(exc).__name__}: {exc}; "
            f"is the ingress gateway running? (`kubectl get pods -n istio-system`)"
        ) from exc
    elapsed = time.monotonic() - started
    lowered = {k.lower(): v for k, v in response.headers.items()}
    return Answer(response.status_code, lowered, response.text, elapsed)


def _health(answer: Answer) -> bool:
    try:
        return answer.status == 200 and json.loads(answer.body).get("status") == "pass"
    except (ValueError, AttributeError):
        return False


# -- 4.1 installation ---------------------------------------------------------------------------


@implements("4.1.1")
def control_plane_running(context: Context) -> Outcome:
    """Every pod in the Istio namespace Running and Ready, istiod's among them."""
    namespace = context.lab.istio.namespace
    pods = cluster_for(context).list("Pod", namespace)
    live = [p for p in pods if (p.get("status") or {}).get("phase") not in {"Succeeded"}]
    bad = [p for p in live if not pod_ready(p)]
    istiod = [p for p in live if p["metadata"]["name"].startswith(ISTIOD)]
    return Outcome.judge(
        bool(istiod) and not bad,
        f"istiod and every pod in {namespace} Running and Ready",
        (
            f"not ready: {', '.join(_pod_state(p) for p in bad)}"
            if bad
            else f"no istiod pod in {namespace} (pods: {_names(live)})"
            if not istiod
            else f"{len(live)} pod(s) Ready: {_names(live)}"
        ),
        f"GET /api/v1/namespaces/{namespace}/pods",
    )


@implements("4.1.2")
def istiod_healthy(context: Context) -> Outcome:
    """Deployment istiod rolled out, and a Ready istiod pod answers its /ready endpoint."""
    cluster = cluster_for(context)
    namespace = context.lab.istio.namespace
    done, state = rollout_status(cluster.get("Deployment", ISTIOD, namespace))
    if not done:
        return Outcome.judge(
            False, f"Deployment {namespace}/{ISTIOD} rolled out", f"Deployment istiod: {state}"
        )
    pods = [p for p in cluster.list("Pod", namespace, labels={"app": ISTIOD}) if pod_ready(p)]
    if not pods:
        return Outcome.judge(False, "a Ready istiod pod", f"no Ready pod with app=istiod: {state}")
    name = str(pods[0]["metadata"]["name"])
    status, body = cluster.proxy(namespace, name, 8080, "/ready", kind="pods")
    return Outcome.judge(
        status == 200,
        "istiod's readiness endpoint :8080/ready answers 200",
        f"Deployment istiod: {state}; pod {name} /ready answered {status} {body.strip()[:120]}",
        f"GET pods/{namespace}/{name}:8080/proxy/ready",
    )


@implements("4.1.3")
def gateway_pods_running(context: Context) -> Outcome:
    """The ingress gateway's pods (istio=ingressgateway) Running and Ready."""
    namespace = context.lab.istio.namespace
    pods = _gateway_pods(cluster_for(context), context.lab)
    bad = [p for p in pods if not pod_ready(p)]
    return Outcome.judge(
        bool(pods) and not bad,
        f"ingress gateway pods (istio=ingressgateway) in {namespace}, all Ready",
        "; ".join(_pod_state(p) for p in pods)
        or f"no pod labelled istio=ingressgateway in {namespace}",
    )


def mesh_namespaces(lab: Lab) -> list[str]:
    """The namespaces whose workloads belong in the mesh (manifests label them for injection)."""
    return [lab.shlink.namespace, lab.redis.namespace, lab.postgres.namespace]


def _injection(namespace: dict[str, Any] | None) -> str:
    labels = ((namespace or {}).get("metadata") or {}).get("labels") or {}
    if labels.get("istio-injection") == "enabled":
        return "istio-injection=enabled"
    if labels.get("istio.io/rev") and labels.get("istio-injection") != "disabled":
        return f"istio.io/rev={labels['istio.io/rev']}"
    shown = {k: v for k, v in labels.items() if "istio" in k}
    return f"no injection label ({shown or 'no istio labels'})"


@implements("4.1.4")
def injection_enabled(context: Context) -> list[Outcome]:
    """Each mesh namespace carries istio-injection=enabled (or a revision label)."""
    cluster = cluster_for(context)
    outcomes = []
    for name in mesh_namespaces(context.lab):
        found = cluster.get("Namespace", name)
        seen = "absent" if found is None else _injection(found)
        outcomes.append(
            Outcome.judge(
                found is not None and not seen.startswith("no "),
                f"Namespace {name} labelled istio-injection=enabled",
                f"Namespace {name}: {seen}",
                subject=name,
            )
        )
    return outcomes


def _proxy_state(pod: dict[str, Any]) -> str:
    """ "" when the pod carries a ready istio-proxy; else what is wrong."""
    spec = pod.get("spec") or {}
    declared = [c.get("name") for c in spec.get("containers") or []]
    declared += [
        c.get("name")
        for c in spec.get("initContainers") or []
        if c.get("restartPolicy") == "Always"  # a native sidecar
    ]
    if PROXY not in declared:
        return (
            f"{pod['metadata']['name']}: no {PROXY} (containers: {', '.join(map(str, declared))})"
        )
    status = pod.get("status") or {}
    states = (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or [])
    proxy = next((s for s in states if s.get("name") == PROXY), None)
    if proxy is None or not proxy.get("ready"):
        return f"{pod['metadata']['name']}: {PROXY} not ready"
    return ""


@implements("4.1.5")
def pods_carry_proxy(context: Context) -> list[Outcome]:
    """Every running pod of each mesh namespace has a ready istio-proxy beside its app."""
    cluster = cluster_for(context)
    outcomes = []
    for name in mesh_namespaces(context.lab):
        pods = [
            p
            for p in cluster.list("Pod", name)
            if (p.get("status") or {}).get("phase") not in {"Succeeded", "Failed"}
        ]
        wrong = [state for p in pods if (state := _proxy_state(p))]
        outcomes.append(
            Outcome.judge(
                bool(pods) and not wrong,
                f"every pod in {name} has the app container(s) and a ready {PROXY}",
                "; ".join(wrong)
                if wrong
                else f"{len(pods)} pod(s) with {PROXY}: {_names(pods)}"
                if pods
                else f"no pods in {name}",
                subject=name,
            )
        )
    return outcomes


@implements("4.1.6")
def shlink_api_through_mesh(context: Context) -> Outcome:
    """Shlink's authenticated API answers through the gateway (the sidecars broke nothing)."""
    lab = context.lab
    key = resolve_secret(lab, lab.shlink.api_key, cluster_for(context))
    gateway = gateway_for(context)
    path = "/rest/v3/short-urls?itemsPerPage=1"
    answer = request(
        gateway, path, headers={"X-Api-Key": key.reveal(), "Accept": "application/json"}
    )
    try:
        listed = "shortUrls" in json.loads(answer.body)
    except (ValueError, TypeError):
        listed = False
    return Outcome.judge(
        answer.status == 200 and listed,
        "GET /rest/v3/short-urls with the API key: 200 and a shortUrls list",
        answer.line(),
        f"through {gateway.via}",
    )


# -- 4.2 traffic management ------------------------------------------------------------------


def _gateway_object(cluster: Cluster, lab: Lab) -> dict[str, Any] | None:
    return cluster.get("Gateway", GATEWAY, lab.shlink.namespace)


@implements("4.2.1")
def gateway_listener(context: Context) -> Outcome:
    """Gateway shlink-gateway exists, selects Ready gateway pods, and its listener answers."""
    lab = context.lab
    cluster = cluster_for(context)
    where = f"Gateway {lab.shlink.namespace}/{GATEWAY}"
    found = _gateway_object(cluster, lab)
    if found is None:
        return Outcome.judge(False, f"{where} exists", f"{where} absent")
    spec = found.get("spec") or {}
    servers = [
        f"{(s.get('port') or {}).get('protocol')}:{(s.get('port') or {}).get('number')}"
        for s in spec.get("servers") or []
    ]
    selector = spec.get("selector") or {}
    pods = [p for p in cluster.list("Pod", lab.istio.namespace, labels=selector) if pod_ready(p)]
    if not servers or not pods:
        return Outcome.judge(
            False,
            f"{where} with a server, selecting Ready gateway pods",
            f"servers: {servers or 'none'}; Ready pods matching {selector}: {_names(pods)}",
        )
    gateway = gateway_for(context)
    answer = request(gateway, _HEALTH)
    envoy = answer.headers.get("server", "") == "istio-envoy"
    return Outcome.judge(
        envoy,
        "the listener answers HTTP as Envoy (Server: istio-envoy)",
        f"{where} servers {servers}, pods {_names(pods)}; answer {answer.status}, "
        f"Server: {answer.headers.get('server', 'none')}",
        f"through {gateway.via}",
    )


def _destinations(route: dict[str, Any]) -> list[tuple[str, int | None]]:
    return [
        (
            str((r.get("destination") or {}).get("host", "")),
            ((r.get("destination") or {}).get("port") or {}).get("number"),
        )
        for r in route.get("route") or []
    ]


@implements("4.2.2")
def virtual_service_routes(context: Context) -> Outcome:
    """VirtualService shlink is bound to the Gateway and every route goes to the Shlink Service."""
    lab = context.lab
    cluster = cluster_for(context)
    namespace = lab.shlink.namespace
    where = f"VirtualService {namespace}/{VIRTUAL_SERVICE}"
    found = cluster.get("VirtualService", VIRTUAL_SERVICE, namespace)
    if found is None:
        return Outcome.judge(False, f"{where} exists", f"{where} absent")
    spec = found.get("spec") or {}
    bound = {GATEWAY, f"{namespace}/{GATEWAY}"} & set(spec.get("gateways") or [])
    service = cluster.get("Service", "shlink", namespace)
    ports = {p.get("port") for p in ((service or {}).get("spec") or {}).get("ports") or []}
    wanted = {f"shlink.{namespace}.svc.cluster.local", f"shlink.{namespace}", "shlink"}
    routes = spec.get("http") or []
    wrong = [
        f"route {r.get('name', i)} -> {host}:{port}"
        for i, r in enumerate(routes)
        for host, port in _destinations(r) or [("none", None)]
        if host not in wanted or (port is not None and port not in ports)
    ]
    shown = [f"{r.get('name', i)} -> {_destinations(r)}" for i, r in enumerate(routes)]
    return Outcome.judge(
        bool(bound) and bool(routes) and not wrong and service is not None,
        f"{where} bound to {GATEWAY}, every route to Service {namespace}/shlink "
        f"(ports {sorted(ports)})",
        f"gateways {spec.get('gateways')}; routes {shown}"
        + (f"; wrong: {wrong}" if wrong else "")
        + ("" if service else f"; Service {namespace}/shlink absent"),
    )


@implements("4.2.3")
def shlink_through_gateway(context: Context) -> Outcome:
    """GET /rest/health through the gateway: 200 and status pass."""
    gateway = gateway_for(context)
    answer = request(gateway, _HEALTH)
    return Outcome.judge(
        _health(answer),
        'GET /rest/health through the gateway: 200 {"status": "pass"}',
        answer.line(),
        f"through {gateway.via}",
    )


def rate_limit_filter(cluster: Cluster, lab: Lab) -> tuple[str, dict[str, Any] | None]:
    """(EnvoyFilter name, its local rate limit's token_bucket) in the Istio namespace."""
    for found in cluster.list("EnvoyFilter", lab.istio.namespace):
        for patch in (found.get("spec") or {}).get("configPatches") or []:
            value = (patch.get("patch") or {}).get("value") or {}
            if value.get("name") != LOCAL_RATE_LIMIT:
                continue
            typed = value.get("typed_config") or {}
            config = typed.get("value") or typed  # TypedStruct or the plain typed config
            return str(found["metadata"]["name"]), config.get("token_bucket")
    return "", None


@implements("4.2.4")
def rate_limit_enforced(context: Context) -> Outcome:
    """Above the limit the gateway answers 429 and lets through no more than its bucket admits."""
    from labkit.load import LOOPBACK, Fixed, Schedule, resolve_target, run_load  # noqa: PLC0415

    lab = context.lab
    cluster = cluster_for(context)
    name, bucket = rate_limit_filter(cluster, lab)
    configured = (
        f"EnvoyFilter {lab.istio.namespace}/{name} token_bucket {bucket}"
        if name
        else f"no EnvoyFilter with {LOCAL_RATE_LIMIT} in {lab.istio.namespace}"
    )
    limit = lab.istio.rate_limit.requests / lab.istio.rate_limit.per_seconds  # per pod, per s
    burst = float((bucket or {}).get("max_tokens") or lab.istio.rate_limit.requests)
    gateway = gateway_for(context)
    rate = _RATE_FACTOR * limit * gateway.pods
    allowed = gateway.pods * (burst + limit * _RATE_SECONDS)
    allow = [*lab.allow_list, *(LOOPBACK if not lab.istio.gateway_url else [])]
    target = resolve_target(gateway.url + _HEALTH, allow)
    workload = Fixed(host=target.host_header, path=_HEALTH)
    result = run_load(
        target,
        workload,
        Schedule.constant(rate, _RATE_SECONDS),
        name="rate-limit",
        processes=1 if rate <= 3000 else 2,
        connections=int(min(64, max(8, rate / 20))),
    )
    codes = result.recorder.status_codes()
    limited = codes.get(429, 0)
    passed = sum(count for status, count in codes.items() if status < 400)
    other = {str(s): c for s, c in sorted(codes.items()) if s >= 400 and s != 429}
    window = max(result.measured_wall_s, _RATE_SECONDS)
    observed = (
        f"sent {result.recorder.requests} at {rate:.0f}/s for {_RATE_SECONDS:g}s: "
        f"{limited} answered 429, {passed} let through ({passed / window:.0f}/s; the bucket "
        f"admits at most {allowed:.0f} = {gateway.pods} pod(s) x ({burst:.0f} + "
        f"{limit:.0f}/s x {_RATE_SECONDS:g}s))"
        + (f", other: {other}" if other else "")
        + (f"; no answer: {dict(result.recorder.errors())}" if result.recorder.errors() else "")
    )
    if result.generator_limited and limited == 0:
        observed += f"; the load generator could not keep {rate:.0f}/s ({result.generator_reason})"
        if not lab.istio.gateway_url:
            observed += "; a port-forward carries little: set istio.gateway_url (NodePort/LB)"
    return Outcome.judge(
        limited > 0 and passed <= allowed * 1.1,
        f"429s above {limit:.0f}/s per gateway pod (params istio.rate_limit), and no more let "
        "through than the token bucket admits",
        f"{configured}; {observed}",
        f"through {gateway.via}",
    )


# -- the two-hop fault probe (4.2.5, 4.2.6) -----------------------------------------------------


def read_route(cluster: Cluster, lab: Lab) -> dict[str, Any]:
    """The live Shlink VirtualService's route that GETs take (the reads route)."""
    where = f"VirtualService {lab.shlink.namespace}/{VIRTUAL_SERVICE}"
    found = cluster.require("VirtualService", VIRTUAL_SERVICE, lab.shlink.namespace)
    for route in (found.get("spec") or {}).get("http") or []:
        matches = route.get("match") or [{}]
        for match in matches:
            method = (match.get("method") or {}).get("exact")
            others = set(match) - {"method", "name"}
            if method in (None, "GET") and not others:
                return dict(route)
    raise LabkitError(f"{where} has no route a GET of /rest/health takes")


@dataclass(frozen=True)
class FaultProbe:
    """The temporary objects of one fault probe, and the Host header that reaches them."""

    tag: str
    host: str
    objects: list[dict[str, Any]]


def fault_probe(lab: Lab, route: dict[str, Any], fault: dict[str, Any], what: str) -> FaultProbe:
    """Two VirtualServices and a DestinationRule: ``route``'s timeout/retries, then ``fault``."""
    tag = f"labkit-probe-{what}-{uuid.uuid4().hex[:6]}"
    first, second = f"{tag}-route.{PROBE_DOMAIN}", f"{tag}-fault.{PROBE_DOMAIN}"
    namespace = lab.shlink.namespace
    gateway_host = f"{lab.istio.gateway_service}.{lab.istio.namespace}.svc.cluster.local"
    labels = {"app.kubernetes.io/managed-by": "labkit", "labkit.io/probe": "1"}
    hop: dict[str, Any] = {
        "name": "probe-route",
        "rewrite": {"authority": second},
        "route": [{"destination": {"host": gateway_host, "port": {"number": 80}}}],
    }
    for key in ("timeout", "retries"):
        if key in route:
            hop[key] = route[key]
    ready = {
        "name": "probe-ready",
        "match": [{"headers": {_READY_HEADER: {"exact": "1"}}}],
        "directResponse": {"status": 204},
    }
    shlink = [{"destination": d} for d in (r.get("destination") for r in route.get("route") or [])]
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": f"{tag}-route", "namespace": namespace, "labels": labels},
            "spec": {
                "hosts": [first],
                "gateways": [f"{namespace}/{GATEWAY}"],
                "http": [ready, hop],
            },
        },
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": f"{tag}-fault", "namespace": namespace, "labels": labels},
            "spec": {
                "hosts": [second],
                "gateways": [f"{namespace}/{GATEWAY}"],
                "http": [{"name": "probe-fault", "fault": fault, "route": shlink}],
            },
        },
        {
            # The first hop calls the gateway's own plain-HTTP listener: no mesh TLS to it.
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {
                "name": f"{tag}-plain",
                "namespace": lab.istio.namespace,
                "labels": labels,
            },
            "spec": {
                "host": gateway_host,
                "exportTo": ["."],
                "trafficPolicy": {"tls": {"mode": "DISABLE"}},
            },
        },
    ]
    return FaultProbe(tag, first, objects)


@contextmanager
def applied(cluster: Cluster, probe: FaultProbe, gateway: Gateway) -> Iterator[str]:
    """Apply the probe (server-side), wait until the gateway serves it, remove it afterwards."""
    try:
        for manifest in probe.objects:
            cluster.apply(manifest)
        deadline = time.monotonic() + _CONFIG_WAIT_S
        last = "no answer yet"
        while True:
            with suppress(ConnectError):
                answer = request(gateway, _HEALTH, host=probe.host, headers={_READY_HEADER: "1"})
                if answer.status == 204:
                    break
                last = answer.line()
            if time.monotonic() > deadline:
                raise WaitTimeout(
                    f"the gateway did not serve probe VirtualService {probe.tag}-route within "
                    f"{_CONFIG_WAIT_S:g}s (last answer: {last}); is istiod pushing config? "
                    "(`istioctl proxy-status`)"
                )
            time.sleep(0.5)
        yield probe.host
    finally:
        for manifest in reversed(probe.objects):
            with suppress(LabkitError):  # a failed clean-up must not hide the check's result
                meta = manifest["metadata"]
                cluster.delete(manifest["kind"], meta["name"], meta["namespace"])


def _probe_evidence(probe: FaultProbe, gateway: Gateway) -> str:
    names = ", ".join(
        f"{o['kind']} {o['metadata']['namespace']}/{o['metadata']['name']}" for o in probe.objects
    )
    return f"applied then removed: {names}; through {gateway.via}"


@implements("4.2.5")
def timeout_cuts_slow_backend(context: Context) -> Outcome:
    """A delay injected one hop behind the reads route is cut by its timeout (504 in time)."""
    lab = context.lab
    cluster = cluster_for(context)
    route = read_route(cluster, lab)
    timeout = seconds(route.get("timeout"))
    per_try = seconds((route.get("retries") or {}).get("perTryTimeout"))
    budget = timeout if timeout is not None else lab.istio.timeout_s
    delay = budget + 2.0
    fault = {"delay": {"fixedDelay": _duration(delay), "percentage": {"value": 100.0}}}
    probe = fault_probe(lab, route, fault, "timeout")
    gateway = gateway_for(context)
    with applied(cluster, probe, gateway) as host:
        answer = request(gateway, _HEALTH, host=host, timeout_s=delay + 10.0)
    expected_by = budget * 1.2 + 0.5
    return Outcome.judge(
        answer.status == 504 and answer.elapsed_s <= expected_by and answer.elapsed_s < delay,
        f"with the backend {delay:g}s slow, 504 within the route timeout "
        f"({route.get('timeout', 'none')}, per try {per_try if per_try is not None else 'none'}s)",
        f"route timeout {route.get('timeout', 'none')} (per try {per_try}); "
        f"injected {delay:g}s delay; answered {answer.line()}",
        _probe_evidence(probe, gateway),
    )


@implements("4.2.6")
def retries_hide_failures(context: Context) -> Outcome:
    """With half the backend's answers aborted (503), the reads route's retries hide most."""
    lab = context.lab
    cluster = cluster_for(context)
    route = read_route(cluster, lab)
    fault = {"abort": {"httpStatus": 503, "percentage": {"value": _RETRY_ABORT_PERCENT}}}
    probe = fault_probe(lab, route, fault, "retry")
    gateway = gateway_for(context)
    statuses: dict[int, int] = {}
    with applied(cluster, probe, gateway) as host:
        for _ in range(_RETRY_REQUESTS):
            answer = request(gateway, _HEALTH, host=host, timeout_s=30.0)
            statuses[answer.status] = statuses.get(answer.status, 0) + 1
    failed = sum(count for status, count in statuses.items() if status >= 500)
    retries = route.get("retries") or {}
    return Outcome.judge(
        failed <= _RETRY_MAX_FAILED * _RETRY_REQUESTS,
        f"with {_RETRY_ABORT_PERCENT:g}% of backend answers aborted (503), at most "
        f"{_RETRY_MAX_FAILED:.0%} of {_RETRY_REQUESTS} requests fail (about half would "
        "without retries)",
        f"retries {retries or 'none'}; {failed} of {_RETRY_REQUESTS} failed "
        f"({failed / _RETRY_REQUESTS:.0%}); statuses {dict(sorted(statuses.items()))}",
        _probe_evidence(probe, gateway),
    )


# -- 4.3 mTLS and authorization ------------------------------------------------------------------


@implements("4.3.1")
def mtls_strict(context: Context) -> Outcome:
    """The mesh-wide PeerAuthentication is STRICT and no policy in a mesh namespace weakens it."""
    lab = context.lab
    cluster = cluster_for(context)
    root = cluster.get("PeerAuthentication", "default", lab.istio.namespace)
    mode = (((root or {}).get("spec") or {}).get("mtls") or {}).get("mode", "absent")
    weaker = []
    exceptions = []
    for namespace in mesh_namespaces(lab):
        for policy in cluster.list("PeerAuthentication", namespace):
            spec = policy.get("spec") or {}
            name = f"{namespace}/{policy['metadata']['name']}"
            own = (spec.get("mtls") or {}).get("mode")
            if own in {"PERMISSIVE", "DISABLE"}:
                weaker.append(f"{name}: {own}")
            for port, setting in (spec.get("portLevelMtls") or {}).items():
                exceptions.append(f"{name} port {port}: {(setting or {}).get('mode')}")
    return Outcome.judge(
        mode == "STRICT" and not weaker,
        f"PeerAuthentication {lab.istio.namespace}/default STRICT (params istio.mtls "
        f"{lab.istio.mtls}), none weaker in {', '.join(mesh_namespaces(lab))}",
        f"{lab.istio.namespace}/default: {mode}"
        + (f"; weaker: {weaker}" if weaker else "")
        + (f"; port exceptions (metrics scrapes): {exceptions}" if exceptions else ""),
    )


def _probe_pod(name: str, namespace: str, mesh: bool) -> dict[str, Any]:
    annotations = {} if mesh else {"sidecar.istio.io/inject": "false"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"labkit.io/probe": "1", "sidecar.istio.io/inject": str(mesh).lower()},
            "annotations": annotations,
        },
        "spec": {
            "serviceAccountName": "default",
            "containers": [{"name": "probe", "image": PROBE_IMAGE, "command": ["sleep", "600"]}],
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
        },
    }


@contextmanager
def probe_pod(context: Context, namespace: str, mesh: bool, what: str) -> Iterator[str]:
    """A short-lived busybox pod, Ready (with its sidecar when ``mesh``); deleted afterwards."""
    cluster = cluster_for(context)
    name = f"labkit-probe-{what}-{uuid.uuid4().hex[:6]}"
    cluster.create(_probe_pod(name, namespace, mesh))
    try:
        cluster.wait_for("Pod", name, namespace, predicate=pod_ready, timeout_s=_wait_s(context))
        yield name
    finally:
        with suppress(LabkitError):
            cluster.delete("Pod", name, namespace)


def _sentinel(lab: Lab) -> str:
    return f"redis-sentinel.{lab.redis.namespace}.svc.cluster.local"


def _primary(lab: Lab) -> str:
    return f"{lab.postgres.cluster_name}-primary.{lab.postgres.namespace}.svc.cluster.local"


def redis_ping(host: str, port: int = 26379) -> list[str]:
    """A PING to a Redis or Sentinel port with busybox nc; any RESP reply means it got through."""
    return ["sh", "-c", f"printf 'PING\\r\\n' | nc -w 3 {host} {port}"]


def postgres_hello(host: str, port: int = 5432) -> list[str]:
    """PostgreSQL's SSLRequest; the server answers one byte, S or N."""
    return [
        "sh",
        "-c",
        f"printf '\\000\\000\\000\\010\\004\\322\\026\\057' | nc -w 3 {host} {port}",
    ]


@implements("4.3.2")
def plaintext_refused(context: Context) -> Outcome:
    """A plaintext request from a pod outside the mesh to Shlink is refused."""
    lab = context.lab
    cluster = cluster_for(context)
    url = f"http://shlink.{lab.shlink.namespace}.svc.cluster.local:8080{_HEALTH}"
    namespace = "default"
    with probe_pod(context, namespace, mesh=False, what="plaintext") as pod:
        done = cluster.exec(pod, namespace, ["wget", "-q", "-O", "-", "-T", "5", url], "probe")
    said = (done.stdout + done.stderr).strip()[:300]
    dns = "bad address" in said
    refused = any(word in said for word in _REFUSED)
    return Outcome.judge(
        done.exit_code != 0 and refused and not dns,
        "the plaintext GET from a pod outside the mesh is refused (connection reset)",
        f"wget {url} from pod {namespace}/{pod} (no sidecar): exit {done.exit_code}: "
        f"{said or 'no output'}"
        + ("; the name did not resolve, so nothing about mTLS was learnt" if dns else ""),
    )


@implements("4.3.3")
def authorization_denies(context: Context) -> Outcome:
    """A meshed pod that is not Shlink is refused by Redis's AuthorizationPolicy."""
    lab = context.lab
    cluster = cluster_for(context)
    namespace = lab.shlink.namespace
    host = _sentinel(lab)
    policies = _names(cluster.list("AuthorizationPolicy", lab.redis.namespace))
    control = f"http://shlink.{namespace}.svc.cluster.local:8080{_HEALTH}"
    with probe_pod(context, namespace, mesh=True, what="authz") as pod:
        # The control: the same pod reaches Shlink, so its network and tools work.
        reached = cluster.exec(
            pod, namespace, ["wget", "-q", "-O", "-", "-T", "5", control], "probe"
        )
        done = cluster.exec(pod, namespace, redis_ping(host), "probe")
    reply = done.stdout.strip()
    works = reached.exit_code == 0 and '"pass"' in reached.stdout
    if not works:
        said = (reached.stdout + reached.stderr).strip()[:200]
        return Outcome.judge(
            False,
            "the probe pod reaches Shlink (control), then gets no Redis reply",
            f"control GET {control} from {namespace}/{pod}: exit {reached.exit_code}: "
            f"{said or 'no output'}; without it a missing reply proves nothing",
        )
    return Outcome.judge(
        not reply.startswith(("+", "-"))
        and "bad address" not in done.stderr
        and done.exit_code not in {126, 127},
        f"Redis refuses principal cluster.local/ns/{namespace}/sa/default (connection closed, "
        "no Redis reply)",
        f"PING {host}:26379 from meshed pod {namespace}/{pod}: exit {done.exit_code}, "
        f"reply {reply[:80] or 'none'}; AuthorizationPolicies in {lab.redis.namespace}: {policies}",
    )


@implements("4.3.4")
def shlink_reaches_stores(context: Context) -> Outcome:
    """From a Shlink pod, Redis (Sentinel PING) and PostgreSQL (SSLRequest) answer."""
    lab = context.lab
    cluster = cluster_for(context)
    namespace = lab.shlink.namespace
    pods = [
        p
        for p in cluster.list("Pod", namespace, labels={"app.kubernetes.io/name": "shlink"})
        if pod_ready(p)
    ]
    if not pods:
        return Outcome.judge(
            False,
            "a Ready Shlink pod",
            f"no Ready pod app.kubernetes.io/name=shlink in {namespace}",
        )
    pod = str(pods[0]["metadata"]["name"])
    redis = cluster.exec(pod, namespace, redis_ping(_sentinel(lab)), "shlink")
    postgres = cluster.exec(pod, namespace, postgres_hello(_primary(lab)), "shlink")
    redis_ok = redis.stdout.strip().startswith(("+PONG", "-NOAUTH"))
    postgres_ok = postgres.stdout[:1] in {"S", "N"}
    return Outcome.judge(
        redis_ok and postgres_ok,
        "Redis Sentinel answers PING and PostgreSQL answers an SSLRequest, from a Shlink pod",
        f"pod {namespace}/{pod}: {_sentinel(lab)}:26379 -> "
        f"{redis.stdout.strip()[:40] or 'no reply'}"
        f" (exit {redis.exit_code}); {_primary(lab)}:5432 -> {postgres.stdout[:1] or 'no reply'!r}"
        f" (exit {postgres.exit_code})",
    )


@implements("4.3.5")
def ingress_still_works(context: Context) -> Outcome:
    """With STRICT mTLS in force, the gateway still brings outside requests to Shlink."""
    lab = context.lab
    root = cluster_for(context).get("PeerAuthentication", "default", lab.istio.namespace)
    mode = (((root or {}).get("spec") or {}).get("mtls") or {}).get("mode", "absent")
    gateway = gateway_for(context)
    answer = request(gateway, _HEALTH)
    return Outcome.judge(
        mode == "STRICT" and _health(answer),
        'STRICT mTLS and GET /rest/health through the gateway: 200 {"status": "pass"}',
        f"mesh mTLS {mode}; {answer.line()}",
        f"through {gateway.via}",
    )


# -- 6.2.5 what the mesh costs ----------------------------------------------------------------


def overhead_runs(context: Context, run: Callable[[str, str], Any]) -> tuple[Any, Any]:
    """``run(name, url)`` through a port-forward to the gateway, then to the Shlink Service."""
    lab = context.lab
    cluster = cluster_for(context)
    with cluster.open_service(lab.istio.namespace, lab.istio.gateway_service, 80) as (host, port):
        meshed = run("through-gateway", f"http://{host}:{port}{_HEALTH}")
    with cluster.open_service(lab.shlink.namespace, "shlink", 8080) as (host, port):
        direct = run("direct-to-service", f"http://{host}:{port}{_HEALTH}")
    return meshed, direct


@implements("6.2.5")
def istio_overhead(context: Context) -> Outcome:
    """The same GET scenario through the gateway and straight to Shlink: latency compared."""
    from labkit.load import LOOPBACK, Fixed, Schedule, resolve_target, run_load  # noqa: PLC0415

    lab = context.lab
    rate = float(min(lab.targets.rate_steps[0], 200))
    duration = min(lab.targets.step_duration_s, 20.0)

    def run(name: str, url: str) -> Any:
        target = resolve_target(url, LOOPBACK)  # a local port-forward: loopback only
        return run_load(
            target,
            Fixed(host=target.host_header, path=_HEALTH),
            Schedule.constant(rate, duration, warmup_s=min(lab.targets.warmup_s, 2.0)),
            name=f"istio-overhead-{name}",
            connections=8,
        )

    meshed, direct = overhead_runs(context, run)
    bad = [
        f"{r.name}: error rate {r.error_rate:.1%} of {r.recorder.requests} requests"
        for r in (meshed, direct)
        if r.error_rate > 0.01 or r.recorder.requests == 0
    ]
    # A generator that fell behind still measured (intended-time latency), but say so.
    caveats = [
        f"{r.name} generator-limited ({r.generator_reason})"
        for r in (meshed, direct)
        if r.generator_limited
    ]
    mesh_ms, direct_ms = meshed.latency(), direct.latency()
    added = {q: mesh_ms[q] - direct_ms[q] for q in ("p50", "p99")}
    return Outcome.judge(
        not bad,
        f"GET {_HEALTH} at {rate:g}/s for {duration:g}s both ways, under 1% errors, "
        "overhead quantified",
        f"through the gateway p50 {mesh_ms['p50']:.2f} ms p99 {mesh_ms['p99']:.2f} ms; direct "
        f"p50 {direct_ms['p50']:.2f} ms p99 {direct_ms['p99']:.2f} ms; the mesh adds "
        f"{added['p50']:+.2f} ms p50, {added['p99']:+.2f} ms p99"
        + (f"; cannot judge: {'; '.join(bad)}" if bad else "")
        + (f"; note: {'; '.join(caveats)}" if caveats else ""),
        "both through a port-forward (same transport): gateway Envoy + Shlink's sidecar vs the "
        "Shlink pod's port",
    )
