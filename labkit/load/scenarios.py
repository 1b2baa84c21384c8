"""The roadmap's four load scenarios against the lab's Shlink, each as a ladder of rates.

1. ``create``: ``POST /rest/v3/short-urls`` with unique long URLs (write-heavy);
2. ``redirect-hit``: ``GET /{code}`` over a small warm set (the redirect cache serves it);
3. ``redirect-miss``: ``GET /{code}`` over a cold set whose cache keys are deleted before
   and, every ``flush_every_s``, during the run (so the cache keeps missing at any rate);
4. ``mixed``: 100 redirects (warm set) to 1 create.

Setup (seeding, warming, flushing) goes through ``ShlinkClient`` and Redis, never the
engine. Each rate step runs with a short warm-up (sent, not measured) and a
``ServerWatch`` beside it; the ladder stops early once a step is hopeless.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from labkit.errors import ConfigError, LabkitError
from labkit.load.engine import progress_lines, run_load
from labkit.load.result import LoadResult
from labkit.load.schedule import Schedule
from labkit.load.server_stats import ServerWatch
from labkit.load.target import Target, reached_shlink, resolve_target
from labkit.load.verdict import KEPT_SHARE, Verdict, judge
from labkit.load.workload import Creates, Mixed, Redirects, Workload
from labkit.params import Lab
from labkit.sandbox.shortener.cache import CACHE_PREFIX
from labkit.stores import lab_redis_master

__all__ = [
    "SCENARIOS",
    "ScenarioOutcome",
    "StepOutcome",
    "build_workload",
    "knee_reason",
    "run_scenario",
]

SCENARIOS = {
    "create": "URL creation through the REST API (write-heavy)",
    "redirect-hit": "redirect, cache hit (warm set of codes)",
    "redirect-miss": "redirect, cache miss (cold codes, cache keys deleted)",
    "mixed": "mixed 100:1 read:write",
}
ROADMAP_IDS = ["6.1.2", "6.1.4", "6.2.1", "6.2.2", "6.2.3", "6.2.4"]
_HOT_CODES = 100
_COLD_CODES = 1000
# The sandbox service's cache keys; against real Shlink nothing matches, and the miss
# scenario's own verdict (hit ratio low) then says the cache was not bypassed.
_CACHE_PREFIX = CACHE_PREFIX
_HOPELESS_ERROR_RATE = 0.5
_SATURATED_SHARE = 0.8  # below this share of the step's rate answered, the lab is saturated


@dataclass
class StepOutcome:
    """One rate step: the engine's result and the server-side figures beside it."""

    result: LoadResult
    server: dict[str, Any]

    def summary(self) -> str:
        """The engine's text summary plus the server-side headline figures."""
        redis_figures = self.server.get("redis", {})
        postgres = self.server.get("postgres", {}).get("probe_ms", {})
        probe = redis_figures.get("probe_us", {})
        lines = [self.result.summary()]
        lines.append(
            f"  server: cache hit ratio {redis_figures.get('hit_ratio')}, redis probe p99 "
            f"{probe.get('p99', 0)} µs, postgres write p99 {postgres.get('p99', 0)} ms"
        )
        for row in self.server.get("processes", [])[:4]:
            lines.append(
                f"    {row['component']:<24} {row['cpu_cores']:.2f} cores  {row['memory_mb']} MB"
            )
        for source, problem in self.server.get("problems", {}).items():
            lines.append(f"    ({source}: {problem})")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The results.json ``load`` entry with a ``server`` section."""
        return {**self.result.to_dict(), "server": self.server}


@dataclass
class ScenarioOutcome:
    """Every step of one scenario's ladder, and the verdict against the ADR targets."""

    scenario: str
    steps: list[StepOutcome] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    stopped: str = ""  # why the ladder stopped early, if it did
    climbing: bool = False  # the ladder climbed until targets broke (params targets.ladder)

    @property
    def highest_good_rate(self) -> float | None:
        """Highest step whose targets held and whose generator kept up (None: none did)."""
        good = [
            step.result.target_rps
            for step in self.steps
            if not step.result.generator_limited
            and all(v.ok is not False for v in self.verdicts if v.rate == step.result.target_rps)
        ]
        return max(good) if good else None

    def to_dicts(self) -> list[dict[str, Any]]:
        """One results.json ``load`` entry per step, each carrying the scenario's verdicts."""
        verdicts = [verdict.to_dict() for verdict in self.verdicts]
        return [
            {
                **step.to_dict(),
                "verdicts": verdicts,
                "highest_good_rps": self.highest_good_rate,
                "stopped": self.stopped,
                "climbing": self.climbing,
            }
            for step in self.steps
        ]

    def verdict_text(self) -> str:
        """Target / measured / verdict, one line each, and the highest good step."""
        lines = [f"{self.scenario}: verdict against the ADR targets"]
        for verdict in self.verdicts:
            lines.append(
                f"  {verdict.rate:>8.0f}/s  {verdict.target:<34} {verdict.expected:<16} "
                f"{verdict.measured:<22} {verdict.status}"
                + ("  [PromQL]" if verdict.source.startswith("PromQL") else "")
            )
        good = self.highest_good_rate
        lines.append(
            f"  highest step with targets held and generator not the limit: "
            f"{f'{good:.0f}/s' if good is not None else 'none'}"
        )
        if self.stopped:
            lines.append(f"  ladder stopped early: {self.stopped}")
        return "\n".join(lines)


