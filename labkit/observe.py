"""What the lab's observability stack says: Prometheus, Alertmanager, Grafana, Jaeger, Kiali.

One small HTTP client (``Api``, over httpx with timeouts) per outside API, each reached at a
base URL the lab names: on the sandbox its own Prometheus and Alertmanager on loopback
(``labkit.sandbox.monitoring``); on a cluster the ``observability.*_url`` params. Every
address is checked against the lab's allow-list before a request; transport failures become
``ConnectError`` and answers that are not what was asked ``QueryError``, both naming the API,
the endpoint and the query. Results come back as plain data, and as DataFrames for tables;
figures are built by ``labkit.report``.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from labkit.errors import ConfigError, ConnectError, QueryError
from labkit.params import Lab

__all__ = [
    "RED_QUERIES",
    "Alertmanager",
    "Api",
    "Grafana",
    "Jaeger",
    "Kiali",
    "Prometheus",
    "Sample",
    "Series",
    "alert_rules",
    "client",
    "endpoints",
    "locate",
    "red",
    "series_frame",
    "spans",
    "targets",
]

_TIMEOUT_S = 5.0
APIS = ("prometheus", "alertmanager", "grafana", "jaeger", "kiali")

# RED for Shlink, per lab kind: the cluster measures it at the Envoy sidecar (Istio's standard
# metrics); the sandbox's service counts itself (labkit.sandbox.shortener.metrics).
_WINDOW = "[1m]"
RED_QUERIES: dict[str, dict[str, str]] = {
    "sandbox": {
        "rate": f"sum(rate(shlink_http_requests_total{_WINDOW}))",
        "errors": f'sum(rate(shlink_http_requests_total{{status=~"5.."}}{_WINDOW})) or vector(0)',
        **{
            f"p{q}": f"histogram_quantile(0.{q}, sum by (le) "
            f"(rate(shlink_http_request_duration_seconds_bucket{_WINDOW}))) * 1000"
            for q in (50, 95, 99)
        },
    },
    "homelab": {
        "rate": 'sum(rate(istio_requests_total{reporter="destination", '
        f'destination_workload="shlink"}}{_WINDOW}))',
        "errors": 'sum(rate(istio_requests_total{reporter="destination", '
        f'destination_workload="shlink", response_code=~"5.."}}{_WINDOW})) or vector(0)',
        **{
            f"p{q}": f"histogram_quantile(0.{q}, sum by (le) (rate("
            'istio_request_duration_milliseconds_bucket{reporter="destination", '
            f'destination_workload="shlink"}}{_WINDOW})))'
            for q in (50, 95, 99)
        },
    },
}


@dataclass(frozen=True)
class Sample:
    """One instant-vector element: labels and value."""

    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Series:
    """One range-vector element: labels and (unix time, value) points."""

    labels: dict[str, str]
    points: list[tuple[float, float]]


class Api:
    """One HTTP API: base URL checked against the allow-list, timeouts, errors translated."""

    kind = "api"

    def __init__(
        self,
        lab: Lab,
        base_url: str,
        *,
        timeout_s: float = _TIMEOUT_S,
        auth: tuple[str, str] | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ConfigError(f"{self.kind}: {base_url!r} is not an http(s) URL")
        lab.require_allowed(parts.hostname)
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.base_url, timeout=timeout_s, auth=auth, trust_env=False
        )

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def request(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """GET ``path``; ConnectError names the API and endpoint when it cannot be had."""
        where = f"{self.kind} {self.base_url}{path}"
        try:
            return self._client.get(path, params=params, headers=headers)
        except httpx.TimeoutException as exc:
            raise ConnectError(f"{where}: no answer in time ({exc}); is it up?") from None
        except httpx.HTTPError as exc:
            raise ConnectError(
                f"{where}: {type(exc).__name__}: {exc}; is it running and reachable from here?"
            ) from None

    def get_json(
        self, path: str, params: Mapping[str, Any] | None = None, accept: Collection[int] = ()
    ) -> Any:
        """GET ``path`` and decode JSON; a non-2xx answer (not in ``accept``) is a ConnectError."""
        response = self.request(path, params)
        what = f"{self.kind} {self.base_url}{path}" + (f" {dict(params)}" if params else "")
        if response.status_code in {401, 403}:
            raise ConnectError(
                f"{what}: {response.status_code}, refused; check the credentials params name"
            )
        if response.status_code >= 300 and response.status_code not in accept:
            raise ConnectError(f"{what}: HTTP {response.status_code}: {response.text[:300]}")
        try:
            return response.json()
        except ValueError:
            raise QueryError(
                f"{what}: HTTP {response.status_code} without JSON: {response.text[:200]!r}"
            ) from None


def _field(data: Any, key: str, what: str) -> Any:
    if not isinstance(data, dict) or key not in data:
        raise QueryError(f"{what}: answer has no {key!r}: {str(data)[:200]}")
    return data[key]


class Prometheus(Api):
    """Prometheus' HTTP API v1: PromQL (instant and range), targets, rules, alerts."""

    kind = "prometheus"

    def _data(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        # 400 (bad_data), 422 (execution) and 503 (timeout) carry Prometheus' error body.
        body = self.get_json(path, params, accept={400, 422, 503})
        what = f"prometheus {path}" + (f" {params.get('query')!r}" if params else "")
        if _field(body, "status", what) != "success":
            raise QueryError(
                f"{what}: {body.get('errorType', 'error')}: {body.get('error', '')}; "
                "fix the query or check what this Prometheus scrapes"
            )
        return _field(body, "data", what)

    def ready(self) -> bool:
        """True when ``/-/ready`` answers 200."""
        return self.request("/-/ready").status_code == 200

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        """An instant query; a scalar comes back as one sample without labels."""
        params: dict[str, Any] = {"query": promql}
        if at is not None:
            params["time"] = at
        data = self._data("/api/v1/query", params)
        kind, result = data.get("resultType"), data.get("result")
        if kind == "vector":
            return [
                Sample(dict(item.get("metric", {})), float(item["value"][1])) for item in result
            ]
        if kind == "scalar":
            return [Sample({}, float(result[1]))]
        raise QueryError(f"prometheus query {promql!r}: a {kind}, not an instant vector")

    def query_range(self, promql: str, start: float, end: float, step_s: float) -> list[Series]:
        """A range query over [start, end] (unix seconds) at ``step_s``."""
        data = self._data(
            "/api/v1/query_range",
            {"query": promql, "start": start, "end": end, "step": step_s},
        )
        if data.get("resultType") != "matrix":
            raise QueryError(f"prometheus range query {promql!r}: a {data.get('resultType')}")
        return [
            Series(
                dict(item.get("metric", {})),
                [(float(t), float(v)) for t, v in item.get("values", [])],
            )
            for item in data.get("result", [])
        ]

    def targets(self) -> list[dict[str, Any]]:
        """Active scrape targets: job, instance, health, last error, last scrape."""
        data = self._data("/api/v1/targets", {"state": "active"})
        return [
            {
                "job": target.get("labels", {}).get("job", target.get("scrapePool", "")),
                "instance": target.get("labels", {}).get("instance", ""),
                "health": target.get("health", "unknown"),
                "last_error": target.get("lastError", ""),
                "last_scrape": target.get("lastScrape", ""),
                "url": target.get("scrapeUrl", ""),
            }
            for target in _field(data, "activeTargets", "prometheus /api/v1/targets")
        ]

    def rules(self) -> list[dict[str, Any]]:
        """Alerting rules loaded: group, name, state (inactive/pending/firing), health."""
        data = self._data("/api/v1/rules", {"type": "alert"})
        return [
            {
                "group": group.get("name", ""),
                "alert": rule.get("name", ""),
                "state": rule.get("state", ""),
                "health": rule.get("health", ""),
                "last_error": rule.get("lastError", ""),
                "active": len(rule.get("alerts", [])),
                "query": rule.get("query", ""),
            }
            for group in _field(data, "groups", "prometheus /api/v1/rules")
            for rule in group.get("rules", [])
            if rule.get("type") == "alerting"
        ]

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (pending and firing) with their labels."""
        data = self._data("/api/v1/alerts")
        return [
            {
                "alert": alert.get("labels", {}).get("alertname", ""),
                "state": alert.get("state", ""),
                "since": alert.get("activeAt", ""),
                "value": alert.get("value", ""),
                "labels": alert.get("labels", {}),
            }
            for alert in _field(data, "alerts", "prometheus /api/v1/alerts")
        ]

    def alertmanagers(self) -> list[str]:
        """The Alertmanagers this Prometheus sends alerts to (active ones)."""
        data = self._data("/api/v1/alertmanagers")
        return [entry.get("url", "") for entry in data.get("activeAlertmanagers", [])]


class Alertmanager(Api):
    """Alertmanager's API v2: the alerts it holds."""

    kind = "alertmanager"

    def ready(self) -> bool:
        """True when ``/-/ready`` answers 200."""
        return self.request("/-/ready").status_code == 200

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts received: name, state (active/suppressed/unprocessed), since, labels."""
        body = self.get_json("/api/v2/alerts")
        if not isinstance(body, list):
            raise QueryError(f"alertmanager /api/v2/alerts: not a list: {str(body)[:200]}")
        return [
            {
                "alert": alert.get("labels", {}).get("alertname", ""),
                "state": alert.get("status", {}).get("state", ""),
                "since": alert.get("startsAt", ""),
                "labels": alert.get("labels", {}),
            }
            for alert in body
        ]


class Grafana(Api):
    """Grafana's HTTP API: health, data sources (and their health), dashboard search."""

    kind = "grafana"

    def health(self) -> dict[str, Any]:
        """``/api/health``: ``{"database": "ok", "version": ...}``."""
        body = self.get_json("/api/health", accept={503})  # 503: database failing
        _field(body, "database", "grafana /api/health")
        return dict(body)

    def datasources(self) -> list[dict[str, Any]]:
        """Configured data sources: uid, name, type, url."""
        body = self.get_json("/api/datasources")
        if not isinstance(body, list):
            raise QueryError(f"grafana /api/datasources: not a list: {str(body)[:200]}")
        return [
            {key: source.get(key, "") for key in ("uid", "name", "type", "url", "isDefault")}
            for source in body
        ]

    def datasource_health(self, uid: str) -> dict[str, Any]:
        """``/api/datasources/uid/<uid>/health``: ``{"status": "OK"|"ERROR", "message": ...}``."""
        body = self.get_json(f"/api/datasources/uid/{uid}/health", accept={400, 500, 503})
        _field(body, "status", f"grafana datasource {uid} health")
        return dict(body)

    def dashboards(self, query: str = "") -> list[dict[str, Any]]:
        """Dashboards whose title matches ``query`` (all when empty): uid, title, tags."""
        body = self.get_json("/api/search", {"type": "dash-db", "query": query})
        if not isinstance(body, list):
            raise QueryError(f"grafana /api/search: not a list: {str(body)[:200]}")
        return [
            {"uid": item.get("uid", ""), "title": item.get("title", ""), "tags": item.get("tags")}
            for item in body
        ]


class Jaeger(Api):
    """Jaeger's query API (the one its UI uses): services, traces by id, traces by tags."""

    kind = "jaeger"

    def services(self) -> list[str]:
        """Service names that reported spans."""
        return [str(name) for name in _field(self.get_json("/api/services"), "data", "jaeger")]

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """The trace ``trace_id`` (32 hex digits), or None when Jaeger does not hold it."""
        response = self.request(f"/api/traces/{trace_id}")
        if response.status_code == 404:
            return None
        body = self.get_json(f"/api/traces/{trace_id}")
        traces = _field(body, "data", f"jaeger trace {trace_id}") or []
        return dict(traces[0]) if traces else None

    def traces(
        self,
        service: str,
        tags: Mapping[str, str] | None = None,
        lookback_s: int = 3600,
        limit: int = 20,
    ) -> list[dict[str, Any]]:
        """Recent traces of ``service`` (optionally with span ``tags``), newest first."""
        import json  # noqa: PLC0415

        params: dict[str, Any] = {"service": service, "lookback": f"{lookback_s}s", "limit": limit}
        if tags:
            params["tags"] = json.dumps(dict(tags))
        body = self.get_json("/api/traces", params)
        return [dict(trace) for trace in _field(body, "data", "jaeger /api/traces") or []]


def spans(trace: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A Jaeger trace's spans flattened: service, operation, duration (ms), tags as a dict."""
    processes = trace.get("processes", {})
    rows = []
    for span in trace.get("spans", []):
        process = processes.get(span.get("processID", ""), {})
        rows.append(
            {
                "service": process.get("serviceName", ""),
                "operation": span.get("operationName", ""),
                "duration_ms": float(span.get("duration", 0)) / 1000.0,  # Jaeger: microseconds
                "tags": {tag.get("key"): tag.get("value") for tag in span.get("tags", [])},
            }
        )
    return rows


class Kiali(Api):
    """Kiali's graph API: which workloads talk to which, from the mesh's own telemetry."""

    kind = "kiali"

    def graph(self, namespaces: list[str], duration_s: int = 600) -> dict[str, Any]:
        """The workload graph of ``namespaces`` over the last ``duration_s``: nodes and edges."""
        body = self.get_json(
            "/kiali/api/namespaces/graph",
            {
                "namespaces": ",".join(namespaces),
                "graphType": "workload",
                "duration": f"{duration_s}s",
            },
        )
        return dict(_field(body, "elements", "kiali graph"))

    def edges(self, namespaces: list[str], duration_s: int = 600) -> list[tuple[str, str]]:
        """(source, target) workload names of every edge of the graph."""
        elements = self.graph(namespaces, duration_s)
        names = {}
        for node in elements.get("nodes", []):
            data = node.get("data", {})
            names[data.get("id")] = (
                data.get("workload") or data.get("app") or data.get("service") or data.get("id")
            )
        return [
            (str(names.get(d.get("source"), d.get("source"))), str(names.get(d.get("target"))))
            for d in (edge.get("data", {}) for edge in elements.get("edges", []))
        ]


# --- where each API is, per lab --------------------------------------------------------------


def locate(lab: Lab, api: str) -> tuple[str, str]:
    """``(base URL, "")`` where ``api`` answers for this lab, or ``("", why not)``."""
    if api not in APIS:
        raise ConfigError(f"no observability API {api!r}; known: {', '.join(APIS)}")
    if lab.kind == "sandbox":
        from labkit.sandbox import monitoring  # noqa: PLC0415 - sandbox labs only

        if api == "prometheus":
            return _sandbox_url(lab, "prometheus", monitoring.prometheus_url(lab))
        if api == "alertmanager":
            return _sandbox_url(lab, "alertmanager", monitoring.alertmanager_url(lab))
        return "", f"the sandbox runs no {api.capitalize()} (a cluster component)"
    url = getattr(lab.observability, f"{api}_url")
    if not url:
        return "", f"params observability.{api}_url is empty: set the {api} URL to check it"
    return str(url), ""


def _sandbox_url(lab: Lab, name: str, url: str) -> tuple[str, str]:
    from labkit.sandbox import Sandbox  # noqa: PLC0415

    status = Sandbox(lab).status()
    for entry in status["components"]:
        if entry["name"] == name:
            if entry["pid"] is None:
                return "", f"the sandbox's {name} is not running ({entry['detail']})"
            return url, ""
    for entry in status.get("skipped", []):
        if entry["name"] in {name, "monitoring"}:
            return "", f"the sandbox's {name} is skipped: {entry['reason']}"
    return "", f"the sandbox's {name} is not running; run `labkit sandbox up`"


def client(lab: Lab, api: str) -> Api:
    """A client for ``api`` of this lab; ConfigError says why there is none."""
    url, why = locate(lab, api)
    if not url:
        raise ConfigError(why)
    classes: dict[str, type[Api]] = {
        "prometheus": Prometheus,
        "alertmanager": Alertmanager,
        "grafana": Grafana,
        "jaeger": Jaeger,
        "kiali": Kiali,
    }
    auth = None
    if api == "grafana" and lab.observability.grafana_password is not None:
        auth = (
            lab.observability.grafana_user,
            lab.secret(lab.observability.grafana_password).reveal(),
        )
    return classes[api](lab, url, auth=auth)


# --- tables and figures for notebooks ---------------------------------------------------------


def endpoints(lab: Lab) -> Any:
    """Where each observability API is reached for this lab, or why it is not (a DataFrame)."""
    import pandas as pd  # noqa: PLC0415

    rows = []
    for api in APIS:
        url, why = locate(lab, api)
        rows.append({"api": api, "url": url, "not reachable because": why})
    return pd.DataFrame(rows)


def series_frame(series: list[Series], name: str = "value") -> Any:
    """A long DataFrame (time, series, value) of a range query's result."""
    import pandas as pd  # noqa: PLC0415

    rows = [
        {
            "time": pd.Timestamp(t, unit="s", tz="UTC"),
            "series": ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())) or name,
            "value": value,
        }
        for s in series
        for t, value in s.points
    ]
    return pd.DataFrame(rows, columns=["time", "series", "value"])


