"""Targets: parsed, and refused before any I/O unless allowed."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from labkit.errors import ConfigError, NotAllowed
from labkit.load.target import LOOPBACK, masked_url, resolve_target


def test_loopback_url_is_parsed() -> None:
    target = resolve_target("http://127.0.0.1:18080/abc?x=1", LOOPBACK)
    assert (target.address, target.port, target.path) == ("127.0.0.1", 18080, "/abc?x=1")
    assert target.host_header == "127.0.0.1:18080"


@pytest.mark.parametrize("url", ["http://localhost:9/", "http://LOCALHOST.:9/x"])
def test_localhost_is_loopback_without_a_lookup(url: str, no_lookup: None) -> None:
    target = resolve_target(url, LOOPBACK)
    assert (target.address, target.port) == ("127.0.0.1", 9)


def test_localhost_is_still_refused_when_loopback_is_not_allowed(no_lookup: None) -> None:
    with pytest.raises(NotAllowed, match=r"127\.0\.0\.1, outside the allow-list"):
        resolve_target("http://localhost:9/", ["10.77.0.0/24"])


@pytest.mark.parametrize(
    "url",
    [
        "http://example.invalid/",
        "http://localhost.example/",
        "http://127.1:9/",  # inet_aton's short form: a name to a resolver, not an address
        "http://xn--nxasmq6b.example:8080/",
        "http://a.localhost:9/",
    ],
)
def test_a_hostname_outside_the_allow_list_is_refused_before_any_lookup(
    url: str, no_lookup: None
) -> None:
    with pytest.raises(NotAllowed, match="nothing was looked up or sent"):
        resolve_target(url, [*LOOPBACK, "shlink.lab"])


def test_a_hostname_the_allow_list_names_is_looked_up(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[object] = []

    def lookup(host: str, port: int, *arguments: object, **keywords: object) -> object:
        asked.append(host)  # answered here: no real resolver is asked
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("198.51.100.7", port))]

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    target = resolve_target("http://Shlink.Lab:8080/", ["shlink.lab"])
    assert asked == ["shlink.lab"] and target.address == "198.51.100.7"


@pytest.mark.parametrize(
    "url",
    [
        "http://user:secret@127.0.0.1:9/",
        "http://secret@127.0.0.1:9/",
        "http://u:secret@[::1]:9/x?y=@",
        "user:secret@127.0.0.1:9",
        "http://u:p@a@b:secret@127.0.0.1:9/",
    ],
)
def test_a_url_with_credentials_is_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(ConfigError) as refused:
        resolve_target(url, LOOPBACK)
    assert "secret" not in str(refused.value) and "*****@" in str(refused.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:secret@127.0.0.1:9/a@b", "http://*****@127.0.0.1:9/a@b"),
        ("http://127.0.0.1:9/a@b", "http://127.0.0.1:9/a@b"),
        ("u:secret@h", "*****@h"),
        ("http://" + "a" * 300, "http://" + "a" * 193 + "... (307 characters)"),
    ],
)
def test_masked_url_hides_credentials_and_cuts_long_urls(url: str, shown: str) -> None:
    assert masked_url(url) == shown


def test_port_zero_is_a_bad_port_not_80() -> None:
    with pytest.raises(ConfigError, match="bad port"):
        resolve_target("http://127.0.0.1:0/", LOOPBACK)


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


# -- reached_shlink: the base URL, or a port-forward to the Shlink Service on a cluster lab --


def _health(method: str, path: str, body: bytes) -> tuple[int, str, str]:
    return (200, "application/json", '{"status":"pass"}') if path == "/rest/health" else (
        404, "application/json", "{}"
    )  # fmt: skip


def _free_port() -> int:
    import socket

    with socket.socket() as closed:  # a loopback port nobody listens on
        closed.bind(("127.0.0.1", 0))
        return int(closed.getsockname()[1])


def test_a_cluster_lab_whose_base_url_is_silent_gets_a_forward_held_for_the_block(
    tmp_path: Path,
) -> None:
    import httpx

    from labkit.load.target import reached_shlink
    from tests.kubeapi import KubeApi, fixtures
    from tests.kubeapi.backends import serve

    with KubeApi() as api, serve(_health) as backend:
        fixtures.healthy_lab(api.store)
        api.store.put(fixtures.namespace("shlink"))
        labels = {"app.kubernetes.io/name": "shlink"}
        api.store.put(fixtures.pod("shlink-6d9f8-abcde", "shlink", "shlinkio/shlink:4", labels))
        api.store.put(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "shlink", "namespace": "shlink"},
                "spec": {
                    "selector": labels,
                    "ports": [{"name": "http", "port": 8080, "targetPort": 8080}],
                },
            }
        )
        api.wire.backends[("shlink", "shlink-6d9f8-abcde", "8080")] = backend
        silent = f"http://127.0.0.1:{_free_port()}"
        lab = api.lab(tmp_path / "lab", shlink={"base_url": silent})
        lines: list[str] = []
        with reached_shlink(lab, lines.append) as reached:
            url = reached.shlink.base_url
            assert url != silent and url.startswith("http://127.0.0.1:")
            assert httpx.get(f"{url}/rest/health", trust_env=False).json() == {"status": "pass"}
        assert any("port-forward to shlink/shlink" in line for line in lines)
        with pytest.raises(httpx.TransportError):  # the forward is closed after the block
            httpx.get(f"{url}/rest/health", trust_env=False, timeout=2)
        # A base URL that answers is used as it is, and the API is not asked.
        before = len(api.requests())
        lab = api.lab(tmp_path / "lab2", shlink={"base_url": f"http://{backend[0]}:{backend[1]}"})
        with reached_shlink(lab, lines.append) as reached:
            assert reached is lab
        assert len(api.requests()) == before


def test_a_cluster_lab_with_no_kubeconfig_and_a_silent_url_says_both(tmp_path: Path) -> None:
    from labkit.errors import ConnectError
    from labkit.load.target import reached_shlink
    from labkit.params import load_lab

    root = Path(__file__).resolve().parents[2]
    lab = load_lab(root / "params" / "local.yaml")
    k3s = lab.k3s.model_copy(update={"kubeconfig": tmp_path / "absent.yaml"})
    shlink = lab.shlink.model_copy(update={"base_url": f"http://127.0.0.1:{_free_port()}"})
    lab = lab.model_copy(update={"kind": "homelab", "k3s": k3s, "shlink": shlink})
    with (
        pytest.raises(
            ConnectError, match=r"does not answer, and labkit cannot forward.*no kubeconfig"
        ),
        reached_shlink(lab),
    ):
        pass
