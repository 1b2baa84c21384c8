"""A traced run's per-request record against servers whose failures we place ourselves."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from labkit.load import Fixed, Schedule, resolve_target, run_load
from labkit.load.recorder import ERROR_CATEGORIES
from labkit.load.trace import Trace, short_code_of
from tests.load.conftest import TestServer

Start = Callable[..., TestServer]


def test_a_traced_run_records_every_request_and_where_the_failure_fell(
    http_server: Start,
) -> None:
    server = http_server("--status", "200", "--reset-at", "150")
    target = resolve_target(server.url, ["127.0.0.0/8"])
    starts: list[int] = []
    result = run_load(
        target,
        Fixed(target.host_header, target.path),
        Schedule.constant(200, 1.5),
        connections=4,
        trace=True,
        on_start=starts.append,
    )
    trace = result.trace
    assert trace is not None and len(starts) == 1 and trace.t0_ns == starts[0]
    assert len(trace) == result.recorder.requests == 300
    failed = np.flatnonzero(trace.failed)
    assert len(failed) == 1, trace.failure_categories()
    assert trace.category(int(failed[0])) == "reset"
    # The 150th request arrived about 0.75 s into the plan; it failed then, not at the end.
    assert 0.6e9 < trace.intended_ns[failed[0]] < 0.9e9
    assert np.all(np.diff(trace.done_ns) >= 0)
    seconds = trace.per_second()
    assert sum(row["requests"] for row in seconds) == 300
    assert sum(row["failed"] for row in seconds) == 1


def test_an_untraced_run_keeps_no_record(http_server: Start) -> None:
    server = http_server("--status", "200")
    target = resolve_target(server.url, ["127.0.0.0/8"])
    result = run_load(
        target, Fixed(target.host_header, target.path), Schedule.constant(50, 0.5), connections=2
    )
    assert result.trace is None
    assert all("trace" not in worker for worker in result.workers)


def test_merge_orders_by_completion_and_keeps_acknowledged_codes() -> None:
    t0 = 1_000_000_000
    parts = [
        {
            "rows": np.array([[1201, t0 + 30, t0 + 50], [302, t0 + 10, t0 + 20]], dtype=np.int64),
            "errors": [(1, ERROR_CATEGORIES.index("connect_refused"), t0 + 5, t0 + 40)],
            "bodies": [
                (1000, t0 + 30, 201, b'{"shortCode": "abc12"}'),
                (1000, t0 + 31, 503, b'{"title": "down"}'),
            ],
        }
    ]
    trace = Trace.merge(t0, ("redirect", "create"), parts)
    assert trace.done_ns.tolist() == [20, 40, 50]
    assert [trace.category(i) for i in range(3)] == ["", "connect_refused", ""]
    assert trace.acknowledged == {"create": [(30, "abc12")]}
    assert trace.failure_categories() == {"connect_refused": 1}


def test_short_code_of_reads_only_a_shortcode() -> None:
    assert short_code_of(b'{"shortCode": "x1"}') == "x1"
    assert short_code_of(b"<html>") == ""
    assert short_code_of(b'{"shortCode": 5}') == ""
