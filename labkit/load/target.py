"""Where load may go: an http:// URL whose address is in the allow-list, checked before I/O."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from labkit.errors import ConfigError, NotAllowed
from labkit.params import address_allowed

__all__ = ["LOOPBACK", "Target", "resolve_target"]

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
