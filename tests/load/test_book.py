"""Notebook 06's calls: the plan, and no load at all on a non-sandbox lab without apply."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.load import book
from labkit.params import Lab, load_lab

HOMELAB = Path(__file__).resolve().parents[2] / "params" / "homelab.yaml"


def test_plan_lists_every_scenario_at_every_rate(sandbox_params_lab: Lab) -> None:
    table = book.plan(sandbox_params_lab, rates=[100.0, 200.0], duration_s=3, warmup_s=1)
    frame = table.to_frame()
    assert len(table) == len(frame) == 8
    assert set(frame["scenario"]) == {"create", "redirect-hit", "redirect-miss", "mixed"}
    assert frame.loc[0, "requests"] == 400


def test_the_homelab_gets_no_load_without_apply(capsys: pytest.CaptureFixture[str]) -> None:
    homelab = load_lab(HOMELAB)
    # Any request would have to connect somewhere; these return before building a client.
    assert book.baseline(homelab, apply=False) is None
    assert book.run(homelab, apply=False) == {}
    assert "runs only with apply = True" in capsys.readouterr().out
