"""What notebook 07 calls: the interview story (demo mode) and the runbooks, one call per cell.

Demo mode (``demo=True``) is for presenting: the story's load runs long enough
to talk over, and the runbooks only show their plans, whatever ``apply`` says,
so nothing changes mid-interview. Out of demo mode (the default, and what
``labkit run`` does) the story's load is short and the runbooks run when
``apply`` is set. Writes (a short URL, load) happen on the sandbox by default
and on any other lab only with ``apply=True``, as in notebook 06.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labkit import runbooks
from labkit.load.scenarios import ScenarioOutcome, run_scenario
from labkit.load.store import load_saved
from labkit.params import Lab
from labkit.report import show_figure

__all__ = [
    "DEMO_SECONDS",
    "architecture",
    "backup_restore",
    "break_under_load",
    "create_and_resolve",
    "diagram",
    "doctor",
    "flush_cache",
    "routing",
    "runbook_index",
    "scale",
    "short_load",
    "verdicts",
]

DEMO_SECONDS = 20.0  # the story's load in demo mode: long enough to talk over the chart
_SHORT_SECONDS = 4.0  # outside demo mode (labkit run, the test suite)


def _writes_allowed(lab: Lab, apply: bool, what: str) -> bool:
    if apply or lab.kind == "sandbox":
        return True
    print(f"lab {lab.name} is a {lab.kind}: {what} only with apply = True")
    return False


def _box(ident: str, label: str, x: float, y: float, group: str) -> dict[str, Any]:
    return {"id": ident, "label": label, "x": x, "y": y, "group": group}


def _edge(start: str, end: str, label: str = "") -> dict[str, str]:
    return {"from": start, "to": end, "label": label}


def diagram(lab: Lab) -> dict[str, Any]:
    """The lab's architecture as boxes and arrows, from its params (plain data)."""
    redis, postgres = lab.redis, lab.postgres
    nodes = ", ".join(node.name for node in lab.nodes)
    data_boxes = [
        _box(
            "redis",
            f"Redis master\n+ {len(redis.replica_ports) or redis.replicas} replicas",
            4,
            3,
            "cache",
        ),
        _box(
            "sentinels",
            f"Sentinels × {len(redis.sentinel_ports) or redis.sentinels}\n"
            f"quorum {redis.sentinel_quorum}",
            6,
            3,
            "cache",
        ),
        _box("postgres", f"PostgreSQL {lab.versions.postgresql}\nprimary", 4, 1, "database"),
        _box("standby", "standby\n(streaming replica)", 6, 1, "database"),
    ]
    data_edges = [
        _edge("service", "redis", "redirect cache"),
        _edge("sentinels", "redis", "monitor, fail over"),
        _edge("service", "postgres", "short URLs, visits"),
        _edge("postgres", "standby", "WAL streaming"),
    ]
    if lab.kind == "sandbox":
        boxes = [
            _box("client", "load generator\n(labkit, open loop)", 0, 2, "client"),
            _box(
                "service",
                f"Shlink-compatible service\nuvicorn × {lab.shlink.workers}\n{lab.shlink.base_url}",
                2,
                2,
                "app",
            ),
            _box("nodes", f"SSH nodes (namespaces)\n{nodes}", 2, 0.2, "node"),
            *data_boxes,
        ]
        edges = [_edge("client", "service", "HTTP"), *data_edges]
        title = f"Sandbox {lab.name}: the lab in miniature on one machine"
    else:
        boxes = [
            _box("client", "clients / load\n(labkit, k6)", -2, 2, "client"),
            _box("gateway", f"Istio gateway\nmTLS {lab.istio.mtls}", 0, 2, "edge"),
            _box(
                "service",
                f"Shlink × {lab.shlink.replicas}\n(Envoy sidecars)",
                2,
                2,
                "app",
            ),
            _box("observe", "Prometheus · Grafana\nJaeger · Kiali", 0, 0.2, "observe"),
            _box("nodes", f"K3s HA (embedded etcd)\n{nodes}", 2, 0.2, "node"),
            *data_boxes,
        ]
        boxes[-2]["label"] = f"PGO PostgresCluster\n{postgres.cluster_name} primary"
        edges = [
            _edge("client", "gateway", "HTTPS"),
            _edge("gateway", "service", "VirtualService"),
            *data_edges,
        ]
        title = f"Lab {lab.name}: K3s, ArgoCD, PGO, Redis Sentinel, Shlink, Istio"
    return {"title": title, "boxes": boxes, "edges": edges}


