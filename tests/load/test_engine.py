"""The engine against ground truth: our own servers on loopback, known stalls, known counts."""

from __future__ import annotations

import re
import resource
from collections.abc import Callable

import numpy as np
import pytest

from labkit.errors import ConfigError, NotAllowed
from labkit.load import (
    LOOPBACK,
    Fixed,
    Limits,
    LoadProgress,
    Schedule,
    Segment,
    resolve_target,
    run_load,
)
from labkit.load.engine import _judge, progress_lines
from labkit.load.recorder import Recorder
from tests.load.conftest import TestServer

Start = Callable[..., TestServer]


def _bench(url: str, rate: float, duration: float, **options: object):  # type: ignore[no-untyped-def]
    target = resolve_target(url, LOOPBACK)
    return run_load(
        target, Fixed(target.host_header, target.path), Schedule.constant(rate, duration), **options
    )  # type: ignore[arg-type]


def test_corrected_latency_matches_the_stall_and_uncorrected_shows_the_omission(
    http_server: Start,
) -> None:
    # 1000 req/s for 4 s; 1.5 s in, the server freezes for 0.4 s. Requests due during the
    # freeze wait until it ends: 10% of all requests with latency uniform on (0, D], so
    # corrected p(q) = D - (1 - q) * L. A closed-loop view sees only the 8 in flight.
    server = http_server("--stall-at", "1.5", "--stall-for", "0.4")
    result = _bench(server.url, rate=1000, duration=4, connections=8)
    start_ns, end_ns = map(int, server.stop().split("STALL ")[1].split()[:2])
    stall_ms = (end_ns - start_ns) / 1e6
    corrected = result.latency("corrected")
    uncorrected = result.latency("uncorrected")
    assert result.recorder.responses == 4000
    expected_p99 = stall_ms - 0.01 * 4000
    expected_p99_9 = stall_ms - 0.001 * 4000
    # Above the analytic value only by the drain after the stall and scheduler jitter.
    assert expected_p99 - 3 <= corrected["p99"] <= expected_p99 + 20, corrected
    assert expected_p99_9 - 3 <= corrected["p99_9"] <= expected_p99_9 + 20, corrected
    assert stall_ms - 5 <= corrected["max"] <= stall_ms + 30, corrected
    assert uncorrected["p99"] < expected_p99 / 4, uncorrected  # the omission, visible


def test_two_processes_merge_to_exactly_the_sum_of_their_samples(http_server: Start) -> None:
    server = http_server("--status", "200")
    result = _bench(server.url, rate=500, duration=2, processes=2, connections=8)
    assert len(result.workers) == 2
    per_worker = [
        sum(
            sum(int(v) for v in op["status_codes"].values())
            for op in worker["recorder"]["operations"].values()
        )
        for worker in result.workers
    ]
    assert per_worker == [500, 500]
    assert result.recorder.total().get_total_count() == sum(per_worker) == 1000
    assert result.to_dict()["status_codes"] == {"200": 1000}


def test_progress_counts_every_worker_while_the_run_goes_on(http_server: Start) -> None:
    # Two workers at 300 req/s each: a report counting only the worker read first
    # (the other's frames waiting in its pipe) would show about half the plan so far.
    server = http_server("--status", "200")
    reports: list[LoadProgress] = []
    result = _bench(
        server.url, rate=600, duration=3.5, processes=2, connections=8, progress=reports.append
    )
    assert result.recorder.responses == 2100
    assert len(reports) >= 2, reports
    for report in reports:
        assert 0.5 <= report.elapsed_s <= 4, report
        assert 0.65 * 600 * report.elapsed_s <= report.sent <= 600 * report.elapsed_s + 60, report
        assert report.sent - 60 <= report.answered <= report.sent, report
        assert report.unanswered == 0 and report.planned == 2100, report
    assert "/3.5s  sent" in reports[-1].line()


