"""Phase 5 checks: Prometheus and Grafana (5.1), distributed tracing (5.2).

5.1.1, 5.1.4-5.1.6 need only a Prometheus (and an Alertmanager) of the lab's: the sandbox
runs its own (``labkit.sandbox.monitoring``), a cluster names its URLs in
``observability.*_url``. Grafana (5.1.2, 5.1.3), Jaeger and Kiali (5.2.x) are cluster
components: the sandbox skips them. Every check says which API it asked and what it saw; an
API this lab does not reach is a skip with the reason, an API that does not answer an error.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from labkit.checks.base import Context, Outcome, implements
from labkit.errors import ConfigError
from labkit.manifests.dashboards import dashboard_uids
from labkit.manifests.rules import alert_names
from labkit.observe import (
    RED_QUERIES,
    Alertmanager,
    Api,
    Grafana,
    Jaeger,
    Kiali,
    Prometheus,
    client,
    locate,
    spans,
)

__all__: list[str] = []

TRACE_WAIT_S = 30.0  # Jaeger shows a trace once the collector has flushed its spans
RED_WAIT_S = 60.0  # a rate needs two scrapes of the requests this check just made
_SANDBOX_JOBS = ("shlink", "redis", "postgres")

ApiT = TypeVar("ApiT", bound=Api)


def _api(context: Context, name: str, kind: type[ApiT]) -> ApiT | Outcome:
    """The lab's client for ``name`` (shared by the run), or a skip saying why there is none."""
    url, why = locate(context.lab, name)
    if not url:
        return Outcome.skip(why)
    found = context.resource(f"observe.{name}", lambda: client(context.lab, name), Api.close)
    assert isinstance(found, kind)
    return found


# --- 5.1: Prometheus ----------------------------------------------------------------------


@implements("5.1.1")
def targets_up(context: Context) -> Outcome | list[Outcome]:
    """Every scrape target of every job is up; on the sandbox Shlink, Redis and PostgreSQL too."""
    prometheus = _api(context, "prometheus", Prometheus)
    if isinstance(prometheus, Outcome):
        return prometheus
    targets = prometheus.targets()
    jobs: dict[str, list[dict[str, Any]]] = {}
    for target in targets:
        jobs.setdefault(target["job"], []).append(target)
    wanted = _SANDBOX_JOBS if context.lab.kind == "sandbox" else ()
    outcomes = []
    for job in sorted(set(jobs) | set(wanted)):
        found = jobs.get(job, [])
        down = [t for t in found if t["health"] != "up"]
        observed = f"{len(found) - len(down)}/{len(found)} up" if found else "no target"
        observed += "".join(f"; {t['instance']} {t['health']}: {t['last_error']}" for t in down)
        outcomes.append(
            Outcome.judge(
                bool(found) and not down,
                "every target of the job up",
                observed,
                f"GET {prometheus.base_url}/api/v1/targets: "
                + ", ".join(f"{t['instance']}={t['health']}" for t in found),
                subject=job,
            )
        )
    if not outcomes:
        return Outcome.judge(False, "scrape targets", "Prometheus has no active target")
    return outcomes


def _send_traffic(context: Context, count: int = 20) -> str:
    """A few requests to Shlink's health endpoint so a rate exists now; returns what was sent."""
    url = context.lab.shlink.base_url.rstrip("/") + "/rest/health"
    host = httpx.URL(url).host
    context.lab.require_allowed(host)
    statuses: dict[int, int] = {}
    with httpx.Client(timeout=5.0, trust_env=False) as http:
        for _ in range(count):
            try:
                status = http.get(url).status_code
            except httpx.HTTPError:
                status = 0
            statuses[status] = statuses.get(status, 0) + 1
    return f"sent {count} x GET {url}: {statuses}"


def _scalar(prometheus: Prometheus, promql: str) -> float | None:
    samples = prometheus.query(promql)
    if not samples:
        return None
    value = sum(sample.value for sample in samples)
    return None if math.isnan(value) else value


