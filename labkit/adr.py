"""The ADR from measured data (roadmap 7.1): ``adr.md`` written from a run's results.json.

Every figure in it is read from results.json (load steps with their server-side
figures and verdicts, drills, checks); none is typed here. What the file holds:
each ADR target beside what each step measured, the highest step where the targets
held and the generator was not the limit, the bottleneck seen, the drills, and for
each entry of the roadmap's Decision Log what this run's numbers say about it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from labkit.params import Lab

__all__ = ["DECISIONS", "Decision", "render", "show", "write_adr"]

Results = Mapping[str, Any]


@dataclass(frozen=True)
class Decision:
    """One row of the roadmap's Decision Log and the evidence that bears on it."""

    date: str
    decision: str
    rationale: str
    steps: tuple[str, ...] = ()  # roadmap steps whose checks bear on it ("2.3", "0.1.4")
    facets: tuple[str, ...] = ()  # measured facets (see _FACETS)


# The roadmap's Decision Log (ROADMAP.md, "Decision Log"), with what labkit measures of each.
DECISIONS: tuple[Decision, ...] = (
    Decision("2024-12-27", "Ubuntu 24.04 selected", "Latest LTS, good K8s support", ("1.1", "1.2")),
    Decision(
        "2024-12-27",
        "Shlink confirmed as app",
        "Per ADR, avoid building from scratch",
        ("3.1", "3.2"),
        ("ceilings",),
    ),
    Decision(
        "2024-12-27",
        "K3s: 3 control planes (HA)",
        "Better for SRE learning, HA experience",
        ("1.3",),
        ("node-cut",),
    ),
    Decision(
        "2024-12-27", "Network: Bridge mode, static IPs", "Simplest for homelab access", ("1.4",)
    ),
    Decision(
        "2024-12-28", "GitOps: ArgoCD with app-of-apps", "Modern deployment pattern", ("1.5",)
    ),
    Decision(
        "2024-12-28",
        "PostgreSQL: Crunchy PGO operator",
        "Production-grade, auto-management",
        ("2.1", "2.2"),
        ("postgres-latency", "postgres-primary"),
    ),
    Decision("2024-12-28", "Postgres fork used", "Control over operator version", ("2.1",)),
    Decision(
        "2024-12-30",
        "Redis: Sentinel topology",
        "Simpler than cluster, adequate HA",
        ("2.3",),
        ("redis-latency", "hit-ratio", "redis-master"),
    ),
    Decision(
        "2024-12-30",
        "External Secrets Operator",
        "Kubernetes-native secret management",
        ("0.1.6", "3.1.2"),
    ),
    Decision(
        "2024-12-30", "AWS Secrets Manager", "Cloud-native, secure, auditable", ("0.1.6", "3.1.2")
    ),
    Decision(
        "2024-12-30",
        "Istio service mesh",
        "Zero-code observability, traffic mgmt",
        ("4.1", "4.2", "4.3", "6.2.5"),
    ),
    Decision(
        "2024-12-30",
        "Istio 1.24.2 default profile",
        "Balanced features without bloat",
        ("0.1.4", "4.1"),
    ),
    Decision("2024-12-30", "kube-prometheus-stack", "Industry standard monitoring", ("5.1",)),
    Decision("2024-12-30", "Grafana on port 3000", "Avoid LoadBalancer port conflicts", ("5.1.2",)),
    Decision(
        "2024-12-30", "Kiali for mesh visualization", "Best-in-class service mesh UI", ("5.1",)
    ),
    Decision(
        "2024-12-30", "Jaeger via Kustomize (not operator)", "Operator had RBAC issues", ("5.2",)
    ),
    Decision(
        "2024-12-30",
        "All observability via GitOps",
        "Consistency with platform approach",
        ("1.5", "5.1", "5.2"),
    ),
)


def _number(value: Any, unit: str = "", digits: int = 3) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{float(value):.{digits}g}{unit}"
    return str(value)


def _percent(share: Any) -> float | None:
    return None if share is None else float(share) * 100


