"""The load figures in labkit.report, built from a real run's results.json entry."""

from __future__ import annotations

from typing import Any

import pytest

from labkit.load import LOOPBACK, Fixed, Schedule, resolve_target, run_load
from labkit.report import (
    load_errors_figure,
    load_spectrum_figure,
    load_targets_figure,
    load_timeseries_figure,
    load_verdict_figure,
)
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


def test_target_bars_and_verdict_table_follow_the_verdicts() -> None:
    verdicts: list[dict[str, Any]] = [
        {
            "scenario": "redirect-hit",
            "rate": 1000.0,
            "target": "redirect P99 (cache hit)",
            "expected": "< 10 ms",
            "measured": "12 ms",
            "status": "fail",
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
            "value": None,
            "limit": None,
        },
    ]
    bars = load_targets_figure(verdicts)
    assert list(bars.data[0].x) == [120.0]  # only measured rows, as % of the bound
    assert list(bars.data[0].marker.color) == ["#c0392b"]
    table = load_verdict_figure(verdicts)
    assert list(table.data[0].cells.values[5]) == ["fail", "n/a (none)"]
