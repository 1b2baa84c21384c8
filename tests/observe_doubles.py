"""Loopback doubles of the APIs the sandbox cannot run: Grafana, Jaeger, Kiali (and Shlink's
front door and Istio's metrics, which only a mesh produces), answering the way their documented
APIs do. Each double has a healthy and a broken state; ``healthy`` switches between them.

Shapes follow the published API documentation: Grafana's HTTP API (``/api/health``,
``/api/datasources``, ``/api/datasources/uid/:uid/health``, ``/api/search``), Jaeger's query
service (``/api/services``, ``/api/traces/:id``, ``/api/traces?service=``: ``{"data": [...]}``
with spans in microseconds), Kiali's graph API (``/kiali/api/namespaces/graph``: cytoscape
``elements`` of nodes and edges) and Prometheus' ``/api/v1/query``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from labkit.manifests.dashboards import dashboard_uids

REPOSITORY = Path(__file__).resolve().parent.parent


class ObservabilityDouble:
    """One HTTP server on 127.0.0.1 answering as Grafana, Jaeger, Kiali, Shlink and Prometheus."""

    def __init__(self) -> None:
        self.broken: set[str] = set()  # parts answering in their broken state
        self.traceparents: list[str] = []  # what the Shlink front door received
        self.requests: list[str] = []
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                double.requests.append(self.path)
                query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
                status, body = double.answer(parts.path, query, dict(self.headers))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    PARTS = ("grafana", "dashboards", "prometheus", "services", "trace", "traces", "kiali")

    @property
    def healthy(self) -> bool:
        """True when no part is broken; setting False breaks every part."""
        return not self.broken

    @healthy.setter
    def healthy(self, value: bool) -> None:
        self.broken = set() if value else set(self.PARTS)

    # --- what each API answers ----------------------------------------------------------------
    def answer(self, path: str, query: dict[str, str], headers: dict[str, str]) -> tuple[int, Any]:
        part = next((name for prefix, name in _PARTS if path.startswith(prefix)), "")
        ok = part not in self.broken
        if path == "/rest/health":  # Shlink behind the gateway
            self.traceparents.append(headers.get("traceparent", ""))
            return 200, {"status": "pass", "version": "4.4.0"}
        if path == "/api/health":
            body = {"commit": "abc123", "database": "ok" if ok else "failing", "version": "11.4.0"}
            return (200 if ok else 503), body
        if path == "/api/datasources":
            return 200, [
                {
                    "id": 1,
                    "uid": "prometheus",
                    "orgId": 1,
                    "name": "Prometheus",
                    "type": "prometheus",
                    "access": "proxy",
                    "url": "http://kube-prometheus-stack-prometheus.monitoring:9090/",
                    "isDefault": True,
                }
            ]
        if path == "/api/datasources/uid/prometheus/health":
            if ok:
                return 200, {"status": "OK", "message": "Successfully queried the Prometheus API."}
            return 400, {"status": "ERROR", "message": "Post ... dial tcp: connection refused"}
        if path == "/api/search":
            uids = dashboard_uids() if ok else dashboard_uids()[:1]
            return 200, [
                {"id": i, "uid": uid, "title": uid, "type": "dash-db", "tags": ["labkit"]}
                for i, uid in enumerate(uids)
            ]
        if path == "/api/v1/query":
            result = [{"metric": {}, "value": [1700000000.0, "12.5"]}] if ok else []
            return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}
        if path == "/api/services":
            names = (
                ["istio-ingressgateway.istio-system", "shlink.shlink"]
                if ok
                else ["jaeger-all-in-one"]
            )
            return 200, {
                "data": names,
                "total": len(names),
                "limit": 0,
                "offset": 0,
                "errors": None,
            }
        if path.startswith("/api/traces/"):
            trace_id = path.rsplit("/", 1)[-1]
            known = ok and any(f"-{trace_id}-" in header for header in self.traceparents)
            if not known:
                return 404, {"data": None, "errors": [{"code": 404, "msg": "trace not found"}]}
            return 200, {"data": [_trace(trace_id)], "total": 0, "limit": 0, "offset": 0}
        if path == "/api/traces":
            traces = [_trace("4bf92f3577b34da6a3ce929d0e0e4736")] if ok else []
            if not ok:
                traces = [_trace("4bf92f3577b34da6a3ce929d0e0e4736", stores=False)]
            return 200, {"data": traces, "total": 0, "limit": 0, "offset": 0, "errors": None}
        if path == "/kiali/api/namespaces/graph":
            return 200, _graph(ok)
        return 404, {"message": "Not found"}

    def __enter__(self) -> ObservabilityDouble:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


_PARTS = (
    ("/api/health", "grafana"),
    ("/api/datasources", "grafana"),
    ("/api/search", "dashboards"),
    ("/api/v1/", "prometheus"),
    ("/api/services", "services"),
    ("/api/traces/", "trace"),
    ("/api/traces", "traces"),
    ("/kiali/", "kiali"),
)


def _span(trace_id: str, span_id: str, parent: str, process: str, operation: str,
          duration_us: int, tags: dict[str, str]) -> dict[str, Any]:  # fmt: skip
    return {
        "traceID": trace_id,
        "spanID": span_id,
        "operationName": operation,
        "references": [{"refType": "CHILD_OF", "traceID": trace_id, "spanID": parent}]
        if parent
        else [],
        "startTime": 1700000000000000,
        "duration": duration_us,
        "tags": [{"key": k, "type": "string", "value": v} for k, v in tags.items()],
        "logs": [],
        "processID": process,
        "warnings": None,
    }


def _trace(trace_id: str, stores: bool = True) -> dict[str, Any]:
    spans = [
        _span(trace_id, "a1", "", "p1", "shlink.shlink.svc.cluster.local:8080/*", 4200,
              {"http.status_code": "200", "component": "proxy"}),
        _span(trace_id, "b2", "a1", "p2", "shlink.shlink.svc.cluster.local:8080/*", 3100,
              {"http.status_code": "200", "component": "proxy"}),
    ]  # fmt: skip
    if stores:
        spans += [
            _span(trace_id, "c3", "b2", "p2", "GET", 350,
                  {"db.system": "redis", "db.statement": "GET shlink_redirect_abc"}),
            _span(trace_id, "d4", "b2", "p2", "SELECT", 2100,
                  {"db.system": "postgresql", "db.statement": "SELECT * FROM short_urls"}),
        ]  # fmt: skip
    return {
        "traceID": trace_id,
        "spans": spans,
        "processes": {
            "p1": {"serviceName": "istio-ingressgateway.istio-system", "tags": []},
            "p2": {"serviceName": "shlink.shlink", "tags": []},
        },
        "warnings": None,
    }


def _graph(ok: bool) -> dict[str, Any]:
    nodes = [
        ("n1", "istio-system", "istio-ingressgateway"),
        ("n2", "shlink", "shlink"),
        ("n3", "redis", "redis"),
        ("n4", "postgres", "shlink-db-instance1-abcd"),
    ]
    edges = [("n1", "n2"), ("n2", "n3")] + ([("n2", "n4")] if ok else [])
    return {
        "timestamp": 1700000000,
        "duration": 600,
        "graphType": "workload",
        "elements": {
            "nodes": [
                {
                    "data": {
                        "id": i,
                        "nodeType": "workload",
                        "namespace": ns,
                        "workload": name,
                        "app": name,
                    }
                }
                for i, ns, name in nodes
            ],
            "edges": [
                {
                    "data": {
                        "id": f"{s}{t}",
                        "source": s,
                        "target": t,
                        "traffic": {"protocol": "http", "rates": {"http": "1.00"}},
                    }
                }
                for s, t in edges
            ],
        },
    }


@contextmanager
def homelab_on_double(tmp_path: Path) -> Iterator[tuple[ObservabilityDouble, Path]]:
    """A double up, and a homelab-kind params file whose every API URL is that double."""
    with ObservabilityDouble() as double:
        params = tmp_path / "homelab-double.yaml"
        params.write_text(
            yaml.safe_dump(
                {
                    "extends": str(REPOSITORY / "params" / "homelab.yaml"),
                    "shlink": {"base_url": double.url},
                    "observability": {
                        f"{api}_url": double.url
                        for api in ("prometheus", "alertmanager", "grafana", "jaeger", "kiali")
                    },
                    "allow_list": ["127.0.0.0/8"],
                }
            )
        )
        yield double, params
