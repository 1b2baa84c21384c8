"""Phase 6 checks: load testing set-up (6.1) and performance measurement (6.2).

6.1.1 runs the engine briefly against the lab's health endpoint. The others
judge what the scenarios last measured (notebook 06, or ``labkit bench
--params FILE --scenario S``), saved per lab by ``labkit.load.store``: a check
never hides minutes of load. No saved result is a fail that says how to get one.
6.2.5 (Istio overhead) lives with the mesh checks in phase4.py; it skips on the sandbox.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from labkit.checks.base import Context, Outcome, implements
from labkit.load import Fixed, Schedule, resolve_target, run_load
from labkit.load.scenarios import SCENARIOS
from labkit.load.store import load_saved, store_dir
from labkit.load.verdict import KEPT_SHARE, MAX_ERROR_RATE, hit_ratio

__all__: list[str] = []

_HOW = "run notebook 06 or `labkit bench --params FILE --scenario {scenario}`"
_ADR_TARGETS = (
    "redirect P99 (cache hit)",
    "cache-hit ratio",
    "Redis latency P99 (server, INFO latencystats)",
    "PostgreSQL write P99 (probe)",
)
_ROADMAP_LADDER = [1000, 5000, 10000]  # "Can generate sustained load (1K, 5K, 10K RPS)"


def _saved(context: Context) -> dict[str, list[dict[str, Any]]]:
    saved: dict[str, list[dict[str, Any]]] = context.resource(
        "load-saved", lambda: load_saved(context.lab)
    )
    return saved


def _missing(scenario: str, context: Context) -> Outcome:
    stale = [
        entry["reason"]
        for entry in _saved(context).get("_stale", [])
        if Path(str(entry["file"])).stem == scenario
    ]
    why = f"stale: {stale[0]}" if stale else f"none in {store_dir(context.lab)}"
    return Outcome.judge(
        False,
        f"saved results of {scenario}",
        f"{why}; {_HOW.format(scenario=scenario)}",
        subject=scenario,
    )


@implements("6.1.1")
def tool_works(context: Context) -> Outcome:
    """The engine sends 2 s of open-loop load to /rest/health and every request is answered."""
    lab = context.lab
    target = resolve_target(lab.shlink.base_url.rstrip("/") + "/rest/health", lab.allow_list)
    result = run_load(
        target, Fixed(target.host_header, target.path), Schedule.constant(50, 2), connections=4
    )
    data = result.to_dict()
    ok = data["responses"] == data["requests"] == 100 and data["status_codes"] == {"200": 100}
    return Outcome.judge(
        ok,
        "100 of 100 requests answered 200 at 50/s",
        f"{data['responses']} of {data['requests']} answered, status {data['status_codes']}, "
        f"errors {data['errors']}, corrected p99 {data['latency_ms']['corrected']['p99']} ms, "
        f"loop {data['generator']['loop']}",
        result.summary(),
    )


@implements("6.1.2")
def scenarios_exist(context: Context) -> Outcome:
    """The four roadmap scenarios are defined."""
    wanted = {"create", "redirect-hit", "redirect-miss", "mixed"}
    return Outcome.judge(
        wanted <= set(SCENARIOS),
        ", ".join(sorted(wanted)),
        ", ".join(SCENARIOS),
        "\n".join(f"{name}: {text}" for name, text in SCENARIOS.items()),
    )


@implements("6.1.3")
def baseline_recorded(context: Context) -> Outcome:
    """A low-rate redirect baseline was measured and saved."""
    entries = _saved(context).get("baseline")
    if not entries:
        return Outcome.judge(
            False, "a saved baseline", f"none in {store_dir(context.lab)}; run notebook 06"
        )
    entry = entries[0]
    latency = entry["latency_ms"]["corrected"]
    return Outcome.judge(
        entry["responses"] > 0 and entry["error_rate"] == 0,
        "a baseline with answers and no errors",
        f"{entry['target_rps']}/s: p50 {latency['p50']} ms, p99 {latency['p99']} ms, "
        f"error rate {entry['error_rate']:.2%} ({entry['started_at']})",
    )


@implements("6.1.4")
def sustained_load(context: Context) -> list[Outcome]:
    """For each rate of the ladder, some scenario kept it with the generator not the limit."""
    saved = _saved(context)
    steps = [entry for name in SCENARIOS for entry in saved.get(name, [])]
    outcomes = []
    ladder = list(context.lab.targets.rate_steps)
    # Say so when this lab's ladder is not the roadmap's: a pass then proves only its own rates.
    whose = "" if ladder == _ROADMAP_LADDER else " (this lab's ladder, not the roadmap's 1K/5K/10K)"
    if context.lab.targets.ladder is not None and steps:
        # A climbing ladder runs each scenario up to its knee, the step where the lab stopped
        # holding its targets: judge the rates below the knees (the ceilings and under), or,
        # when every scenario's knee was its first step, the rates it reached.
        below = [entry for name in SCENARIOS for entry in _below_knee(saved.get(name, []))]
        ladder = sorted({round(float(entry["target_rps"])) for entry in below or steps})
        whose = " (the climbing ladder's steps below each scenario's knee, not 1K/5K/10K)"
    for rate in ladder:
        at_rate = [entry for entry in steps if round(entry["target_rps"]) == rate]
        kept = [
            entry
            for entry in at_rate
            if entry["achieved_rps"] >= KEPT_SHARE * rate
            and entry["error_rate"] < MAX_ERROR_RATE
            and not entry["generator_limited"]
        ]
        seen = "; ".join(
            f"{e['scenario']}: {e['achieved_rps']:.0f}/s, errors {e['error_rate']:.2%}"
            + _limit(e, rate)
            for e in at_rate
        )
        outcomes.append(
            Outcome.judge(
                bool(kept),
                f">= {KEPT_SHARE:.0%} of {rate}/s answered with errors < {MAX_ERROR_RATE:.0%}, "
                f"generator not the limit{whose}",
                seen or f"no step at {rate}/s saved; {_HOW.format(scenario='redirect-hit')}",
                subject=f"{rate}/s",
            )
        )
    return outcomes


def _below_knee(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A scenario's steps without its knee (the last step, when the ladder stopped there)."""
    if entries and str(entries[-1].get("stopped", "")).startswith("the knee"):
        return entries[:-1]
    return entries