def _client(lab: Lab) -> Any:
    from labkit.shlink import ShlinkClient  # noqa: PLC0415 - httpx only for setup

    return ShlinkClient.from_lab(lab)


def _seed(lab: Lab, prefix: str, count: int, progress: Callable[[str], None]) -> tuple[str, ...]:
    """``count`` short codes for long URLs ``.../prefix/i`` (find-if-exists: idempotent)."""
    progress(f"seeding {count} short URLs ({prefix}) through the REST API")
    codes = []
    with _client(lab) as client:
        client.health()
        for index in range(count):
            created = client.create(
                f"https://example.com/labkit-load/{prefix}/{index}",
                find_if_exists=True,
                tags=["labkit-load"],
            )
            codes.append(str(created["shortCode"]))
    return tuple(codes)


def _warm(lab: Lab, codes: tuple[str, ...]) -> None:
    with _client(lab) as client:
        for code in codes:
            client.resolve(code)


def _forget(lab: Lab, codes: tuple[str, ...]) -> str:
    """Delete the codes' cache keys; returns what went wrong ("" when it worked)."""
    try:
        with lab_redis_master(lab) as client:
            client.delete(*[f"{_CACHE_PREFIX}{code}" for code in codes])
    except LabkitError as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


class _Flusher:
    """Deletes the cold codes' cache keys every ``every_s`` while a miss step runs."""

    def __init__(self, lab: Lab, codes: tuple[str, ...], every_s: float) -> None:
        self.lab, self.codes, self.every_s = lab, codes, every_s
        self.attempts = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="cache-flusher")

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.attempts += 1
            problem = _forget(self.lab, self.codes)
            if problem:
                self.failures.append(problem)

    def problem(self) -> str:
        """How often flushing failed ("" when it never did): the step may have measured hits."""
        if not self.failures:
            return ""
        return (
            f"cache flush failed {len(self.failures)} of {self.attempts} times "
            f"(last: {self.failures[-1]}); this step may have measured cache hits"
        )

    def __enter__(self) -> _Flusher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _api_key(lab: Lab) -> str:
    return lab.secret(lab.shlink.api_key).reveal()  # resolving registers it for masking


def _workload(
    lab: Lab, scenario: str, target: Target, cold_codes: int, progress: Callable[[str], None]
) -> tuple[Workload, tuple[str, ...]]:
    host = target.host_header
    run_tag = uuid.uuid4().hex[:12]
    if scenario == "create":
        return Creates(host, run_tag, _api_key(lab)), ()
    if scenario == "redirect-miss":
        cold = _seed(lab, "cold", cold_codes, progress)
        return Redirects(host, cold), cold
    hot = _seed(lab, "hot", _HOT_CODES, progress)
    progress(f"warming the redirect cache with {len(hot)} codes")
    _warm(lab, hot)
    if scenario == "redirect-hit":
        return Redirects(host, hot), ()
    return Mixed(Redirects(host, hot), Creates(host, run_tag, _api_key(lab))), ()


def build_workload(
    lab: Lab, scenario: str, target: Target, progress: Callable[[str], None] = print
) -> Workload:
    """The workload of ``scenario`` against ``target`` (seeding and warming done); drills use
    the mixed one."""
    return _workload(lab, scenario, target, _COLD_CODES, progress)[0]