def architecture(lab: Lab) -> None:
    """Show the architecture at a glance (also a report chart, viewable offline)."""
    from labkit.report import architecture_figure  # noqa: PLC0415

    show_figure(architecture_figure(diagram(lab)), "demo-architecture")


def create_and_resolve(lab: Lab, apply: bool = False) -> Any:
    """Create a short URL through the REST API and resolve it: what a user does (a DataFrame)."""
    import pandas as pd  # noqa: PLC0415

    from labkit.shlink import ShlinkClient  # noqa: PLC0415

    if not _writes_allowed(lab, apply, "a short URL is created"):
        return None
    with ShlinkClient.from_lab(lab) as client:
        created = client.create("https://example.com/labkit-demo", tags=["labkit-demo"])
        code = str(created["shortCode"])
        response = client.resolve(code)
        visits = client.visits(code)
    return pd.DataFrame(
        [
            {"call": "POST /rest/v3/short-urls", "answer": f"shortUrl {created['shortUrl']}"},
            {
                "call": f"GET /{code}",
                "answer": f"{response.status_code} Location: {response.headers.get('location')}",
            },
            {
                "call": f"GET /rest/v3/short-urls/{code}/visits",
                "answer": f"{visits['visits']['pagination']['totalItems']} visit(s) recorded",
            },
        ]
    )


def short_load(
    lab: Lab, demo: bool = False, rate: float = 200.0, apply: bool = False
) -> ScenarioOutcome | None:
    """The mixed scenario (100 redirects : 1 create) at ``rate`` for a short while, charted."""
    from labkit.report import load_errors_figure, load_timeseries_figure  # noqa: PLC0415

    if not _writes_allowed(lab, apply, "load runs"):
        return None
    seconds = DEMO_SECONDS if demo else _SHORT_SECONDS
    outcome = run_scenario(
        lab, "mixed", rates=[rate], duration_s=seconds, warmup_s=1.0, progress=lambda m: None
    )
    entries = [{**entry, "name": "demo"} for entry in outcome.to_dicts()]
    print(outcome.steps[0].summary())
    show_figure(load_timeseries_figure(entries), "demo-load")
    show_figure(load_errors_figure(entries), "demo-load-errors")
    return outcome


def verdicts(lab: Lab, outcome: ScenarioOutcome | None) -> Any:
    """The ADR verdicts: this short load's, then notebook 06's saved ladder (a DataFrame)."""
    import pandas as pd  # noqa: PLC0415

    from labkit.report import load_verdict_figure  # noqa: PLC0415

    rows = [
        {"source": "this load", **verdict.to_dict()}
        for verdict in (outcome.verdicts if outcome else [])
    ]
    saved = load_saved(lab)
    for name, entries in saved.items():
        if name.startswith("_") or name == "baseline" or not entries:
            continue
        rows += [{"source": "notebook 06", **verdict} for verdict in entries[0].get("verdicts", [])]
    if not rows:
        print("no load measured yet: run notebook 06 (or the cell above) first")
        return None
    show_figure(load_verdict_figure(rows), "demo-verdict")
    columns = ["source", "scenario", "rate", "target", "expected", "measured", "status"]
    return pd.DataFrame(rows, columns=columns)