def test_progress_lines_hand_one_line_every_few_seconds() -> None:
    lines: list[str] = []
    show = progress_lines(lines.append, every_s=5)
    for second in range(1, 13):
        show(LoadProgress(second + 0.01, 12, second * 10, 120, second * 10, 0))
    assert len(lines) == 2 and lines[0].strip().startswith("5/12s"), lines
    assert " ".join(lines[1].split()) == (
        "10/12s sent 100 of 120 answered 100 no answer 0 (10 answered/s)"
    )


def test_http_errors_are_counted_by_class(http_server: Start) -> None:
    server = http_server("--status", "503")
    data = _bench(server.url, rate=200, duration=1, connections=4).to_dict()
    assert data["errors"] == {"http_5xx": 200}
    assert data["error_rate"] == 1.0
    assert data["status_codes"] == {"503": 200}


def test_a_refused_port_is_counted_as_connect_refused(http_server: Start) -> None:
    server = http_server()
    url = server.url
    server.stop()  # nothing listens on that port any more
    data = _bench(url, rate=100, duration=1, connections=2).to_dict()
    assert data["errors"] == {"connect_refused": 100}
    assert data["responses"] == 0


def test_a_server_that_never_answers_gives_read_timeouts(http_server: Start) -> None:
    # Two connections for 40 requests: only the read timeout, failing the silent requests
    # while the run goes on, frees connections for the ones waiting (the rest end not_sent).
    server = http_server("--hang")
    data = _bench(server.url, rate=40, duration=1, connections=2, read_timeout_s=0.2).to_dict()
    assert data["errors"]["read_timeout"] >= 6, data["errors"]
    assert set(data["errors"]) <= {"read_timeout", "not_sent"}
    assert sum(data["errors"].values()) == 40
    assert data["responses"] == 0


@pytest.mark.parametrize(
    ("option", "category"), [("--close-at", "closed"), ("--reset-at", "reset")]
)
def test_a_connection_lost_mid_request_is_counted_by_how_it_ended(
    http_server: Start, option: str, category: str
) -> None:
    server = http_server("--status", "200", option, "30")
    data = _bench(server.url, rate=100, duration=1, connections=4).to_dict()
    assert data["errors"] == {category: 1}
    assert data["status_codes"] == {"200": 99}


def test_the_warm_up_is_sent_but_not_measured(http_server: Start) -> None:
    # Request 50 falls in the first second (the warm-up) and is never answered: its read
    # timeout belongs to the warm-up, so the measured second has 100 clean answers.
    server = http_server("--status", "200", "--ignore", "50")
    target = resolve_target(server.url, LOOPBACK)
    result = run_load(
        target,
        Fixed(target.host_header, target.path),
        Schedule.constant(100, 1, warmup_s=1),
        connections=4,
        read_timeout_s=0.5,
    )
    data = result.to_dict()
    assert data["requests"] == 100 and data["status_codes"] == {"200": 100}
    assert data["errors"] == {}
    assert sum(worker["sent"] for worker in result.workers) == 200


def test_one_unanswered_request_does_not_stretch_the_achieved_rate(http_server: Start) -> None:
    # Request 350 of 400 times out 1.5 s after the last answer: the run still achieved ~200/s.
    server = http_server("--status", "200", "--ignore", "350")
    data = _bench(server.url, rate=200, duration=2, connections=8, read_timeout_s=1.5).to_dict()
    assert data["errors"] == {"read_timeout": 1}
    assert data["responses"] == 399
    assert data["achieved_rps"] >= 190, data["achieved_rps"]


def test_server_closes_between_requests_are_not_errors(http_server: Start) -> None:
    server = http_server("--status", "200", "--close-every", "7")
    result = _bench(server.url, rate=300, duration=1, connections=4)
    data = result.to_dict()
    assert data["status_codes"] == {"200": 300}
    assert data["errors"] == {}
    assert data["generator"]["connects"] > 4  # closed connections were replaced


