"""Recorder: per-operation and per-second histograms, wire form, lossless merge."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from labkit.load.recorder import (
    HIGHEST_US,
    Recorder,
    _Counts,
    _index,
    latency_histogram,
    percentiles_ms,
)


def _filled(values_us: list[int], operation: str = "redirect") -> Recorder:
    recorder = Recorder()
    for index, value in enumerate(values_us):
        recorder.response(operation, 302, value, value // 2, 10, second=index % 3)
    return recorder


def test_percentiles_come_from_the_corrected_histogram_in_ms() -> None:
    recorder = _filled([1000] * 99 + [500_000])
    values = percentiles_ms(recorder.total("corrected"))
    assert values["p50"] == 1.0
    assert values["p99"] == 1.0
    assert 499 < values["max"] < 501


def test_out_of_range_latency_is_clamped_not_dropped() -> None:
    recorder = Recorder()
    recorder.response("get", 200, HIGHEST_US * 10, -5, 0, second=0)
    stats = recorder.operations["get"]
    assert stats.corrected.get_total_count() == 1
    assert stats.uncorrected.get_min_value() == 1


def test_errors_and_http_failures_are_categorised() -> None:
    recorder = Recorder()
    recorder.response("get", 503, 100, 100, 0, second=0)
    recorder.response("get", 404, 100, 100, 0, second=0)
    recorder.response("get", 302, 100, 100, 0, second=1)
    recorder.error("get", "connect_refused", 0, second=1)
    assert recorder.errors() == {"http_5xx": 1, "http_4xx": 1, "connect_refused": 1}
    assert recorder.requests == 4
    assert recorder.responses == 3
    assert {s: b.errors for s, b in recorder.seconds.items()} == {0: 2, 1: 1}


def test_merging_wire_forms_gives_exactly_the_sum_of_samples() -> None:
    first = _filled(list(range(1, 5001)))
    second = _filled(list(range(10_000, 13_000)), operation="create")
    third = _filled(list(range(100, 200)))
    merged = Recorder()
    for recorder in (first, second, third):
        merged.merge(json.loads(json.dumps(recorder.to_wire())))  # through JSON, like a pipe
    assert merged.total().get_total_count() == 5000 + 3000 + 100
    assert merged.operations["redirect"].corrected.get_total_count() == 5100
    assert merged.operations["create"].status_codes == {302: 3000}
    direct = _filled(list(range(1, 5001)) + list(range(100, 200)))
    assert percentiles_ms(merged.operations["redirect"].corrected) == percentiles_ms(
        direct.operations["redirect"].corrected
    )
    assert sum(b.histogram.get_total_count() for b in merged.seconds.values()) == 8100


@pytest.mark.parametrize("digits", [2, 3])
def test_fast_counts_land_in_the_same_buckets_as_hdrhistogram(digits: int) -> None:
    values = [1, 2, 127, 128, 255, 256, 1023, 1024, 2047, 2048, 2049, 4095, 99_999, 123_457]
    values += [HIGHEST_US - 1, HIGHEST_US] + [
        random.Random(7).randint(1, HIGHEST_US) for _ in range(2000)
    ]
    reference = latency_histogram(digits)
    fast = _Counts(digits)
    for value in values:
        reference.record_value(value)
        fast.counts[_index(value, fast.half)] += 1
    drained = latency_histogram(digits)
    fast.drain(drained)
    assert list(drained.counts) == list(reference.counts)
    assert drained.get_total_count() == len(values)
    # The drain writes the counts array directly: what record_value tracks must match too.
    assert drained.get_min_value() == reference.get_min_value()
    assert drained.get_max_value() == reference.get_max_value()
    assert drained.get_percentile_to_value_dict([50, 99, 99.9]) == (
        reference.get_percentile_to_value_dict([50, 99, 99.9])
    )
    fast.drain(drained)  # drained counts are gone: a second drain adds nothing
    assert drained.get_total_count() == len(values)


def test_a_batch_records_exactly_what_one_response_at_a_time_records() -> None:
    rng = random.Random(11)
    rows = [
        (
            rng.choice([200, 302, 302, 404, 503]),
            rng.choice([-3, 0, 1, 2047, 2048, HIGHEST_US + 5, rng.randint(1, 5_000_000)]),
            rng.randint(-2, 900_000),
            rng.randint(0, 3000),
            rng.randint(0, 4),
        )
        for _ in range(3000)
    ]
    one_by_one = Recorder()
    for status, corrected, uncorrected, lag, second in rows:
        one_by_one.response("get", status, corrected, uncorrected, lag, second)
    batched = Recorder()
    for start in (0, 1000, 1001, 2500):  # uneven batches, one of a single row
        end = {0: 1000, 1000: 1001, 1001: 2500, 2500: 3000}[start]
        columns = np.array(rows[start:end], dtype=np.int64).T
        batched.responses_batch("get", *columns)
    assert batched.to_wire() == one_by_one.to_wire()
