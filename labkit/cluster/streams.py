"""Websocket streams to the API (exec, port-forward), opened the way labkit opens requests.

The kubernetes client's own websocket helper takes its proxy from the environment
(through websocket-client) and has no timeout. Here a stream uses the kubeconfig's
TLS settings and bearer token, a proxy only when the kubeconfig names one (never
``http_proxy`` from the environment: it would carry the token off the lab), and
the Cluster's request timeout on connecting and on every read.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode, urlsplit

import certifi
import websocket as websocket_client

from labkit.errors import ClusterError, ConnectError, NotFound, WaitTimeout

__all__ = ["CHANNEL_PROTOCOL", "open_stream", "run_command"]

CHANNEL_PROTOCOL = "v4.channel.k8s.io"
_STDOUT, _STDERR, _ERROR = 1, 2, 3


def _ssl_options(configuration: Any) -> dict[str, Any]:
    if not configuration.verify_ssl:
        return {"cert_reqs": ssl.CERT_NONE}
    options: dict[str, Any] = {
        "cert_reqs": ssl.CERT_REQUIRED,
        "ca_certs": configuration.ssl_ca_cert or certifi.where(),
    }
    if configuration.cert_file:
        options["certfile"] = configuration.cert_file
    if configuration.key_file:
        options["keyfile"] = configuration.key_file
    if configuration.tls_server_name:
        options["server_hostname"] = configuration.tls_server_name
    return options


def open_stream(
    api_client: Any,
    path: str,
    query: Sequence[tuple[str, str]],
    timeout_s: float,
    what: str,
) -> Any:
    """A connected websocket to ``path`` speaking the channel protocol; errors name ``what``."""
    configuration = api_client.configuration
    headers: dict[str, str] = {}
    api_client.update_params_for_auth(headers, [], ["BearerToken"], "", "", None)
    base = urlsplit(configuration.host)
    scheme = "wss" if base.scheme == "https" else "ws"
    url = f"{scheme}://{base.netloc}{base.path.rstrip('/')}{path}?{urlencode(list(query))}"
    header = [f"{key}: {value}" for key, value in headers.items()]
    header.append(f"sec-websocket-protocol: {CHANNEL_PROTOCOL}")
    options: dict[str, Any] = {"header": header, "timeout": timeout_s}
    if configuration.proxy:
        proxy = urlsplit(configuration.proxy)
        options.update(http_proxy_host=proxy.hostname, http_proxy_port=proxy.port)
    else:
        # Never a proxy from the environment. websocket-client reads http(s)_proxy unless
        # it is given a proxy; one that the API's own host bypasses turns that off.
        options.update(
            http_proxy_host="proxy.invalid",
            http_proxy_port=9,
            http_no_proxy=[base.hostname or ""],
        )
    stream = websocket_client.WebSocket(sslopt=_ssl_options(configuration))
    try:
        stream.connect(url, **options)  # type: ignore[no-untyped-call]
    except websocket_client.WebSocketBadStatusException as exc:
        status = getattr(exc, "status_code", 0)
        if status == 404:
            raise NotFound(f"{what}: not found (HTTP 404)") from None
        if status in {401, 403}:
            raise ClusterError(
                f"{what}: refused (HTTP {status}); the kubeconfig's credentials are wrong or "
                "lack the pods/exec or pods/portforward permission"
            ) from None
        raise ClusterError(f"{what}: the API answered HTTP {status}") from None
    except (OSError, websocket_client.WebSocketException) as exc:
        raise ConnectError(
            f"{what}: cannot open the stream ({type(exc).__name__}: {exc})"
        ) from None
    return stream


def run_command(stream: Any, timeout_s: float, what: str) -> tuple[int, str, str]:
    """Read an exec stream to its end: (exit code, stdout, stderr)."""
    output: dict[int, list[bytes]] = {_STDOUT: [], _STDERR: [], _ERROR: []}
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if time.monotonic() > deadline:
                raise WaitTimeout(f"{what} did not finish in {timeout_s:.0f}s")
            try:
                opcode, frame = stream.recv_data_frame(True)
            except websocket_client.WebSocketTimeoutException:
                continue
            except websocket_client.WebSocketConnectionClosedException:
                break
            if opcode == websocket_client.ABNF.OPCODE_CLOSE:
                break
            data = frame.data
            if opcode == websocket_client.ABNF.OPCODE_BINARY and data and data[0] in output:
                output[data[0]].append(data[1:])
    finally:
        stream.close()
    text = {
        channel: b"".join(parts).decode("utf-8", "replace") for channel, parts in output.items()
    }
    return _exit_code(text[_ERROR], what), text[_STDOUT], text[_STDERR]


def _exit_code(status_text: str, what: str) -> int:
    """The exit code from the error channel's Status (``Success`` is 0)."""
    if not status_text.strip():
        raise ClusterError(f"{what}: the stream ended without an exit status")
    status = json.loads(status_text)
    if status.get("status") == "Success":
        return 0
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            return int(cause.get("message", "1"))
    raise ClusterError(f"{what}: {status.get('message', status_text)}")