def test_a_run_over_the_generator_limits_is_flagged_with_the_reason(http_server: Start) -> None:
    server = http_server()
    result = _bench(
        server.url,
        rate=100,
        duration=1,
        connections=2,
        limits=Limits(lag_p99_ms=0.0, cpu_cores=0.0),
    )
    assert result.generator_limited
    assert "scheduler lag p99" in result.generator_reason
    assert "of a core" in result.generator_reason
    assert "GENERATOR-LIMITED" in result.summary()
    light = _bench(server.url, rate=100, duration=1, connections=2)  # the default limits
    assert not light.generator_limited, light.generator_reason


def _judged(lag_us: int, cores: float, late_s: float) -> str:
    recorder = Recorder()
    n = 100
    ints = np.full(n, 1000, dtype=np.int64)
    recorder.responses_batch(
        "get", np.full(n, 200), ints, ints, np.full(n, lag_us), np.zeros(n, dtype=np.int64)
    )
    worker = {"worker": 0, "cpu_s": cores * 10, "wall_s": 10.0, "late_finish_s": late_s}
    return _judge([worker], recorder, Limits(lag_p99_ms=5.0, cpu_cores=0.85, late_finish_s=0.5))


def test_each_generator_limit_flags_just_above_it_and_not_below() -> None:
    assert _judged(4_900, 0.80, 0.4) == ""
    assert "scheduler lag p99 5.1 ms > 5 ms" in _judged(5_100, 0.80, 0.4)
    assert "worker 0 used 0.90 of a core" in _judged(4_900, 0.90, 0.4)
    assert "finished sending 0.60s late" in _judged(4_900, 0.80, 0.6)


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ({"processes": 0}, "0 process(es); give 1 to"),
        ({"processes": 10_000, "connections": 10_000}, "(4 per CPU core of this machine)"),
        ({"connections": 10_001}, "and at most 10,000"),
        ({"processes": 2, "connections": 1}, "at least one per process"),
        ({"read_timeout_s": 1e200}, "a read timeout of 1e+200s"),
        ({"connect_timeout_s": float("nan")}, "a connect timeout of nans"),
        ({"read_timeout_s": 0}, "above 0 and at most 600 seconds"),
    ],
)
def test_run_load_refuses_sizes_and_timeouts_outside_their_bounds(
    keywords: dict[str, float], message: str
) -> None:
    """Checked before any worker starts (the CLI refuses these first)."""
    target = resolve_target("http://127.0.0.1:9/", LOOPBACK)
    with pytest.raises(ConfigError, match=re.escape(message)):
        run_load(target, Fixed(target.host_header), Schedule.constant(10, 1), **keywords)  # type: ignore[arg-type]


def test_more_connections_than_open_files_allow_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda which: (256, 256))
    target = resolve_target("http://127.0.0.1:9/", LOOPBACK)
    with pytest.raises(ConfigError, match=r"do not fit the open-file limit 256 \(ulimit -n\)"):
        run_load(target, Fixed(target.host_header), Schedule.constant(10, 1), connections=300)


def test_a_schedule_made_without_its_constructors_is_checked_too() -> None:
    target = resolve_target("http://127.0.0.1:9/", LOOPBACK)
    absurd = Schedule((Segment(1e12, 1.0),))
    with pytest.raises(ConfigError, match="at most 1,000,000 requests per second"):
        run_load(target, Fixed(target.host_header), absurd)


def test_a_target_outside_the_allow_list_is_refused_before_any_request() -> None:
    with pytest.raises(NotAllowed):
        _bench("http://10.99.0.1:80/", rate=10, duration=1)


def test_result_has_the_load_schema(http_server: Start) -> None:
    server = http_server()
    data = _bench(server.url, rate=100, duration=1, connections=2).to_dict()
    for key in (
        "target_rps",
        "achieved_rps",
        "requests",
        "duration_s",
        "errors",
        "status_codes",
        "generator_limited",
        "generator_reason",
    ):
        assert key in data
    for kind in ("corrected", "uncorrected"):
        assert set(data["latency_ms"][kind]) >= {"p50", "p90", "p95", "p99", "p99_9", "max"}
    assert data["requests"] == 100
    assert data["target_rps"] == 100
    assert 95 <= data["achieved_rps"] <= 100