def _unreachable(lab: Lab, api: str) -> Any:
    """A one-row DataFrame saying why ``api`` is not reachable here, or None when it is."""
    import pandas as pd  # noqa: PLC0415

    url, why = locate(lab, api)
    return None if url else pd.DataFrame([{"api": api, "skipped": why}])


def targets(lab: Lab) -> Any:
    """Prometheus' scrape targets for this lab, one row per target (a DataFrame)."""
    import pandas as pd  # noqa: PLC0415

    if (reason := _unreachable(lab, "prometheus")) is not None:
        return reason
    with client(lab, "prometheus") as prometheus:
        assert isinstance(prometheus, Prometheus)
        return pd.DataFrame(prometheus.targets()).drop(columns=["url"], errors="ignore")


def alert_rules(lab: Lab) -> Any:
    """Every alerting rule Prometheus evaluates, with its state (a DataFrame)."""
    import pandas as pd  # noqa: PLC0415

    if (reason := _unreachable(lab, "prometheus")) is not None:
        return reason
    with client(lab, "prometheus") as prometheus:
        assert isinstance(prometheus, Prometheus)
        return pd.DataFrame(prometheus.rules()).drop(columns=["query"], errors="ignore")


def red(lab: Lab, minutes: float = 10.0, step_s: float = 15.0) -> Any:
    """Shlink's rate, errors and P50/P95/P99 over the last ``minutes`` as a figure (shown and,
    under ``labkit run``, saved to the report's charts); a DataFrame saying why when no
    Prometheus is reachable."""
    from labkit.report import red_figure, show_figure  # noqa: PLC0415

    if (reason := _unreachable(lab, "prometheus")) is not None:
        return reason
    end = time.time()
    frames = {}
    with client(lab, "prometheus") as prometheus:
        assert isinstance(prometheus, Prometheus)
        for name, promql in RED_QUERIES[lab.kind].items():
            frames[name] = series_frame(
                prometheus.query_range(promql, end - minutes * 60, end, step_s), name
            )
    figure = red_figure(frames, f"Shlink RED from PromQL, last {minutes:g} min ({lab.name})")
    show_figure(figure, "phase5-shlink-red")
    return None  # shown once (a returned figure would show twice)
