"""Traffic policy that keeps its promises: retries that never repeat a create, and a gateway
rate limit that lets the roadmap's load tests through.

Envoy retries on ``5xx``, ``gateway-error``, ``reset``, ``retriable-*``, gRPC statuses or a
status code after the upstream may have acted on the request (a per-try timeout counts as a
``reset``). Only ``connect-failure``, ``refused-stream`` and ``reset-before-request`` (Envoy
1.31, Istio 1.23) fire when the request never reached a pod. A route without ``retries``
gets Istio's default policy: 2 attempts on ``connect-failure,refused-stream,unavailable,
cancelled,503`` (istio/api networking/v1alpha3/virtual_service.proto, HTTPRetry).
"""

from __future__ import annotations

import re
from typing import Any

from labkit.manifests.apps import App
from labkit.manifests.documents import Document, Problem, field_value, problem, seconds
from labkit.params import Lab

__all__ = ["check_rate_limit", "check_traffic"]

_SAFE_FOR_WRITES = ("connect-failure", "refused-stream", "reset-before-request")
_ISTIO_DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,503"
_NOT_IDEMPOTENT = ("POST", "PATCH")


def check_traffic(documents: list[Document]) -> list[Problem]:
    """Routes that can retry a POST or PATCH the upstream may already have carried out."""
    problems: list[Problem] = []
    for service in (d for d in documents if d.kind == "VirtualService"):
        for index, route in enumerate(service.get("spec.http") or []):
            if isinstance(route, dict):
                problems += _retry_safety(service, f"spec.http.{index}", route)
    return problems


def _retry_safety(service: Document, field: str, route: dict[str, Any]) -> list[Problem]:
    methods = _writes_matched(route)
    if not methods:
        return []
    retries = route.get("retries")
    name = route.get("name") or field
    if not isinstance(retries, dict):
        return [
            problem(
                service,
                f"{field}.retries",
                f"route {name} matches {'/'.join(methods)} and sets no retries, so Istio's "
                f"default applies (2 attempts on {_ISTIO_DEFAULT_RETRY_ON}): a create Shlink "
                "answered 503 after storing it would be made twice; set retries with retryOn "
                f"{','.join(_SAFE_FOR_WRITES)} (or attempts: 0)",
            )
        ]
    if retries.get("attempts") == 0:
        return []
    retry_on = str(retries.get("retryOn") or _ISTIO_DEFAULT_RETRY_ON)
    unsafe = [c for c in retry_on.replace(" ", "").split(",") if c and c not in _SAFE_FOR_WRITES]
    if not unsafe:
        return []
    return [
        problem(
            service,
            f"{field}.retries.retryOn",
            f"route {name} matches {'/'.join(methods)} and retries on {', '.join(unsafe)}, "
            "which fire after the upstream may have carried the request out (a create would "
            f"make two short URLs); keep only {','.join(_SAFE_FOR_WRITES)} there, and give "
            "idempotent methods (GET, HEAD) a route of their own for wider retries",
        )
    ]


def _writes_matched(route: dict[str, Any]) -> list[str]:
    """The non-idempotent methods a route matches (all of them without a method condition)."""
    matches = route.get("match")
    if not isinstance(matches, list) or not matches:
        return list(_NOT_IDEMPOTENT)
    found: list[str] = []
    for match in matches:
        method = (match or {}).get("method") if isinstance(match, dict) else None
        if not isinstance(method, dict):
            return list(_NOT_IDEMPOTENT)  # this match takes any method
        found += [m for m in _NOT_IDEMPOTENT if _string_matches(method, m) and m not in found]
    return found


def _string_matches(condition: dict[str, Any], value: str) -> bool:
    """Istio's StringMatch (exact, prefix, regex: RE2 over the whole value) against ``value``."""
    if "exact" in condition:
        return str(condition["exact"]) == value
    if "prefix" in condition:
        return value.startswith(str(condition["prefix"]))
    if "regex" in condition:
        try:
            return re.fullmatch(str(condition["regex"]), value) is not None
        except re.error:
            return True  # cannot tell: assume the worst
    return True


def check_rate_limit(documents: list[Document], apps: list[App], lab: Lab) -> list[Problem]:
    """The gateway's local rate limit admits the load the roadmap's phase 6 sends through it.

    Envoy's local rate limit is a token bucket per gateway pod, so the gateway admits the
    bucket's rate times its pod count; a lower ceiling than params' top load step turns the
    load tests into a measurement of 429s.
    """
    steps = lab.targets.rate_steps
    if not steps:
        return []
    pods, source = _gateway_pods(apps)
    problems: list[Problem] = []
    for limit in (d for d in documents if d.kind == "EnvoyFilter"):
        for index, patch in enumerate(limit.get("spec.configPatches") or []):
            value = field_value(patch, "patch.value")
            if "local_ratelimit" not in str(field_value(value, "name")):
                continue
            config = f"spec.configPatches.{index}.patch.value.typed_config.value"
            bucket = limit.get(f"{config}.token_bucket") or {}
            interval = seconds(bucket.get("fill_interval")) or 0.0
            enforced = limit.get(f"{config}.filter_enforced.default_value.numerator")
            if not bucket or interval <= 0 or enforced == 0:
                continue  # no bucket, or counted but never enforced: nothing is capped
            per_pod = float(bucket.get("tokens_per_fill") or 0) / interval
            admitted = per_pod * pods
            if admitted >= max(steps):
                continue
            needed = -(-max(steps) // pods)
            problems.append(
                problem(
                    limit,
                    f"{config}.token_bucket",
                    f"admits {per_pod:g} requests/s per gateway pod x {pods} pod(s) ({source}) "
                    f"= {admitted:g}/s, below the load steps' {max(steps)}/s (params "
                    "targets.rate_steps): phase 6 through the gateway would measure 429s, not "
                    f"Shlink; raise params istio.rate_limit.requests (per_seconds "
                    f"{lab.istio.rate_limit.per_seconds}) to at least "
                    f"{needed * lab.istio.rate_limit.per_seconds} and the bucket with it, or run "
                    "more gateway pods",
                )
            )
    return problems


def _gateway_pods(apps: list[App]) -> tuple[int, str]:
    """How many ingress gateway pods run at least, and where that comes from."""
    for app in apps:
        if "gateway" in app.charts and any("istio" in r for r in app.repositories):
            values = app.values("gateway")
            autoscaling = values.get("autoscaling") or {}
            if autoscaling.get("enabled", True):  # the chart's default: an HPA from 1 pod
                count = int(autoscaling.get("minReplicas", 1))
                return count, f"Application {app.name}: autoscaling.minReplicas {count}"
            count = int(values.get("replicaCount", 1))
            return count, f"Application {app.name}: replicaCount {count}"
    return 1, "no gateway Application found: 1 assumed"
