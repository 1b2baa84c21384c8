"""Loopback HTTP servers that stand behind the double's service and pod proxy.

``nginx()`` answers like nginx's welcome page; ``argocd(password)`` answers
argocd-server's ``/healthz`` and ``POST /api/v1/session`` (a token for the right
admin password, 401 otherwise). Register them in ``api.wire.backends``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = Callable[[str, str, bytes], tuple[int, str, str]]  # method, path, body -> reply


@contextmanager
def serve(answer: Answer) -> Iterator[tuple[str, int]]:
    """A loopback HTTP server answering with ``answer``; yields its (host, port)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _reply(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            code, content_type, text = answer(self.command, self.path, body)
            data = text.encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _reply  # noqa: N815

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _nginx(method: str, path: str, body: bytes) -> tuple[int, str, str]:
    return 200, "text/html", "<html><title>Welcome to nginx!</title></html>"


def nginx() -> Any:
    """A stand-in for nginx's welcome page."""
    return serve(_nginx)


def argocd(password: str) -> Any:
    """A stand-in for argocd-server: /healthz and the session (login) endpoint."""

    def answer(method: str, path: str, body: bytes) -> tuple[int, str, str]:
        if path == "/healthz":
            return 200, "text/plain", "ok"
        if method == "POST" and path == "/api/v1/session":
            sent = json.loads(body or b"{}")
            if sent == {"username": "admin", "password": password}:
                return 200, "application/json", json.dumps({"token": "eyJhbGciOi.session"})
            return 401, "application/json", json.dumps({"error": "Invalid username or password"})
        return 404, "text/plain", "not found"

    return serve(answer)