def _limit(entry: dict[str, Any], rate: int) -> str:
    if entry["generator_limited"]:
        return " (generator-limited)"
    if entry["achieved_rps"] < KEPT_SHARE * rate:
        return " (the lab's limit; the generator kept up)"
    return ""


@implements("6.2.1")
def metrics_collected(context: Context) -> list[Outcome]:
    """Each scenario has latency percentiles, throughput, error rate and server figures."""
    saved = _saved(context)
    outcomes = []
    for scenario in SCENARIOS:
        entries = saved.get(scenario)
        if not entries:
            outcomes.append(_missing(scenario, context))
            continue
        complete = all(entry["responses"] > 0 and _resources(entry)[0] for entry in entries)
        seen = "; ".join(
            f"{e['target_rps']:.0f}/s: {e['achieved_rps']:.0f}/s achieved, p50/p95/p99 "
            f"{e['latency_ms']['corrected']['p50']}/{e['latency_ms']['corrected']['p95']}/"
            f"{e['latency_ms']['corrected']['p99']} ms, errors {e['error_rate']:.2%}"
            + ("" if e["responses"] > 0 else ", no answers")
            + (
                f", CPU/memory from {_resources(e)[1]}"
                if _resources(e)[0]
                else ", no CPU/memory figures"
            )
            for e in entries
        )
        outcomes.append(
            Outcome.judge(
                complete,
                "latency, throughput, error rate and CPU/memory per component",
                seen,
                subject=scenario,
            )
        )
    return outcomes