def break_under_load(lab: Lab, demo: bool = False, apply: bool = False) -> Any:
    """The story's failure: in demo mode the Redis master drill live; else this run's drills.

    Out of demo mode (``labkit run``) notebook 06 has already run the drills: their table
    is shown from what the run recorded, and their timelines are in the report.
    """
    from labkit.report import drills_table_html  # noqa: PLC0415
    from labkit.results import collect, run_dir  # noqa: PLC0415

    if demo:
        from labkit import drills  # noqa: PLC0415

        return drills.table(drills.run(lab, ["redis-master"], apply=apply))
    folder = run_dir()
    recorded: list[Mapping[str, Any]] = []
    if folder is not None:
        recorded = list(collect(folder).by_kind["drills"])
    if not recorded:
        print(
            "no drill recorded in this run: notebook 06 runs them (`labkit drill` runs one); "
            "demo = True runs the Redis master drill here"
        )
        return None
    from IPython.display import HTML  # noqa: PLC0415

    return HTML(drills_table_html(recorded))  # type: ignore[no-untyped-call]


def runbook_index() -> Any:
    """Each runbook: its document, the labkit call, what it measures, where it runs."""
    import pandas as pd  # noqa: PLC0415

    rows = [
        ("scale Shlink", "scale-shlink.md", "runbooks.scale", "throughput and p99 before/after",
         "sandbox workers; cluster replicas (skip here)"),
        ("back up and restore PostgreSQL", "backup-restore.md",
         "runbooks.backup_restore", "row counts and checksums, backup vs fresh restore",
         "sandbox pg_dump/pg_restore; cluster pgBackRest via PGO (skip here)"),
        ("flush the Redis cache", "flush-redis-cache.md", "runbooks.flush_cache",
         "hit ratio's drop and recovery time", "sandbox; cluster (skip here)"),
        ("change Istio routing", "change-istio-routing.md", "runbooks.routing",
         "routes read back, probe load", "cluster only (skip here)"),
        ("troubleshooting", "troubleshooting.md", "runbooks.doctor / labkit doctor",
         "evidence: status, recent errors, data plane", "sandbox; cluster Events/logs (skip here)"),
    ]  # fmt: skip
    return pd.DataFrame(
        [
            {"runbook": r[0], "doc": f"docs/runbooks/{r[1]}", "call": r[2], "measures": r[3],
             "runs on": r[4]}
            for r in rows
        ]
    )  # fmt: skip


def _apply(apply: bool, demo: bool) -> bool:
    if demo and apply:
        print("demo mode: plan only (nothing changes while presenting); demo = False to run it")
    return apply and not demo


def scale(lab: Lab, replicas: int, apply: bool = False, demo: bool = False) -> runbooks.Outcome:
    """The scale runbook; its before/after chart when it ran."""
    from labkit.report import scale_figure  # noqa: PLC0415

    outcome = runbooks.scale(lab, replicas, apply=_apply(apply, demo))
    if outcome.measured:
        show_figure(scale_figure(outcome.measured), "runbook-scale")
    return outcome


def backup_restore(lab: Lab, apply: bool = False, demo: bool = False) -> runbooks.Outcome:
    """The backup-and-restore runbook."""
    return runbooks.backup_restore(lab, apply=_apply(apply, demo))


def flush_cache(lab: Lab, apply: bool = False, demo: bool = False) -> runbooks.Outcome:
    """The cache-flush runbook; its hit-ratio chart when it ran."""
    from labkit.report import cache_flush_figure  # noqa: PLC0415

    outcome = runbooks.flush_cache(lab, apply=_apply(apply, demo))
    if outcome.series.get("hit_ratio"):
        threshold = next(
            (row["value"] for row in outcome.measured if row["figure"] == "recovery threshold"),
            None,
        )
        show_figure(cache_flush_figure(outcome.series, threshold), "runbook-cache-flush")
    return outcome


def routing(lab: Lab, apply: bool = False, demo: bool = False) -> runbooks.Outcome:
    """The Istio routing runbook (cluster only)."""
    return runbooks.routing(lab, apply=_apply(apply, demo))


def doctor(lab: Lab) -> runbooks.Report:
    """Troubleshooting evidence into the run folder (or outputs/doctor-...), shown here."""
    return runbooks.doctor(lab)
