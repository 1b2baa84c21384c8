"""ShlinkClient against the sandbox's Shlink-compatible service on loopback."""

from __future__ import annotations

import re
import secrets
import socket
from collections.abc import Iterator

import pytest

from labkit.errors import ConnectError, NotAllowed
from labkit.params import Lab
from labkit.sandbox import Sandbox
from labkit.secrets import Secret
from labkit.shlink import ShlinkClient, ShlinkError
from tests.conftest import free_ports

pytestmark = pytest.mark.sandbox


@pytest.fixture
def client(sandbox: Sandbox, sandbox_lab: Lab) -> Iterator[ShlinkClient]:
    with ShlinkClient.from_lab(sandbox_lab) as shlink:
        yield shlink


def _slug() -> str:
    return f"client-{secrets.token_hex(4)}"


def test_create_get_edit_resolve_delete_round_trip(client: ShlinkClient) -> None:
    slug = _slug()
    created = client.create("https://example.com/round", custom_slug=slug, tags=["Round Trip"])
    assert (created["shortCode"], created["tags"]) == (slug, ["round-trip"])
    assert client.get(slug)["longUrl"] == "https://example.com/round"
    assert client.edit(slug, longUrl="https://example.org/new")["longUrl"] == (
        "https://example.org/new"
    )
    response = client.resolve(slug)
    assert (response.status_code, response.headers["location"]) == (302, "https://example.org/new")
    assert client.visits(slug)["visits"]["pagination"]["totalItems"] == 1
    client.delete(slug)
    with pytest.raises(ShlinkError) as caught:
        client.get(slug)
    assert caught.value.status == 404
    assert caught.value.type == "https://shlink.io/api/error/short-url-not-found"
    assert slug in caught.value.detail


def test_find_if_exists_returns_the_existing_short_url(client: ShlinkClient) -> None:
    long_url = f"https://example.com/find/{secrets.token_hex(4)}"
    first = client.create(long_url)
    again = client.create(long_url, find_if_exists=True)
    fresh = client.create(long_url)
    assert again["shortCode"] == first["shortCode"]
    assert fresh["shortCode"] != first["shortCode"]
    for code in {first["shortCode"], fresh["shortCode"]}:
        client.delete(code)


def test_list_pages(client: ShlinkClient) -> None:
    codes = [client.create(f"https://example.com/list/{i}")["shortCode"] for i in range(3)]
    page = client.list(page=1, items_per_page=2)["shortUrls"]
    assert len(page["data"]) == 2
    assert page["pagination"]["itemsPerPage"] == 2
    assert page["pagination"]["totalItems"] >= 3
    assert page["data"][0]["shortCode"] == codes[-1]  # newest first, as Shlink lists
    for code in codes:
        client.delete(code)


def test_health_passes(client: ShlinkClient) -> None:
    health = client.health()
    assert (health["httpStatus"], health["status"]) == (200, "pass")


def test_duplicate_slug_is_a_shlink_error_with_its_problem_type(client: ShlinkClient) -> None:
    slug = _slug()
    client.create("https://example.com/one", custom_slug=slug)
    with pytest.raises(ShlinkError) as caught:
        client.create("https://example.com/two", custom_slug=slug)
    assert caught.value.status == 400
    assert caught.value.type.endswith("/non-unique-slug")
    assert "non-unique-slug" in str(caught.value)
    client.delete(slug)


def test_wrong_key_is_reported_without_the_key(sandbox: Sandbox, sandbox_lab: Lab) -> None:
    wrong = Secret(f"wrong-{secrets.token_hex(8)}")
    with (
        ShlinkClient(sandbox_lab.shlink.base_url, wrong) as shlink,
        pytest.raises(ShlinkError) as caught,
    ):
        shlink.list()
    assert caught.value.status == 401
    assert "invalid-api-key" in str(caught.value)
    assert wrong.reveal() not in str(caught.value)
    assert wrong.reveal() not in repr(shlink)


def test_nothing_listening_is_a_connect_error() -> None:
    (port,) = free_ports(1)
    url = f"http://127.0.0.1:{port}"
    with (
        ShlinkClient(url, Secret("unused-key"), timeout_s=2) as shlink,
        pytest.raises(ConnectError, match=re.escape(url)),
    ):
        shlink.health()


def test_a_proxy_from_the_environment_is_never_used(monkeypatch: pytest.MonkeyPatch) -> None:
    # With HTTP_PROXY set, httpx would hand the request (and its X-Api-Key) to the proxy.
    with socket.socket() as proxy:
        proxy.bind(("127.0.0.1", 0))
        proxy.listen(1)
        proxy.settimeout(0.5)
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.getsockname()[1]}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        (port,) = free_ports(1)
        with (
            ShlinkClient(f"http://127.0.0.1:{port}", Secret("unused-key"), timeout_s=2) as shlink,
            pytest.raises(ConnectError),
        ):
            shlink.health()  # nothing listens there: refused, not proxied
        with pytest.raises(TimeoutError):
            proxy.accept()  # the proxy saw nothing


def test_from_lab_refuses_a_host_outside_the_allow_list(sandbox_lab: Lab) -> None:
    outside = sandbox_lab.model_copy(
        update={
            "shlink": sandbox_lab.shlink.model_copy(update={"base_url": "http://203.0.113.7:80"})
        }
    )
    with pytest.raises(NotAllowed, match=r"203\.0\.113\.7"):
        ShlinkClient.from_lab(outside)
