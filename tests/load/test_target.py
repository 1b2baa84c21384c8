"""Targets: parsed, and refused before any I/O unless allowed."""

from __future__ import annotations

import pytest

from labkit.errors import ConfigError, NotAllowed
from labkit.load.target import LOOPBACK, resolve_target


def test_loopback_url_is_parsed() -> None:
    target = resolve_target("http://127.0.0.1:18080/abc?x=1", LOOPBACK)
    assert (target.address, target.port, target.path) == ("127.0.0.1", 18080, "/abc?x=1")
    assert target.host_header == "127.0.0.1:18080"


def test_localhost_resolves_to_an_allowed_address() -> None:
    target = resolve_target("http://localhost:9/", LOOPBACK)
    assert target.address in {"127.0.0.1", "::1"}


@pytest.mark.parametrize(
    "url", ["http://10.99.0.1:80/", "http://8.8.8.8/", "http://[2001:db8::1]:8080/"]
)
def test_address_outside_the_allow_list_is_refused(url: str) -> None:
    with pytest.raises(NotAllowed, match="outside the allow-list"):
        resolve_target(url, LOOPBACK)


@pytest.mark.parametrize("url", ["https://127.0.0.1/", "127.0.0.1:80", "http:///x"])
def test_unsupported_or_incomplete_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        resolve_target(url, LOOPBACK)