def _p99(entry: Mapping[str, Any], operation: str) -> float | None:
    data = entry.get("operations", {}).get(operation)
    if not data or not data.get("status_codes"):
        return None
    return float(data["latency_ms"]["corrected"]["p99"])


def _redis_server_p99(entry: Mapping[str, Any]) -> float | None:
    commands = entry.get("server", {}).get("redis", {}).get("server_latency_us", {})
    values = [float(v["p99"]) for v in commands.values() if "p99" in v]
    return max(values) if values else None


def _probe(entry: Mapping[str, Any], source: str, key: str) -> float | None:
    probe = entry.get("server", {}).get(source, {}).get(key, {})
    return float(probe["p99"]) if probe.get("count") else None


def _held(entry: Mapping[str, Any]) -> bool | None:
    """Whether every judged verdict of this step held (None: nothing judged)."""
    rate = float(entry.get("target_rps", 0))
    judged = [
        v
        for v in entry.get("verdicts", [])
        if float(v.get("rate", -1)) == rate and v.get("status") in ("pass", "fail")
    ]
    if not judged:
        return None
    return all(v["status"] == "pass" for v in judged)


def _scenarios(results: Results) -> dict[str, list[Mapping[str, Any]]]:
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for entry in results.get("load", []):
        scenario = entry.get("scenario") or entry.get("name") or "load"
        if entry.get("name") == "baseline":
            scenario = "baseline"
        grouped.setdefault(str(scenario), []).append(entry)
    return grouped


def _targets(results: Results) -> list[str]:
    seen: dict[str, str] = {}
    for entry in results.get("load", []):
        for verdict in entry.get("verdicts", []):
            seen.setdefault(str(verdict["target"]), str(verdict["expected"]))
    lines = ["| target | ADR value |", "|---|---|"]
    lines += [f"| {target} | {expected} |" for target, expected in seen.items()]
    return lines