def run_scenario(
    lab: Lab,
    scenario: str,
    *,
    rates: list[float] | None = None,
    duration_s: float | None = None,
    warmup_s: float | None = None,
    processes: int = 1,
    connections: int = 64,
    flush_every_s: float = 0.2,
    cold_codes: int = _COLD_CODES,
    progress: Callable[[str], None] = print,
) -> ScenarioOutcome:
    """Run ``scenario`` up the ladder: ``rates`` if given, else the lab's ``targets.ladder``
    (climbing until the targets break or the generator is the limit), else ``rate_steps``.

    On a cluster lab whose ``shlink.base_url`` does not answer, the load goes through a
    port-forward to the Shlink Service held for the run (``reached_shlink``).
    """
    if scenario not in SCENARIOS:
        raise ConfigError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    # From here on ``lab`` is the one whose Shlink answers (a port-forward on a cluster lab).
    with reached_shlink(lab, progress) as lab:  # noqa: PLR1704
        targets = lab.targets
        target = resolve_target(lab.shlink.base_url, lab.allow_list)  # refused before any request
        ladder = targets.ladder if rates is None else None  # explicit rates: a fixed ladder
        rates = rates or (
            ladder.rates() if ladder else [float(rate) for rate in targets.rate_steps]
        )
        duration = duration_s if duration_s is not None else targets.step_duration_s
        warmup = warmup_s if warmup_s is not None else targets.warmup_s
        workload, cold = _workload(lab, scenario, target, cold_codes, progress)
        outcome = ScenarioOutcome(scenario, climbing=ladder is not None)
        spent = 0.0
        for rate in rates:
            if ladder is not None and spent + warmup + duration > ladder.max_total_s:
                outcome.stopped = (
                    f"the ladder's time budget ({ladder.max_total_s:g}s per scenario) ends before "
                    f"{rate:.0f}/s; the ceiling may be higher"
                )
                break
            spent += warmup + duration
            progress(f"{scenario}: {rate:.0f} req/s for {duration:g}s after {warmup:g}s warm-up")
            problem = _forget(lab, cold) if cold else ""
            flusher = _Flusher(lab, cold, flush_every_s) if cold else None
            with ServerWatch(lab) as watch, flusher or nullcontext():
                result = run_load(
                    target,
                    workload,
                    Schedule.constant(rate, duration, warmup),
                    name=f"{scenario}@{rate:.0f}",
                    processes=processes,
                    connections=connections,
                    progress=progress_lines(progress),
                )
            result.scenario = scenario
            result.roadmap_ids = list(ROADMAP_IDS)
            result.operation_rates = _operation_rates(workload, rate)
            problem = problem or (flusher.problem() if flusher else "")
            if problem:
                watch.figures.setdefault("problems", {})["cache flush"] = problem
            step = StepOutcome(result, watch.figures)
            outcome.steps.append(step)
            progress(
                f"{scenario}: {rate:.0f} req/s step done: "
                f"achieved {result.achieved_rps:,.0f} req/s, "
                f"error rate {result.error_rate:.2%}"
                + (", generator-limited" if result.generator_limited else "")
            )
            verdicts = judge(lab, scenario, step.to_dict())
            outcome.verdicts += verdicts
            knee = knee_reason(rate, result, verdicts)
            if ladder is not None and knee:
                outcome.stopped = f"the knee: at {rate:.0f}/s {knee}"
                break
            if result.error_rate > _HOPELESS_ERROR_RATE:
                outcome.stopped = (
                    f"{result.error_rate:.0%} errors at {rate:.0f}/s; higher steps would only "
                    "measure the failure"
                )
                break
            if result.achieved_rps < _SATURATED_SHARE * rate and not result.generator_limited:
                outcome.stopped = (
                    f"the lab answered {result.achieved_rps:.0f} of {rate:.0f} req/s (saturated); "
                    "higher steps would only grow the queue"
                )
                break
        return outcome


def knee_reason(rate: float, result: LoadResult, verdicts: list[Verdict]) -> str:
    """Why a climbing ladder's step is its knee ("": it is not): a target broke, the
    generator was the limit, or the lab answered under KEPT_SHARE of the rate (6.1.4
    judges every step below the knee as sustained, so such a step cannot be below it)."""
    broken = [v for v in verdicts if v.ok is False]
    if broken:
        return "; ".join(f"{v.target} {v.measured} (target {v.expected})" for v in broken)
    if result.generator_limited:
        return f"the generator was the limit ({result.generator_reason})"
    if result.achieved_rps < KEPT_SHARE * rate:
        return f"the lab answered {result.achieved_rps:.0f} req/s (under {KEPT_SHARE:.0%})"
    return ""


def _operation_rates(workload: Workload, rate: float) -> dict[str, float]:
    if isinstance(workload, Mixed):
        cycle = workload.reads + workload.writes
        return {
            workload.read.operations[0]: rate * workload.reads / cycle,
            workload.write.operations[0]: rate * workload.writes / cycle,
        }
    return {workload.operations[0]: rate}