@implements("5.1.4")
def shlink_red(context: Context) -> Outcome:
    """Rate, error rate and P50/P95/P99 latency of Shlink come back from PromQL."""
    prometheus = _api(context, "prometheus", Prometheus)
    if isinstance(prometheus, Outcome):
        return prometheus
    queries = RED_QUERIES[context.lab.kind]
    sent = _send_traffic(context)
    deadline = time.monotonic() + RED_WAIT_S
    while True:
        values = {name: _scalar(prometheus, promql) for name, promql in queries.items()}
        complete = all(value is not None for value in values.values())
        if (complete and (values["rate"] or 0) > 0) or time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    shown = {k: "no data" if v is None else f"{v:.3g}" for k, v in values.items()}
    return Outcome.judge(
        complete and (values["rate"] or 0) > 0,
        "request rate > 0, an error rate, and P50/P95/P99 latency",
        f"rate {shown['rate']}/s, errors {shown['errors']}/s, "
        f"p50/p95/p99 {shown['p50']}/{shown['p95']}/{shown['p99']} ms",
        f"{sent}\n" + "\n".join(f"{name}: {promql}" for name, promql in queries.items()),
    )


@implements("5.1.5")
def store_metrics(context: Context) -> Outcome | list[Outcome]:
    """Redis: every instance up and one master; PostgreSQL: servers reporting, one primary."""
    prometheus = _api(context, "prometheus", Prometheus)
    if isinstance(prometheus, Outcome):
        return prometheus
    redis_ns, postgres_ns = context.lab.redis.namespace, context.lab.postgres.namespace
    up = prometheus.query(f'max by (instance) (redis_up{{namespace="{redis_ns}"}})')
    # One sample per instance (a restarted Redis has a new run_id, hence a new series).
    masters = prometheus.query(
        f'max by (instance) (redis_instance_info{{namespace="{redis_ns}", role="master"}})'
    )
    hits = prometheus.query(f'redis_keyspace_hits_total{{namespace="{redis_ns}"}}')
    alive = [s for s in up if s.value == 1]
    redis_outcome = Outcome.judge(
        bool(up) and len(alive) == len(up) and len(masters) == 1 and bool(hits),
        "every Redis instance up (redis_up 1), one master, keyspace counters present",
        f"{len(alive)}/{len(up)} up, {len(masters)} master(s) "
        f"({', '.join(s.labels.get('instance', '?') for s in masters)}), "
        f"keyspace hits series: {len(hits)}",
        "\n".join(f"redis_up {s.labels.get('instance')}: {s.value:g}" for s in up),
        subject="redis",
    )
    recovery = prometheus.query(
        f'max by (instance) (ccp_is_in_recovery_status{{namespace="{postgres_ns}"}})'
    )
    primaries = [s for s in recovery if s.value == 2]
    postgres_outcome = Outcome.judge(
        bool(recovery) and len(primaries) == 1,
        "PostgreSQL servers reporting (ccp_is_in_recovery_status), exactly one primary",
        f"{len(recovery)} server(s), {len(primaries)} primary",
        "\n".join(
            f"{s.labels.get('instance')}: {'primary' if s.value == 2 else 'in recovery'}"
            for s in recovery
        ),
        subject="postgres",
    )
    return [redis_outcome, postgres_outcome]


@implements("5.1.6")
def alerts_configured(context: Context) -> Outcome:
    """Every alert of manifests/monitoring is loaded and healthy, and reaches an Alertmanager."""
    prometheus = _api(context, "prometheus", Prometheus)
    if isinstance(prometheus, Outcome):
        return prometheus
    try:
        wanted = alert_names()
    except ConfigError as exc:
        return Outcome.skip(f"no alert rules to compare with: {exc}")
    rules = {rule["alert"]: rule for rule in prometheus.rules()}
    missing = [name for name in wanted if name not in rules]
    broken = [
        f"{n}: {rules[n]['last_error']}" for n in wanted if rules.get(n, {}).get("health") == "err"
    ]
    managers = prometheus.alertmanagers()
    states = ", ".join(f"{name} {rules[name]['state']}" for name in wanted if name in rules)
    held = ""
    alertmanager = _api(context, "alertmanager", Alertmanager)
    if not isinstance(alertmanager, Outcome):
        held = f"; Alertmanager holds {len(alertmanager.alerts())} alert(s)"
    observed = f"{len(wanted) - len(missing)}/{len(wanted)} loaded; states: {states or 'none'}"
    if missing:
        observed += f"; missing: {', '.join(missing)}"
    if broken:
        observed += f"; evaluation errors: {'; '.join(broken)}"
    observed += f"; alertmanagers: {', '.join(managers) or 'none'}{held}"
    return Outcome.judge(
        not missing and not broken and bool(managers),
        f"the {len(wanted)} alerts of manifests/monitoring loaded, evaluating, sent to an "
        "Alertmanager",
        observed,
        f"GET {prometheus.base_url}/api/v1/rules?type=alert, /api/v1/alertmanagers",
    )


# --- 5.1: Grafana --------------------------------------------------------------------------


