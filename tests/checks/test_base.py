"""The check framework: registry coverage, statuses, skips with reasons, errors recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.checks import ITEMS, Context, Outcome, Status, base, implemented_ids, item, run_checks
from labkit.params import Lab, load_lab

REPOSITORY = Path(__file__).resolve().parents[2]
ROADMAP_CHECKLIST_ITEMS = 101  # "- [ ]" lines under "Validation checklist" in ROADMAP.md


@pytest.fixture
def lab() -> Lab:
    return load_lab(REPOSITORY / "params" / "local.yaml")


def test_registry_lists_every_roadmap_item_once() -> None:
    roadmap = [entry for entry in ITEMS if entry.phase > 0]
    assert len(roadmap) == ROADMAP_CHECKLIST_ITEMS
    assert len({entry.id for entry in ITEMS}) == len(ITEMS)
    assert item("1.3.2").title == "kubectl works from control plane: `kubectl get nodes`"
    assert item("2.3.7").title == "Eviction policy configured: `CONFIG GET maxmemory-policy`"
    assert item("6.2.5").step == "6.2"


def test_unknown_id_cannot_be_registered() -> None:
    with pytest.raises(KeyError, match=r"9\.9\.9"):
        base.implements("9.9.9")


def test_cluster_items_skip_on_the_sandbox_with_reason(lab: Lab) -> None:
    results = run_checks(lab, ids=["1.3.2", "4.1.1"])
    assert [r.status for r in results] == [Status.SKIP, Status.SKIP]
    assert all("needs a Kubernetes API; the sandbox has none" in r.observed for r in results)


def test_unimplemented_item_is_visible(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    implemented_ids()
    monkeypatch.delitem(base._IMPLEMENTATIONS, "0.1.5")
    (result,) = run_checks(lab, ids=["0.1.5"])
    assert result.status == Status.NOT_IMPLEMENTED


def test_a_crashing_check_is_an_error_with_where(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(context: Context) -> Outcome:
        raise RuntimeError("boom")

    implemented_ids()
    monkeypatch.setitem(base._IMPLEMENTATIONS, "0.1.5", broken)
    results = run_checks(lab, ids=["0.1.5"])
    (result,) = results
    assert result.status == Status.ERROR
    assert result.observed == "RuntimeError: boom"
    assert "test_base.py" in result.evidence
    assert results.exit_code == 1


def test_a_failing_clean_up_keeps_the_results(lab: Lab, caplog: pytest.LogCaptureFixture) -> None:
    context = Context(lab)

    def refuse(_: object) -> None:
        raise ConnectionError("service gone")

    closed: list[str] = []
    context.resource("other", lambda: "made", close=lambda _: closed.append("other"))
    context.resource("probe", lambda: "made", close=refuse)  # released first, and fails
    results = run_checks(lab, ids=["0.1.5"], context=context)
    context.close()
    assert len(results) == 3
    assert closed == ["other"]
    assert "check clean-up failed: ConnectionError: service gone" in caplog.text


def test_judge_needs_exactly_true() -> None:
    assert Outcome.judge(True, "e", "o").status == Status.PASS
    assert Outcome.judge(False, "e", "o").status == Status.FAIL
    assert Outcome.judge(1, "e", "o").status == Status.FAIL  # type: ignore[arg-type]


def test_results_serialise_and_count(lab: Lab) -> None:
    results = run_checks(lab, phase=0)
    rows = results.to_list()
    assert {row["id"] for row in rows} >= {"0.1.1", "0.1.4", "0.1.5"}
    assert set(rows[0]) == {
        "id",
        "title",
        "step",
        "status",
        "expected",
        "observed",
        "evidence",
        "duration_s",
        "subject",
        "at",
    }
    assert sum(results.counts().values()) == len(rows)
    assert "<table" in results._repr_html_()
