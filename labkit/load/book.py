"""What notebook 06 calls: plan, baseline, the scenario ladders, verdict table, charts.

One call per cell. Load is measurement, not configuration: on the sandbox it
runs by default (it writes only labkit-tagged probe short URLs and their
visits into the sandbox's own database); on any other lab it runs only with
``apply=True``, and otherwise shows the plan.
"""

from __future__ import annotations

from typing import Any

from labkit.load.scenarios import SCENARIOS, ScenarioOutcome, run_scenario
from labkit.load.store import save
from labkit.params import Lab
from labkit.results import record

__all__ = ["baseline", "charts", "plan", "run", "verdicts"]

BASELINE_RATE = 10.0


def _may_load(lab: Lab, apply: bool) -> bool:
    if apply or lab.kind == "sandbox":
        return True
    print(f"lab {lab.name} is a {lab.kind}: load runs only with apply = True (plan shown above)")
    return False


def plan(
    lab: Lab,
    scenarios: list[str] | None = None,
    rates: list[float] | None = None,
    duration_s: float | None = None,
    warmup_s: float | None = None,
) -> Any:
    """The runs that ``run`` would make: scenario, rate, durations, requests (a DataFrame)."""
    import pandas as pd  # noqa: PLC0415

    ladder = lab.targets.ladder if rates is None else None
    rates = rates or (ladder.rates() if ladder else [float(r) for r in lab.targets.rate_steps])
    duration = duration_s if duration_s is not None else lab.targets.step_duration_s
    warmup = warmup_s if warmup_s is not None else lab.targets.warmup_s
    rows = [
        {
            "scenario": name,
            "what": SCENARIOS[name],
            "rate /s": rate,
            "warm-up s": warmup,
            "measured s": duration,
            "requests": round(rate * (warmup + duration)),
            "target": lab.shlink.base_url,
            "ladder": "climbs until targets break" if ladder else "fixed",
        }
        for name in scenarios or list(SCENARIOS)
        for rate in rates
    ]
    return pd.DataFrame(rows)


def baseline(
    lab: Lab, duration_s: float = 5.0, warmup_s: float = 1.0, apply: bool = False
) -> ScenarioOutcome | None:
    """Redirects (cache hit) at a trickle: the lab's latency with no load to speak of (6.1.3)."""
    if not _may_load(lab, apply):
        return None
    outcome = run_scenario(
        lab, "redirect-hit", rates=[BASELINE_RATE], duration_s=duration_s, warmup_s=warmup_s
    )
    entries = [{**entry, "name": "baseline"} for entry in outcome.to_dicts()]
    save(lab, "baseline", entries)
    record("load", entries)
    print(outcome.steps[0].summary())
    return outcome


def run(
    lab: Lab,
    scenarios: list[str] | None = None,
    rates: list[float] | None = None,
    duration_s: float | None = None,
    warmup_s: float | None = None,
    processes: int = 1,
    apply: bool = False,
) -> dict[str, ScenarioOutcome]:
    """Each scenario's rate ladder; saved for the checks, recorded for results.json, printed."""
    if not _may_load(lab, apply):
        return {}
    outcomes: dict[str, ScenarioOutcome] = {}
    for name in scenarios or list(SCENARIOS):
        outcome = run_scenario(
            lab,
            name,
            rates=rates,
            duration_s=duration_s,
            warmup_s=warmup_s,
            processes=processes,
            progress=lambda message: None,
        )
        outcomes[name] = outcome
        entries = outcome.to_dicts()
        save(lab, name, entries)
        record("load", entries)
        for step in outcome.steps:
            print(step.summary())
        print(outcome.verdict_text(), "\n")
    return outcomes


def _verdict_rows(outcomes: dict[str, ScenarioOutcome]) -> list[dict[str, Any]]:
    return [verdict.to_dict() for outcome in outcomes.values() for verdict in outcome.verdicts]


def verdicts(outcomes: dict[str, ScenarioOutcome]) -> Any:
    """Target, expected, measured, verdict for every step (a DataFrame; also a report chart)."""
    import pandas as pd  # noqa: PLC0415

    from labkit.report import load_verdict_figure, show_figure  # noqa: PLC0415

    rows = _verdict_rows(outcomes)
    if rows:
        show_figure(load_verdict_figure(rows), "load-verdict")
    frame = pd.DataFrame(
        rows, columns=["scenario", "rate", "target", "expected", "measured", "status"]
    )
    highest = {name: outcome.highest_good_rate for name, outcome in outcomes.items()}
    print("highest step with targets held and generator not the limit:", highest)
    return frame


def charts(outcomes: dict[str, ScenarioOutcome]) -> None:
    """Spectrum, throughput and p99 over time, errors over time, measured vs target."""
    from labkit.report import (  # noqa: PLC0415
        load_errors_figure,
        load_spectrum_figure,
        load_targets_figure,
        load_timeseries_figure,
        show_figure,
    )

    if not outcomes:
        print("no load ran, so there is nothing to chart")
        return
    entries = [entry for outcome in outcomes.values() for entry in outcome.to_dicts()]
    for name, outcome in outcomes.items():
        steps = outcome.to_dicts()
        show_figure(load_spectrum_figure(steps), f"load-{name}-spectrum")
    show_figure(load_timeseries_figure(entries), "load-timeseries")
    show_figure(load_errors_figure(entries), "load-errors")
    show_figure(load_targets_figure(_verdict_rows(outcomes)), "load-targets")
