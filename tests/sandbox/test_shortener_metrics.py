"""The service's /metrics: RED by route template and status, summed over uvicorn's workers."""

from __future__ import annotations

import secrets

import httpx
from prometheus_client.parser import text_string_to_metric_families

from labkit.params import Lab
from labkit.sandbox import Sandbox


def _samples(lab: Lab) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{lab.shlink.base_url}/metrics", trust_env=False, timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


def test_requests_are_counted_by_route_template_and_status(
    sandbox: Sandbox, sandbox_lab: Lab
) -> None:
    labels = {"route": "/{shortCode}", "method": "GET", "status": "404"}
    before = _samples(sandbox_lab)
    with httpx.Client(base_url=sandbox_lab.shlink.base_url, trust_env=False) as http:
        for _ in range(25):  # spread over the workers by the kernel; the sum must be exact
            http.get(f"/labkit-metrics-{secrets.token_hex(4)}")
    after = _samples(sandbox_lab)
    counter = _key("shlink_http_requests_total", **labels)
    count = _key("shlink_http_request_duration_seconds_count", **labels)
    assert after[counter] - before.get(counter, 0.0) == 25
    assert after[count] - before.get(count, 0.0) == 25
    assert _key("shlink_http_request_duration_seconds_bucket", **labels, le="+Inf") in after
    # Codes never become label values: one series per route template.
    assert not [key for key in after if "labkit-metrics-" in str(key)]
