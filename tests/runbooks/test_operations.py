"""Scale, cache flush and routing runbooks on the session's sandbox (and a cluster lab's skips)."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit import runbooks
from labkit.params import load_lab
from labkit.runbooks.base import Action, Runbook, perform
from labkit.runbooks.cache import CacheFlush
from labkit.runbooks.scale import workers
from labkit.sandbox import Sandbox

REPOSITORY = Path(__file__).resolve().parents[2]


class _Book(Runbook):
    """A runbook of given steps, to test ``perform`` itself."""

    name = "test"

    def __init__(self, actions: list[Action], held: bool = True) -> None:
        super().__init__("lab")
        self._actions, self.held = actions, held

    def actions(self) -> list[Action]:
        return self._actions

    def judge(self) -> tuple[bool, str]:
        return self.held, "judged"


def _step(book: list[str], name: str, fail: bool = False) -> Action:
    def run() -> str:
        book.append(name)
        if fail:
            from labkit.errors import LabkitError

            raise LabkitError(f"{name} broke")
        return f"{name} seen"

    return Action(name, f"do {name}", run, always=name == "undo")


@pytest.mark.parametrize(
    ("failing", "held", "apply", "status", "ran"),
    [
        (None, True, False, "planned", []),
        (None, True, True, "pass", ["a", "b", "undo"]),
        (None, False, True, "fail", ["a", "b", "undo"]),
        ("a", True, True, "fail", ["a", "undo"]),  # b skipped, undo still runs
    ],
)
def test_perform(failing: str | None, held: bool, apply: bool, status: str, ran: list[str]) -> None:
    seen: list[str] = []
    actions = [_step(seen, name, fail=name == failing) for name in ("a", "b", "undo")]
    outcome = perform(_Book(actions, held), apply=apply, progress=lambda message: None)
    assert outcome.status == status
    assert seen == ran
    if failing:
        assert [s["state"] for s in outcome.steps] == ["failed", "not run", "done"]
        assert "a broke" in outcome.summary


def test_a_step_that_cannot_run_skips_everything() -> None:
    seen: list[str] = []
    actions = [_step(seen, "a"), Action("b", "kubectl b", cannot="needs a cluster")]
    outcome = perform(_Book(actions), apply=True, progress=lambda message: None)
    assert (outcome.status, outcome.summary, seen) == ("skip", "needs a cluster", [])


@pytest.mark.parametrize("runbook", ["scale", "flush_cache", "routing"])
def test_cluster_lab_runbooks_skip_with_why(runbook: str) -> None:
    lab = load_lab(REPOSITORY / "params" / "homelab.yaml")
    call = getattr(runbooks, runbook)
    outcome = call(lab, 3, apply=True) if runbook == "scale" else call(lab, apply=True)
    assert outcome.status == "skip"
    assert "cluster" in outcome.summary


@pytest.mark.sandbox
def test_routing_is_a_skip_on_the_sandbox(sandbox: Sandbox) -> None:
    outcome = runbooks.routing(sandbox.lab, apply=True)
    assert outcome.status == "skip" and "VirtualService" in outcome.summary


@pytest.mark.sandbox
@pytest.mark.slow
def test_cache_flush_under_load_shows_the_drop_and_the_recovery(sandbox: Sandbox) -> None:
    outcome = runbooks.flush_cache(sandbox.lab, apply=True, rate=200.0, duration_s=5.0)
    print(outcome.text())
    assert outcome.status == "pass", outcome.text()
    figures = {row["figure"]: row["value"] for row in outcome.measured}
    assert figures["keys deleted"] >= 100  # the warm set at least
    assert figures["lowest interval after the flush"] < figures["hit ratio before the flush"]
    assert figures["recovered after s (interval end)"] is not None
    assert figures["cache keys after the load"] >= 100  # refilled by the load's misses
    series = outcome.series["hit_ratio"]
    assert any(row["t_s"] <= 0 for row in series) and any(row["t_s"] > 0 for row in series)


class _NoRefill(CacheFlush):
    """Failing state: once warm, Redis refuses the cache's writes (ACL -set): nothing refills."""

    def _warm(self) -> str:
        seen = super()._warm()
        from labkit.stores import lab_redis_master

        with lab_redis_master(self.lab) as client:
            client.execute_command("ACL", "SETUSER", "default", "-set")
        return seen


@pytest.mark.sandbox
@pytest.mark.slow
def test_cache_flush_fails_when_the_cache_never_refills(sandbox: Sandbox) -> None:
    from labkit.stores import lab_redis_master

    try:
        outcome = perform(
            _NoRefill(sandbox.lab, rate=100.0, duration_s=3.0),
            apply=True,
            progress=lambda message: None,
        )
    finally:
        with lab_redis_master(sandbox.lab) as client:
            client.execute_command("ACL", "SETUSER", "default", "+set")
    print(outcome.text())
    assert outcome.status == "fail"
    assert "had not recovered" in outcome.summary


@pytest.mark.sandbox
@pytest.mark.slow
def test_scale_changes_the_workers_measures_and_scales_back(sandbox: Sandbox) -> None:
    configured = sandbox.lab.shlink.workers
    assert workers(sandbox.lab) == (configured, configured)
    outcome = runbooks.scale(sandbox.lab, configured + 1, apply=True, rate=300.0, duration_s=2.0)
    print(outcome.text())
    assert outcome.status == "pass", outcome.text()
    measured = {row["when"]: row for row in outcome.measured}
    assert measured["before"]["workers"] == configured
    assert measured["after"]["workers"] == configured + 1
    assert measured["after"]["achieved_rps"] > 0
    assert outcome.steps[-1]["state"] == "done"  # scaled back
    assert workers(sandbox.lab) == (configured, configured)


@pytest.mark.sandbox
def test_scale_plan_changes_nothing(sandbox: Sandbox) -> None:
    before = workers(sandbox.lab)
    outcome = runbooks.scale(sandbox.lab, 1)
    assert outcome.status == "planned"
    assert "kill -TTOU" in outcome.steps[1]["command"]
    assert workers(sandbox.lab) == before