def _steps_table(entries: list[Mapping[str, Any]]) -> list[str]:
    lines = [
        "| rate /s | achieved /s | redirect P99 ms | create P99 ms | error rate | cache hit "
        "ratio | Redis P99 µs (server) | Redis round trip P99 µs (client, context) | PostgreSQL "
        "write P99 ms | generator the limit | targets held |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in entries:
        held = _held(entry)
        lines.append(
            "| "
            + " | ".join(
                [
                    _number(entry.get("target_rps"), digits=6),
                    _number(entry.get("achieved_rps"), digits=6),
                    _number(_p99(entry, "redirect")),
                    _number(_p99(entry, "create")),
                    _number(_percent(entry.get("error_rate")), " %"),
                    _number(entry.get("server", {}).get("redis", {}).get("hit_ratio")),
                    _number(_redis_server_p99(entry)),
                    _number(_probe(entry, "redis", "probe_us")),
                    _number(_probe(entry, "postgres", "probe_ms")),
                    "yes: " + str(entry.get("generator_reason", ""))
                    if entry.get("generator_limited")
                    else "no",
                    "—" if held is None else ("yes" if held else "no"),
                ]
            )
            + " |"
        )
    return lines


def _ceiling(entries: list[Mapping[str, Any]]) -> str:
    last = entries[-1]
    good = last.get("highest_good_rps")
    how = "climbing ladder" if last.get("climbing") else "fixed ladder"
    text = f"{_number(good, ' req/s', 6)}" if good is not None else "none of the steps"
    stopped = last.get("stopped") or "the ladder ran to its last step"
    return f"{text} ({how}; {stopped})"


def _bottleneck(entries: list[Mapping[str, Any]]) -> str:
    last = entries[-1]
    processes = sorted(
        last.get("server", {}).get("processes", []),
        key=lambda row: float(row.get("cpu_cores", 0)),
        reverse=True,
    )
    generator = last.get("generator", {})
    busiest = ", ".join(
        f"{row['component']} {_number(row.get('cpu_cores'), ' cores')}" for row in processes[:3]
    )
    return (
        f"at {_number(last.get('target_rps'), '/s', 6)}: {busiest or 'no process figures'}; "
        f"the load generator {_number(sum(generator.get('cpu_cores', [])), ' cores')} "
        f"of {generator.get('cores', '?')}"
    )


def _drills_table(drills: list[Mapping[str, Any]]) -> list[str]:
    lines = [
        "| drill | error window s | first success s | P99 back under target s | failed by "
        "category | creates acknowledged / lost | failover (components' own figures) | "
        "restored |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for drill in drills:
        if drill.get("status") != "done":
            lines.append(
                f"| {drill.get('scenario')} | {drill.get('status')}: {drill.get('reason')} "
                "| | | | | | |"
            )
            continue
        measured, writes = drill.get("measured", {}), drill.get("writes", {})
        restored = drill.get("restored", {})
        lines.append(
            f"| {drill.get('scenario')} | {_number(measured.get('error_window_s'))} | "
            f"{_number(measured.get('first_success_s'))} | "
            f"{_number(measured.get('p99_recovered_s'))} | "
            f"{measured.get('failed_by_category') or 'none'} | "
            f"{writes.get('acknowledged')} / {writes.get('lost')} | "
            f"{drill.get('failover', {}).get('summary', '')} | "
            f"{'yes' if restored.get('ok') else 'no'} ({restored.get('checks', {})}) |"
        )
    return lines


def _checks_for(results: Results, steps: Iterable[str]) -> str:
    wanted = tuple(steps)
    rows = [
        row
        for row in results.get("checks", [])
        if any(row.get("id") == s or str(row.get("id", "")).startswith(s + ".") for s in wanted)
    ]
    if not rows:
        return f"no check of {', '.join(wanted)} ran in this run"
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    text = f"checks {', '.join(wanted)}: " + ", ".join(f"{n} {s}" for s, n in counts.items())
    failed = [f"{row['id']} {row.get('observed', '')}" for row in rows if row["status"] == "fail"]
    if failed:
        text += f" (failed: {'; '.join(failed)})"
    skipped = [row for row in rows if row["status"] == "skip"]
    if skipped and len(skipped) == len(rows):
        text += f" ({skipped[0].get('observed') or skipped[0].get('evidence') or 'skipped'})"
    return text


def _drill(results: Results, scenario: str) -> Mapping[str, Any] | None:
    found = [d for d in results.get("drills", []) if d.get("scenario") == scenario]
    return found[-1] if found else None


def _drill_text(results: Results, scenario: str) -> str:
    drill = _drill(results, scenario)
    if drill is None:
        return f"no {scenario} drill in this run"
    if drill.get("status") != "done":
        return f"{scenario} drill: {drill.get('status')} ({drill.get('reason')})"
    measured, writes = drill["measured"], drill["writes"]
    return (
        f"{scenario} drill under {_number(drill.get('rate_rps'), ' req/s', 6)}: "
        f"{drill.get('failover', {}).get('summary', '')}; error window "
        f"{_number(measured.get('error_window_s'), ' s')}, {measured.get('failed')} failed "
        f"requests, {writes.get('lost')} of {writes.get('acknowledged')} acknowledged creates "
        f"lost; restored: {'yes' if drill.get('restored', {}).get('ok') else 'no'}"
    )


def _facet_ceilings(results: Results) -> str:
    grouped = {k: v for k, v in _scenarios(results).items() if k != "baseline"}
    if not grouped:
        return "no load ran in this run"
    parts = [f"{name} {_ceiling(entries).split(' (')[0]}" for name, entries in grouped.items()]
    return "highest step with targets held: " + "; ".join(parts)


def _facet_latency(results: Results, label: str, value: Callable[[Mapping[str, Any]], Any]) -> str:
    points = [
        f"{entry.get('scenario')}@{_number(entry.get('target_rps'), '', 6)} {_number(value(entry))}"
        for entry in results.get("load", [])
        if value(entry) is not None and entry.get("name") != "baseline"
    ]
    return f"{label}: " + (", ".join(points) if points else "not measured in this run")


_FACETS: dict[str, Callable[[Results], str]] = {
    "ceilings": _facet_ceilings,
    "redis-latency": lambda r: _facet_latency(
        r, "Redis P99 µs (INFO latencystats)", _redis_server_p99
    ),
    "postgres-latency": lambda r: _facet_latency(
        r, "PostgreSQL write P99 ms (probe)", lambda e: _probe(e, "postgres", "probe_ms")
    ),
    "hit-ratio": lambda r: _facet_latency(
        r, "cache hit ratio", lambda e: e.get("server", {}).get("redis", {}).get("hit_ratio")
    ),
    "redis-master": lambda r: _drill_text(r, "redis-master"),
    "postgres-primary": lambda r: _drill_text(r, "postgres-primary"),
    "node-cut": lambda r: _drill_text(r, "node-cut"),
}


def render(results: Results, run: Mapping[str, Any] | None = None) -> str:
    """adr.md's text from a results.json document (and run.json, for the header)."""
    run = run or {}
    lines = [
        f"# Architecture Decision Record, measured: lab {results.get('lab')}",
        "",
        f"Generated by labkit from `results.json` of run {results.get('run_id')} "
        f"({results.get('generated_at')}); lab kind {run.get('lab_kind', '?')}. Every figure "
        "below is read from that file; none is typed by hand.",
        "",
        "## ADR targets",
        "",
        *_targets(results),
        "",
        "## Measured at each step",
        "",
    ]
    grouped = _scenarios(results)
    if not grouped:
        lines += ["No load ran in this run.", ""]
    for name, entries in grouped.items():
        lines += [f"### {name}", "", *_steps_table(entries), ""]
        if name != "baseline":
            lines += [
                f"- highest step where the targets held and the generator was not the limit: "
                f"{_ceiling(entries)}",
                f"- bottleneck seen: {_bottleneck(entries)}",
                "",
            ]
    lines += ["## Drills", ""]
    drills = list(results.get("drills", []))
    lines += _drills_table(drills) if drills else ["No drills in this run."]
    lines += [
        "",
        "## The Decision Log against the numbers",
        "",
        "| date | decision | rationale | what this run's numbers say |",
        "|---|---|---|---|",
    ]
    for decision in DECISIONS:
        said = [_checks_for(results, decision.steps)] if decision.steps else []
        said += [_FACETS[facet](results) for facet in decision.facets]
        lines.append(
            f"| {decision.date} | {decision.decision} | {decision.rationale} | "
            f"{'; '.join(said).replace('|', '/')} |"
        )
    return "\n".join(lines) + "\n"


def write_adr(run_dir: Path) -> Path | None:
    """Write ``adr.md`` into a run folder from its results.json; None when it has no load."""
    results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    if not results.get("load"):
        return None
    run_path = run_dir / "run.json"
    run = json.loads(run_path.read_text(encoding="utf-8")) if run_path.exists() else {}
    target = run_dir / "adr.md"
    from labkit.secrets import redact  # noqa: PLC0415

    target.write_text(redact(render(results, run)), encoding="utf-8")
    return target


def show(lab: Lab) -> Any:
    """The ADR from what this run has recorded so far (notebook 07), rendered as Markdown.

    Under ``labkit run`` the notebooks before this one have recorded their checks, load
    and drills; ``adr.md`` itself is written from results.json when the run ends.
    """
    from IPython.display import Markdown  # noqa: PLC0415

    from labkit.results import collect, run_dir  # noqa: PLC0415
    from labkit.secrets import redact  # noqa: PLC0415

    folder = run_dir()
    if folder is None:
        print(
            "not inside `labkit run`: no records to build the ADR from; every run folder with "
            "load results gets adr.md (see outputs/<run-id>/adr.md)"
        )
        return None
    records = collect(folder)
    results = {
        "run_id": folder.name,
        "lab": lab.name,
        "generated_at": "so far in this run",
        **records.by_kind,
    }
    if not results.get("load"):
        print("no load results recorded in this run yet (notebook 06 records them)")
        return None
    return Markdown(redact(render(results)))  # type: ignore[no-untyped-call]
