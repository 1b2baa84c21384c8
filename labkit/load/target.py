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

__all__ = [
    "LOOPBACK",
    "Target",
    "answers",
    "has_credentials",
    "masked_url",
    "reached_shlink",
    "resolve_target",
]

LOOPBACK = ["127.0.0.0/8", "::1/128"]


@dataclass(frozen=True)
class Target:
    """A checked target: the address connected to, the Host header, the path."""

    url: str
    address: str
    port: int
    host_header: str
    path: str


# RFC 6761: "localhost" names the loopback host itself, and an application may answer it
# without asking a resolver. labkit does: it is 127.0.0.1, and the allow-list decides.
_LOCALHOST = "127.0.0.1"
_SHOWN = 200  # characters of a URL quoted in an error


def _userinfo_end(url: str) -> int:
    """Where ``url``'s user:password@ ends (after its last "@"), or 0 when it has none."""
    _, separator, rest = url.partition("://")
    if not separator:
        rest = url
    start = len(url) - len(rest)
    authority_end = min((rest.find(c) for c in "/?#" if c in rest), default=len(rest))
    at = rest.rfind("@", 0, authority_end)
    return start + at + 1 if at >= 0 else 0


def has_credentials(url: str) -> bool:
    """Whether ``url`` carries user:password@ (or user@) before its host."""
    return _userinfo_end(url) > 0


def masked_url(url: str) -> str:
    """``url`` as messages may show it: any user:password@ masked, and cut when long."""
    end = _userinfo_end(url)
    if end:
        start = url.index("://") + 3 if "://" in url[:end] else 0
        url = f"{url[:start]}*****@{url[end:]}"
    return url if len(url) <= _SHOWN else f"{url[:_SHOWN]}... ({len(url):,} characters)"


def resolve_target(url: str, allow_list: list[str]) -> Target:
    """Parse ``url`` and refuse it (NotAllowed) unless every address it means is allowed.

    An IP address is allowed when the allow-list holds it. A hostname is looked up only
    when the allow-list names it itself (the lookup is then allowed too), and the engine
    connects to the address it resolved to, never re-resolving; any other hostname is
    refused before any lookup. ``localhost`` is 127.0.0.1 without a lookup (RFC 6761),
    allowed when 127.0.0.1 is. A URL with credentials (user:password@) is refused: labkit
    would print and store it.
    """
    shown = repr(masked_url(url))
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigError(f"load target {shown} is not a URL ({exc})") from exc
    if has_credentials(url) or "@" in parts.netloc:
        raise ConfigError(
            f"load target {shown}: a URL with credentials (user:password@) is refused, since "
            "labkit prints and stores its target; the load engine sends no authentication"
        )
    if parts.scheme != "http":
        raise ConfigError(
            f"load target {shown}: only plain http:// is supported by the engine "
            f"(got {parts.scheme or 'no scheme'!r}); benchmark TLS through a plain listener"
        )
    if not parts.hostname:
        raise ConfigError(f"load target {shown} has no host; e.g. http://127.0.0.1:8080/")
    host = parts.hostname
    try:
        port = 80 if parts.port is None else parts.port
    except ValueError as exc:
        raise ConfigError(f"load target {shown}: bad port ({exc})") from exc
    if port == 0:
        raise ConfigError(f"load target {shown}: bad port (0); give 1 to 65535")
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
        if host.rstrip(".") == "localhost":
            addresses = [_LOCALHOST]
        elif address_allowed(host, allow_list):
            addresses = _resolve(host, port)
        else:
            raise NotAllowed(
                f"load target {shown}: the hostname {host!r} is not in the allow-list "
                f"{allow_list}, and labkit looks up only names listed there (nothing was "
                "looked up or sent); give an allowed IP address, or add the name"
            ) from None
    refused = [a for a in addresses if not address_allowed(a, allow_list)]
    if refused and not address_allowed(host, allow_list):
        raise NotAllowed(
            f"load target {shown} resolves to {', '.join(refused)}, outside the allow-list "
            f"{allow_list}; load goes only to targets the params allow (no request was sent)"
        )
    return Target(url, addresses[0], port, host_header, path)


def _resolve(host: str, port: int) -> list[str]:
    """The addresses of a hostname the allow-list names itself (a resolver lookup)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise ConfigError(f"load target host {host!r} does not resolve ({reason})") from exc
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