@implements("5.1.2")
def grafana_accessible(context: Context) -> list[Outcome] | Outcome:
    """Grafana answers with its database ok, and its Prometheus data source is healthy."""
    grafana = _api(context, "grafana", Grafana)
    if isinstance(grafana, Outcome):
        return grafana
    health = grafana.health()
    outcomes = [
        Outcome.judge(
            health.get("database") == "ok",
            "GET /api/health: database ok",
            f"database {health.get('database')}, version {health.get('version', '?')}",
            f"GET {grafana.base_url}/api/health -> {health}",
            subject="grafana",
        )
    ]
    sources = [s for s in grafana.datasources() if s["type"] == "prometheus"]
    if not sources:
        outcomes.append(
            Outcome.judge(False, "a Prometheus data source", "none", subject="datasource")
        )
    for source in sources:
        verdict = grafana.datasource_health(str(source["uid"]))
        outcomes.append(
            Outcome.judge(
                verdict.get("status") == "OK",
                "data source health OK",
                f"{verdict.get('status')}: {verdict.get('message', '')}",
                f"GET {grafana.base_url}/api/datasources/uid/{source['uid']}/health",
                subject=f"datasource {source['name']}",
            )
        )
    return outcomes


@implements("5.1.3")
def dashboards_show_traffic(context: Context) -> list[Outcome] | Outcome:
    """The lab's dashboards (manifests/monitoring) are in Grafana and the mesh carries traffic."""
    grafana = _api(context, "grafana", Grafana)
    if isinstance(grafana, Outcome):
        return grafana
    wanted = dashboard_uids()
    found = {entry["uid"]: entry["title"] for entry in grafana.dashboards()}
    missing = [uid for uid in wanted if uid not in found]
    outcomes = [
        Outcome.judge(
            not missing,
            f"dashboards {', '.join(wanted)} provisioned",
            f"found {', '.join(f'{u} ({found[u]})' for u in wanted if u in found) or 'none'}"
            + (f"; missing {', '.join(missing)}" if missing else ""),
            f"GET {grafana.base_url}/api/search?type=dash-db",
            subject="dashboards",
        )
    ]
    prometheus = _api(context, "prometheus", Prometheus)
    if isinstance(prometheus, Outcome):
        outcomes.append(Outcome.skip(prometheus.observed, subject="traffic"))
        return outcomes
    promql = RED_QUERIES["homelab"]["rate"]
    rate = _scalar(prometheus, promql)
    outcomes.append(
        Outcome.judge(
            rate is not None and rate > 0,
            "Istio's request rate for Shlink (the dashboards' data) > 0",
            "no data" if rate is None else f"{rate:.3g} requests/s",
            promql,
            subject="traffic",
        )
    )
    return outcomes


# --- 5.2: tracing ----------------------------------------------------------------------------


def _shlink_services(jaeger: Jaeger) -> list[str]:
    return [name for name in jaeger.services() if "shlink" in name]


@implements("5.2.1")
def jaeger_accessible(context: Context) -> Outcome:
    """Jaeger's query API answers and knows a Shlink service."""
    jaeger = _api(context, "jaeger", Jaeger)
    if isinstance(jaeger, Outcome):
        return jaeger
    services = jaeger.services()
    shlink = [name for name in services if "shlink" in name]
    return Outcome.judge(
        bool(shlink),
        "GET /api/services answers and lists a Shlink service",
        f"{len(services)} service(s): {', '.join(services) or 'none'}",
        f"GET {jaeger.base_url}/api/services",
    )


def _traced_request(context: Context) -> dict[str, Any]:
    """Send one request to Shlink with a traceparent labkit chose; then wait for its trace."""

    def make() -> dict[str, Any]:
        jaeger = _api(context, "jaeger", Jaeger)
        assert not isinstance(jaeger, Outcome)
        trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
        url = context.lab.shlink.base_url.rstrip("/") + "/rest/health"
        context.lab.require_allowed(httpx.URL(url).host)
        header = f"00-{trace_id}-{span_id}-01"
        with httpx.Client(timeout=5.0, trust_env=False) as http:
            status = http.get(url, headers={"traceparent": header}).status_code
        deadline = time.monotonic() + TRACE_WAIT_S
        trace = jaeger.trace(trace_id)
        while trace is None and time.monotonic() < deadline:
            time.sleep(1.0)
            trace = jaeger.trace(trace_id)
        sent = f"GET {url} traceparent {header} -> {status}"
        return {"trace_id": trace_id, "sent": sent, "trace": trace}

    found: dict[str, Any] = context.resource("observe.traced-request", make)
    return found


