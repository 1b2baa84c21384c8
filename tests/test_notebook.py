"""The confirm flow without a browser: the widget is built, clicked, and its output replaced.

Nodes are the in-memory hosts of the plan tests: nothing here opens a connection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from labkit import notebook, plan
from labkit.checks import Results
from labkit.errors import StepError
from labkit.notebook import Confirmation, confirm, dependent_checks
from labkit.results import Result, Status
from tests.test_plan import Reply, lab_of, nodes

pytest.importorskip("ipywidgets")


def _html(output: Any) -> str:
    return "".join(item.get("data", {}).get("text/html", "") for item in output.outputs)


def _text(output: Any) -> str:
    return "".join(
        item.get("text", "") + item.get("data", {}).get("text/plain", "") for item in output.outputs
    )


def _recheck(calls: list[str]) -> Results:
    calls.append("checked")
    return Results([Result("1.2.1", "swap off", "1.2", Status.PASS, "off", "off", "", 0.1)])


@pytest.fixture
def applied_phases(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The phase of every real ``plan.apply`` made (the apply still runs)."""
    seen: list[str | None] = []
    real = plan.apply

    def spy(*args: Any, **kwargs: Any) -> plan.Plan:
        seen.append(args[2] if len(args) > 2 else kwargs.get("phase"))
        return real(*args, **kwargs)

    monkeypatch.setattr(plan, "apply", spy)
    return seen


@pytest.mark.parametrize("phase", ["1", None])
def test_nothing_changes_until_the_click_then_the_shown_plan_is_applied(
    tmp_path: Path, phase: str | None, applied_phases: list[str | None]
) -> None:
    hosts = nodes()
    lab = lab_of(tmp_path)
    planned = plan.diff(lab, hosts, phase=phase)
    calls: list[str] = []
    shown = Confirmation(
        lab, planned, True, interactive=True, hosts=hosts, recheck=lambda: _recheck(calls)
    )
    assert all(host.writes() == [] for host in hosts.values())  # shown, not applied
    assert applied_phases == [] and shown.result is None and calls == []
    count = planned.pending
    assert shown.button.description == f"Apply {count} changes to {lab.name}"
    assert shown.button.layout.width == "auto"  # the label is never cut
    before = _html(shown.output)
    assert before.count('class="labkit-table labkit-plan"') == 1  # the plan, once
    assert f"{count} changes pending" in before

    shown.button.click()

    assert applied_phases == [planned.phase]  # exactly the shown plan's phase
    assert any(host.writes() for host in hosts.values())
    assert shown.result is not None and shown.result.phase == planned.phase
    assert shown.result.pending == 0 and shown.result.evidence
    assert shown.button.disabled and calls == ["checked"]
    after = _html(shown.output)  # replaced in place: evidence, the re-plan, the checks
    assert f"{count} changes pending" not in after
    assert "0 changes pending" in after and "Evidence of" in after
    assert "1.2.1" in after and after.index("Evidence of") < after.index("1.2.1")
    assert shown.output.outputs[0]["output_type"] == "display_data"  # progress lines gone


def test_progress_per_node_is_shown_while_applying(tmp_path: Path) -> None:
    hosts = nodes()
    lab = lab_of(tmp_path)
    seen: list[str] = []
    shown = Confirmation(
        lab,
        plan.diff(lab, hosts, phase="1"),
        True,
        interactive=True,
        hosts=hosts,
        recheck=lambda: seen.append(_text(shown.output)) or Results([]),  # type: ignore[func-returns-value]
    )
    shown.button.click()
    during = seen[0]  # what the output held when the checks began: the apply's progress
    assert "applying" in during and "== 1.2 node preparation" in during
    assert all(f"{name}: hostname" in during for name in ("k3s-node-01", "k3s-node-02"))


def test_a_failed_apply_shows_why_and_offers_a_retry(tmp_path: Path) -> None:
    hosts = nodes()
    hosts["k3s-node-02"].answers[("swapoff", "-a")] = Reply(
        255, "", "swapoff: Operation not permitted"
    )
    lab = lab_of(tmp_path)
    calls: list[str] = []
    shown = Confirmation(
        lab,
        plan.diff(lab, hosts, phase="1"),
        True,
        interactive=True,
        hosts=hosts,
        recheck=lambda: _recheck(calls),
    )
    shown.button.click()
    assert isinstance(shown.error, StepError) and calls == []
    assert "apply failed" in _html(shown.output) and "k3s-node-02" in _html(shown.output)
    assert not shown.button.disabled and shown.button.description.startswith("Retry: Apply")


def test_plan_only_shows_the_plan_once_with_a_note_and_no_button(tmp_path: Path) -> None:
    hosts = nodes()
    lab = lab_of(tmp_path)
    shown = Confirmation(
        lab, plan.diff(lab, hosts, phase="1"), False, interactive=True, hosts=hosts
    )
    assert shown.button is None and all(host.writes() == [] for host in hosts.values())
    bundle = shown._repr_mimebundle_()
    assert bundle["text/html"].count('class="labkit-table labkit-plan"') == 1
    assert "plan only" in bundle["text/html"] and "set apply = True" in bundle["text/plain"]


def test_headless_applies_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, applied_phases: list[str | None]
) -> None:
    monkeypatch.setenv(notebook.HEADLESS, "1")
    assert notebook.headless() and not notebook.interactive()
    hosts = nodes()
    lab = lab_of(tmp_path)
    shown = confirm(lab, plan.diff(lab, hosts, phase="1"), True, hosts=hosts)
    assert applied_phases == ["1"] and shown.button is None
    assert shown.result is not None and shown.result.pending == 0
    assert "Evidence of" in shown._repr_mimebundle_()["text/html"]


def test_headless_failure_raises_so_the_run_is_marked_broken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(notebook.HEADLESS, "1")
    hosts = nodes()
    hosts["k3s-node-01"].answers[("swapoff", "-a")] = Reply(1, "", "nope")
    lab = lab_of(tmp_path)
    with pytest.raises(StepError, match="k3s-node-01"):
        confirm(lab, plan.diff(lab, hosts, phase="1"), True, hosts=hosts)


def test_a_plan_of_another_lab_is_refused(tmp_path: Path) -> None:
    hosts = nodes()
    lab = lab_of(tmp_path)
    planned = plan.diff(lab, hosts, phase="1")
    other = lab.model_copy(update={"name": "elsewhere"})
    shown = Confirmation(other, planned, True, interactive=True, hosts=hosts)
    shown.button.click()
    assert shown.error is not None and "not elsewhere" in str(shown.error)
    assert all(host.writes() == [] for host in hosts.values())


@pytest.mark.parametrize(
    ("phase", "inside", "outside"),
    [
        ("1", {"1.1.1", "1.2.1", "1.3.1"}, {"2.2.5", "0.1.1"}),
        ("1.2", {"1.2.1"}, {"1.3.1", "1.1.1"}),
    ],
)
def test_dependent_checks_are_the_plans_phase(
    phase: str, inside: set[str], outside: set[str]
) -> None:
    ids = set(dependent_checks(phase))
    assert inside <= ids and not outside & ids


def test_the_cell_shows_the_widget(tmp_path: Path) -> None:
    hosts = nodes()
    lab = lab_of(tmp_path)
    shown = Confirmation(lab, plan.diff(lab, hosts, phase="1"), True, interactive=True, hosts=hosts)
    bundle = shown._repr_mimebundle_()
    view = bundle["application/vnd.jupyter.widget-view+json"]
    assert view["model_id"] == shown.widget.model_id
    assert list(shown.widget.children) == [shown.output, shown.button]