def _resources(entry: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """CPU/memory rows of a step: PromQL's when the lab's Prometheus gave them, else processes."""
    server = entry.get("server", {})
    promql = server.get("prometheus", {}).get("components") or []
    if promql:
        return promql, "PromQL"
    return server.get("processes", []), "the sandbox's processes"


def _verdicts(context: Context) -> list[dict[str, Any]]:
    saved = _saved(context)
    rows: list[dict[str, Any]] = []
    for scenario in SCENARIOS:
        entries = saved.get(scenario) or []
        if entries:
            rows += entries[0].get("verdicts", [])
    return rows


@implements("6.2.2")
def targets_met_or_gaps(context: Context) -> Outcome:
    """Every ADR target has a measured verdict: met, or a gap written down with its number."""
    rows = _verdicts(context)
    # A figure the generator set ("n/a") judged nothing: only pass or fail count as measured.
    measured = {row["target"] for row in rows if row["status"] in {"pass", "fail"}}
    unmeasured = [target for target in _ADR_TARGETS if target not in measured]
    gaps = [
        f"{row['scenario']}@{row['rate']:.0f}: {row['target']} {row['measured']} "
        f"(target {row['expected']})"
        for row in rows
        if row["status"] == "fail"
    ]
    observed = "every ADR target measured"
    if unmeasured:
        unjudged = sorted({row["target"] for row in rows if row["status"].startswith("n/a")})
        observed = f"not measured: {', '.join(unmeasured)}"
        if unjudged:
            observed += f" (not judged, generator-limited or missing: {', '.join(unjudged)})"
    observed += f"; gaps: {'; '.join(gaps) if gaps else 'none, all met'}"
    return Outcome.judge(not unmeasured, "each ADR target measured (met or gap)", observed)


@implements("6.2.3")
def cache_hit_ratio(context: Context) -> Outcome:
    """The redirect cache's hit ratio under the cache-hit scenario is above the target."""
    entries = _saved(context).get("redirect-hit")
    if not entries:
        return _missing("redirect-hit", context)
    wanted = context.lab.targets.cache_hit_ratio
    ratios = [hit_ratio(entry.get("server", {})) for entry in entries]
    known = [ratio for ratio, _, _ in ratios if ratio is not None]
    return Outcome.judge(
        len(known) == len(ratios) and min(known) > wanted,  # an unmeasured step is no pass
        f"> {wanted:.0%} at every step",
        ", ".join(
            f"{e['target_rps']:.0f}/s: {r if r is not None else 'not measured'}"
            + (f" ({source.split(':')[0]}{'; ' + cross if cross else ''})" if r is not None else "")
            for e, (r, source, cross) in zip(entries, ratios, strict=True)
        ),
    )


@implements("6.2.4")
def bottlenecks(context: Context) -> list[Outcome]:
    """At each scenario's highest step: the busiest component, and whether the client limited."""
    saved = _saved(context)
    outcomes = []
    for scenario in SCENARIOS:
        entries = saved.get(scenario)
        if not entries:
            outcomes.append(_missing(scenario, context))
            continue
        top = max(entries, key=lambda entry: entry["target_rps"])
        processes, source = _resources(top)
        busiest = ", ".join(
            f"{row['component']} {row['cpu_cores']:.2f} cores / {row['memory_mb']} MB"
            for row in processes[:3]
        )
        if processes:
            busiest = f"from {source}: {busiest}"
        cross = top.get("server", {}).get("processes", [])
        if source == "PromQL" and cross:  # the sandbox's process figures as the cross-check
            busiest += "; processes: " + ", ".join(
                f"{row['component']} {row['cpu_cores']:.2f} cores" for row in cross[:3]
            )
        client = top["generator"]["cpu_cores"]
        limited = (
            f"; generator-limited: {top['generator_reason']}" if top["generator_limited"] else ""
        )
        outcomes.append(
            Outcome.judge(
                bool(processes),
                "CPU and memory per component at the highest step",
                f"{top['target_rps']:.0f}/s: {busiest or 'no process figures'}; "
                f"load generator {client} cores on {top['generator']['cores']} "
                f"(load average {top['generator']['load_avg_1m']}){limited}",
                subject=scenario,
            )
        )
    return outcomes
