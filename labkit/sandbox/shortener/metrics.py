"""RED metrics of the service for Prometheus: requests and their latency by route and status.

``shlink_http_requests_total`` counts responses and ``shlink_http_request_duration_seconds``
is their latency histogram, both labelled by ``route`` (the route's template, e.g.
``/{shortCode}``, so codes never become label values), ``method`` and ``status``.
uvicorn runs several worker processes, so prometheus-client's multiprocess mode is used:
each worker writes its samples under ``PROMETHEUS_MULTIPROC_DIR`` (emptied by
``service_command`` before the service starts) and ``GET /metrics`` adds them up.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["MULTIPROCESS_ENV", "MetricsMiddleware", "metrics"]

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Buckets around the ADR's 10 ms redirect target, up to the 5 s Istio timeout.
_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_LABELS = ("route", "method", "status")

REQUESTS = Counter(
    "shlink_http_requests", "HTTP responses sent, by route template, method and status", _LABELS
)
LATENCY = Histogram(
    "shlink_http_request_duration_seconds",
    "Time from request to the response's first byte, by route template, method and status",
    _LABELS,
    buckets=_BUCKETS,
)


class MetricsMiddleware:
    """Pure ASGI middleware: times each HTTP request and counts it once its status is known."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        recorded = False

        async def sending(message: Message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start" and not recorded:
                recorded = True
                _record(scope, int(message["status"]), time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            if not recorded:  # raised before any response: the client sees a 500
                _record(scope, 500, time.perf_counter() - started)
            raise


def _record(scope: Scope, status: int, seconds: float) -> None:
    route: Any = scope.get("route")
    template = str(getattr(route, "path", "")) or "unmatched"
    labels = (template, str(scope.get("method", "")), str(status))
    REQUESTS.labels(*labels).inc()
    LATENCY.labels(*labels).observe(seconds)


async def metrics(request: Request) -> Response:
    """``GET /metrics``: every worker's samples in Prometheus' text format."""
    if os.environ.get(MULTIPROCESS_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:  # one process (tests building the app directly): its own default registry
        body = generate_latest()
    return Response(body, media_type=CONTENT_TYPE_LATEST)
