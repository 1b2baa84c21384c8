"""Where load may go: an http:// URL whose address is in the allow-list, checked before I/O."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from labkit.errors import ConfigError, ConnectError, NotAllowed
from labkit.params import address_allowed

if TYPE_CHECKING:
    from labkit.params import Lab

__all__ = ["LOOPBACK", "Target", "answers", "reached_shlink", "resolve_target"]

LOOPBACK = ["127.0.0.0/8", "::1/128"]


@dataclass(frozen=True)
class Target:
    """A checked target: the address connected to, the Host header, the path."""

    url: str
    address: str
    port: int
    host_header: str
    path: str


def resolve_target(url: str, allow_list: list[str]) -> Target:
    """Parse ``url`` and refuse it (NotAllowed) unless every address it means is allowed.

    A hostname is allowed when it is listed itself, or when every address it resolves
    to is; the engine then connects to that resolved address, never re-resolving.
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigError(f"load target {url!r} is not a URL ({exc})") from exc
    if parts.scheme != "http":
        raise ConfigError(
            f"load target {url!r}: only plain http:// is supported by the engine "
            f"(got {parts.scheme or 'no scheme'!r}); benchmark TLS through a plain listener"
        )
    if not parts.hostname:
        raise ConfigError(f"load target {url!r} has no host; e.g. http://127.0.0.1:8080/")
    host = parts.hostname
    try:
        port = parts.port or 80
    except ValueError as exc:
        raise ConfigError(f"load target {url!r}: bad port ({exc})") from exc
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    host_header = host if port == 80 else f"{host}:{port}"
    if ":" in host and not host.startswith("["):
        host_header = f"[{host}]" if port == 80 else f"[{host}]:{port}"
    try:
        ipaddress.ip_address(host)
        addresses = [host]
    except ValueError:
        addresses = _resolve(host, port)
    refused = [a for a in addresses if not address_allowed(a, allow_list)]
    if refused and not address_allowed(host, allow_list):
        raise NotAllowed(
            f"load target {url!r} resolves to {', '.join(refused)}, outside the allow-list "
            f"{allow_list}; load goes only to targets the params allow (no request was sent)"
        )
    return Target(url, addresses[0], port, host_header, path)


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(f"load target host {host!r} does not resolve ({exc.strerror})") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def answers(url: str, timeout_s: float = 2.0) -> bool:
    """Whether ``url``'s ``/rest/health`` answers at all (any HTTP status)."""
    import httpx  # noqa: PLC0415

    try:
        with httpx.Client(timeout=timeout_s, trust_env=False) as client:
            client.get(url.rstrip("/") + "/rest/health")
    except httpx.HTTPError:
        return False
    return True


@contextmanager
def reached_shlink(lab: Lab, progress: Callable[[str], None] = print) -> Iterator[Lab]:
    """``lab`` with a Shlink base URL the load can reach, for a ``with`` block.

    The sandbox, or a lab whose ``shlink.base_url`` answers: ``lab`` unchanged. A
    cluster lab whose base URL does not answer: the URL of a port-forward to the
    Shlink Service (through the Kubernetes API), held until the block ends. The base
    URL is checked against the allow-list before anything is sent to it.
    """
    url = lab.shlink.base_url
    if lab.kind == "sandbox":
        yield lab
        return
    lab.require_allowed(urlsplit(url).hostname or "")
    if answers(url):
        yield lab
        return
    from labkit.cluster.client import Cluster  # noqa: PLC0415 - the kubernetes client
    from labkit.cluster.plan import unreachable_reason  # noqa: PLC0415
    from labkit.cluster.reach import Reach  # noqa: PLC0415

    reason = unreachable_reason(lab)
    if reason:
        raise ConnectError(
            f"Shlink at {url} does not answer, and labkit cannot forward a port to it: {reason}"
        )
    with Cluster.open(lab) as cluster, Reach(cluster, lab) as reach:
        forwarded = reach.shlink_url()
        progress(
            f"{url} does not answer: the load goes through a port-forward to "
            f"{lab.shlink.namespace}/shlink ({forwarded})"
        )
        shlink = lab.shlink.model_copy(update={"base_url": forwarded})
        yield lab.model_copy(update={"shlink": shlink})
