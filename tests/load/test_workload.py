"""Workloads: the bytes of request i, and the 100:1 mix."""

from __future__ import annotations

import json
import pickle
from collections import Counter

from labkit.load.workload import Creates, Fixed, Mixed, Redirects


def test_fixed_get_is_a_complete_http11_request() -> None:
    operation, raw = Fixed("127.0.0.1:8080", "/health?x=1").request(7)
    assert operation == "get"
    assert raw == b"GET /health?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"


def test_redirects_cycle_through_the_codes() -> None:
    workload = Redirects("s.lab", ("a1", "b2"))
    paths = [workload.request(i)[1].split(b" ")[1] for i in range(4)]
    assert paths == [b"/a1", b"/b2", b"/a1", b"/b2"]


def test_creates_post_a_unique_long_url_with_the_api_key_header() -> None:
    workload = Creates("127.0.0.1:18080", run_tag="run1", api_key="k-123")
    operation, raw = workload.request(42)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert operation == "create"
    assert head.startswith(b"POST /rest/v3/short-urls HTTP/1.1\r\n")
    assert b"X-Api-Key: k-123" in head
    assert f"Content-Length: {len(body)}".encode() in head
    assert json.loads(body) == {"longUrl": "https://example.com/run1/42"}
    assert workload.request(43)[1] != raw


def test_the_api_key_never_shows_in_repr_but_survives_pickling() -> None:
    workload = Creates("h", run_tag="t", api_key="very-secret")
    assert "very-secret" not in repr(workload)
    assert pickle.loads(pickle.dumps(workload)).api_key == "very-secret"


def test_mixed_sends_exactly_one_write_per_hundred_reads() -> None:
    workload = Mixed(Redirects("h", ("a",)), Creates("h", "t", "k"), reads=100, writes=1)
    counts = Counter(workload.request(i)[0] for i in range(101 * 5))
    assert counts == {"redirect": 500, "create": 5}
    assert workload.operations == ("redirect", "create")
