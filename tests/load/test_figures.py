"""The load figures in labkit.report, built from a real run's results.json entry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from labkit.load import LOOPBACK, Fixed, Schedule, resolve_target, run_load
from labkit.report import (
    load_errors_figure,
    load_spectrum_figure,
    load_targets_figure,
    load_timeseries_figure,
    load_verdict_table,
    show_figure,
)
from tests.chartcheck import charts_with_log_problems, log_axis_problems
from tests.load.conftest import TestServer


@pytest.fixture(scope="module")
def entry() -> dict[str, Any]:
    server = TestServer("--status", "503")
    try:
        target = resolve_target(server.url, LOOPBACK)
        result = run_load(
            target, Fixed(target.host_header), Schedule.constant(300, 2), connections=4
        )
    finally:
        server.stop()
    return {**result.to_dict(), "scenario": "probe"}


def test_spectrum_has_corrected_and_uncorrected_on_a_log_axis(entry: dict[str, Any]) -> None:
    figure = load_spectrum_figure([entry])
    assert [trace.name for trace in figure.data] == [
        "probe @ 300/s corrected",
        "probe @ 300/s uncorrected",
    ]
    assert figure.layout.xaxis.type == "log"
    assert min(figure.data[0].x) >= 1


def test_timeseries_counts_every_response(entry: dict[str, Any]) -> None:
    figure = load_timeseries_figure([entry])
    throughput = figure.data[0]
    assert sum(throughput.y) == 600


def test_errors_figure_shows_every_5xx(entry: dict[str, Any]) -> None:
    figure = load_errors_figure([entry])
    assert sum(figure.data[0].y) == 600
    assert "600 errors" in figure.data[0].name


_VERDICTS: list[dict[str, Any]] = [
    {
        "scenario": "redirect-hit",
        "rate": 1000.0,
        "target": "redirect P99 (cache hit)",
        "expected": "< 10 ms",
        "measured": "12 ms",
        "status": "fail",
        "note": "",
        "value": 12.0,
        "limit": 10.0,
    },
    {
        "scenario": "redirect-hit",
        "rate": 1000.0,
        "target": "cache-hit ratio",
        "expected": "> 95%",
        "measured": "not measured",
        "status": "n/a (none)",
        "note": "none",
        "value": None,
        "limit": None,
    },
    {
        "scenario": "redirect-hit",
        "rate": 1000.0,
        "target": "error rate",
        "expected": "< 1%",
        "measured": "0 %",
        "status": "pass",
        "note": "",
        "value": 0.0,
        "limit": 1.0,
    },
    {
        "scenario": "redirect-hit",
        "rate": 2000.0,
        "target": "redirect P99 (cache hit)",
        "expected": "< 10 ms",
        "measured": "2500 ms",
        "status": "fail",
        "note": "",
        "value": 2500.0,
        "limit": 10.0,
    },
]


def test_target_bars_are_ratios_on_a_linear_axis_with_every_value_labelled() -> None:
    bars = load_targets_figure(_VERDICTS)
    assert bars.layout.xaxis.type == "linear"
    assert list(bars.data[0].x) == [1.2, 0.0, 3.0]  # measured rows only; off-scale capped
    assert list(bars.data[0].marker.color) == ["#c0392b", "#2a8f2a", "#c0392b"]
    labels = list(bars.data[0].text)
    assert labels[1] == "0 % · pass"  # a zero draws no bar, but its label is there
    assert labels[2] == "2500 ms · fail (x250, off scale)"
    assert log_axis_problems(json.loads(bars.to_json())) == []


def test_the_verdict_table_shows_each_verdict_once() -> None:
    entries = [
        {"scenario": "redirect-hit", "target_rps": rate, "verdicts": _VERDICTS}
        | {"highest_good_rps": None, "stopped": "saturated"}
        for rate in (1000.0, 2000.0)
    ] + [{"scenario": "redirect-hit", "name": "baseline", "verdicts": _VERDICTS[:1]}]
    table = load_verdict_table(entries)
    assert len(table) == len(_VERDICTS)  # one per verdict, however many entries carry them
    page = table._repr_html_()
    assert page.count("<tr>") == 1 + 2  # the head, then one row per step (1000/s, 2000/s)
    assert page.count('class="labkit-badge labkit-fail"') == 2
    assert page.count('class="labkit-badge labkit-n-a"') == 1
    assert "not measured in this scenario" in page  # 2000/s measured only the P99
    assert "highest step with every target held and the generator keeping up: none" in page
    assert "{" not in page.split("</style>")[1]  # no raw dicts


def test_a_log_axis_over_zero_is_found() -> None:
    """The checker the run tests rely on: it must see the issue's 0.0 on a log axis."""
    import plotly.graph_objects as go

    figure = go.Figure(go.Bar(x=[0.0, 120.0], y=["a", "b"], orientation="h"))
    figure.update_layout(xaxis={"type": "log"})
    assert log_axis_problems(json.loads(figure.to_json())) == ["trace 0: log x axis has [0.0]"]
    figure.update_layout(xaxis={"type": "linear"})
    assert log_axis_problems(json.loads(figure.to_json())) == []


def test_no_chart_a_run_writes_has_a_log_axis_over_zero(
    entry: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every load chart, from a real run's entry and verdicts with zeros, through show_figure."""
    monkeypatch.setenv("LABKIT_RUN_DIR", str(tmp_path))
    steps = [entry | {"verdicts": _VERDICTS, "highest_good_rps": None, "stopped": ""}]
    show_figure(load_spectrum_figure(steps), "load-probe-spectrum")
    show_figure(load_timeseries_figure(steps), "load-timeseries")
    show_figure(load_errors_figure(steps), "load-errors")
    show_figure(load_targets_figure(_VERDICTS), "load-targets")
    assert len(list((tmp_path / "charts").glob("*.json"))) == 4
    assert charts_with_log_problems(tmp_path / "charts") == {}