@implements("5.2.2")
def trace_for_request(context: Context) -> Outcome:
    """A request labkit sent with its own trace id shows up in Jaeger with a Shlink span."""
    jaeger = _api(context, "jaeger", Jaeger)
    if isinstance(jaeger, Outcome):
        return jaeger
    traced = _traced_request(context)
    rows = spans(traced["trace"]) if traced["trace"] else []
    services = sorted({row["service"] for row in rows})
    return Outcome.judge(
        any("shlink" in name for name in services),
        f"trace {traced['trace_id']} in Jaeger within {TRACE_WAIT_S:.0f}s with a Shlink span",
        f"{len(rows)} span(s) from {', '.join(services)}"
        if traced["trace"]
        else "Jaeger does not hold the trace",
        f"{traced['sent']}; GET {jaeger.base_url}/api/traces/{traced['trace_id']}",
    )


@implements("5.2.3")
def request_path(context: Context) -> Outcome:
    """Kiali's graph has the edges ingress gateway -> Shlink -> Redis and -> PostgreSQL."""
    kiali = _api(context, "kiali", Kiali)
    if isinstance(kiali, Outcome):
        return kiali
    lab = context.lab
    namespaces = ["istio-system", lab.shlink.namespace, lab.redis.namespace, lab.postgres.namespace]
    edges = kiali.edges(namespaces)
    wanted: dict[str, Callable[[str, str], bool]] = {
        "ingress -> shlink": lambda s, t: "ingressgateway" in s and t.startswith("shlink"),
        "shlink -> redis": lambda s, t: s.startswith("shlink") and "redis" in t,
        "shlink -> postgres": lambda s, t: (
            s.startswith("shlink") and (lab.postgres.cluster_name in t or "postgres" in t)
        ),
    }
    present = {name: any(test(s, t) for s, t in edges) for name, test in wanted.items()}
    return Outcome.judge(
        all(present.values()),
        ", ".join(wanted),
        "; ".join(f"{name}: {'yes' if ok else 'MISSING'}" for name, ok in present.items()),
        f"GET {kiali.base_url}/kiali/api/namespaces/graph?namespaces={','.join(namespaces)}: "
        + ", ".join(f"{s}->{t}" for s, t in edges),
    )


@implements("5.2.4")
def latency_per_service(context: Context) -> Outcome:
    """The traced request's time splits across at least two services (gateway/sidecar, Shlink)."""
    jaeger = _api(context, "jaeger", Jaeger)
    if isinstance(jaeger, Outcome):
        return jaeger
    traced = _traced_request(context)
    if not traced["trace"]:
        return Outcome.judge(False, "the traced request's spans", "Jaeger does not hold it")
    per_service: dict[str, float] = {}
    for row in spans(traced["trace"]):
        per_service[row["service"]] = per_service.get(row["service"], 0.0) + row["duration_ms"]
    return Outcome.judge(
        len(per_service) >= 2,
        "spans from two or more services, each with its duration",
        ", ".join(f"{name} {ms:.2f} ms" for name, ms in sorted(per_service.items())),
        traced["sent"],
    )


_STORE_SYSTEMS = {"redis", "postgresql"}


@implements("5.2.5")
def slow_queries_visible(context: Context) -> Outcome:
    """Recent Shlink traces hold Redis/PostgreSQL spans: their slowest are named with timing."""
    jaeger = _api(context, "jaeger", Jaeger)
    if isinstance(jaeger, Outcome):
        return jaeger
    services = _shlink_services(jaeger)
    if not services:
        return Outcome.judge(False, "a Shlink service in Jaeger", "none")
    rows = [
        row
        for service in services
        for trace in jaeger.traces(service, limit=50)
        for row in spans(trace)
        if str(row["tags"].get("db.system", "")).lower() in _STORE_SYSTEMS
    ]
    slowest = sorted(rows, key=lambda row: -row["duration_ms"])[:3]
    return Outcome.judge(
        bool(rows),
        "Redis/PostgreSQL spans (db.system) in Shlink's traces, so slow ones can be found",
        f"{len(rows)} store span(s); slowest: "
        + (
            "; ".join(
                f"{r['tags'].get('db.system')} {r['operation']} {r['duration_ms']:.2f} ms "
                f"{str(r['tags'].get('db.statement', ''))[:60]}"
                for r in slowest
            )
            or "none"
        ),
        f"GET {jaeger.base_url}/api/traces?service={','.join(services)}&limit=50",
    )
