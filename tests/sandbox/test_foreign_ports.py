"""A foreign server already on a component's port is reported as "port in use", never as it.

Each case puts a real server of another program on the port a sandbox component is
configured for, then starts that component: it must refuse with the port before it
starts anything, instead of taking the foreign server's answers for its own readiness.
"""

from __future__ import annotations

import http.server
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis as redis_py

from labkit.errors import LabkitError
from labkit.params import Lab, load_lab
from labkit.sandbox import Sandbox, postgres, processes, redis
from labkit.secrets import Secret
from tests.conftest import write_sandbox_params


def test_port_in_use_tells_a_listener_from_a_free_port() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        listener.listen()
        assert processes.port_in_use("127.0.0.1", port) is True
    assert processes.port_in_use("127.0.0.1", port) is False


def test_start_refuses_a_taken_port_before_it_starts_anything(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(LabkitError, match=rf"sandbox echo: port {port} on 127.0.0.1 is in use"):
            processes.start("echo", ["true"], tmp_path, listens=[("127.0.0.1", port)])
    assert not (tmp_path / "run" / "echo.pid").exists()


@contextmanager
def foreign_redis(port: int) -> Iterator[None]:
    """A Redis that is not the sandbox's (no replicas, no Sentinels) on ``port``."""
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with closing(redis_py.Redis(port=port, socket_timeout=1)) as client:
                    if client.ping():
                        break
            except redis_py.RedisError:
                assert time.monotonic() < deadline, "the foreign redis did not start"
                time.sleep(0.05)
        yield
    finally:
        server.terminate()
        server.wait(timeout=20)


@contextmanager
def foreign_http(port: int) -> Iterator[None]:
    """An HTTP server that answers 200 to everything, as a healthy shortener would."""

    class Always200(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Always200)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def foreign_listener(port: int) -> Iterator[None]:
    """A TCP listener that accepts and says nothing."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen()
        yield


def start_redis(lab: Lab, state: Path) -> None:
    try:
        redis.start_redis(lab, state, progress=lambda _: None)
    finally:
        redis.stop_redis(lab, state)


def start_shortener(lab: Lab, state: Path) -> None:
    sandbox = Sandbox(lab)
    try:
        sandbox._start_shortener(lambda _: None)
    finally:
        processes.stop(sandbox._shortener())


def start_postgres(lab: Lab, state: Path) -> None:
    try:
        postgres.start_postgres(lab, state, Secret("a-password-for-this-test"), lambda _: None)
    finally:
        postgres.stop_postgres(state)


Case = tuple[str, Callable[[Lab], int], Callable[[int], Any], Callable[[Lab, Path], None]]
CASES: list[Case] = [
    ("redis master", lambda lab: lab.redis.port, foreign_redis, start_redis),
    ("shortener", lambda lab: int(lab.shlink.base_url.rsplit(":", 1)[1]), foreign_http,
     start_shortener),
    ("postgres primary", lambda lab: lab.postgres.port, foreign_listener, start_postgres),
]  # fmt: skip


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
@pytest.mark.parametrize(("component", "port_of", "foreign", "start"), CASES)
def test_a_foreign_server_on_a_components_port_is_port_in_use(
    tmp_path: Path,
    component: str,
    port_of: Callable[[Lab], int],
    foreign: Callable[[int], Any],
    start: Callable[[Lab, Path], None],
) -> None:
    lab = load_lab(write_sandbox_params(tmp_path, "foreign-ports"))
    state = Sandbox(lab).state_dir
    port = port_of(lab)
    with foreign(port):
        with pytest.raises(LabkitError) as caught:
            start(lab, state)
        assert f"port {port} on 127.0.0.1 is in use by a program that is not this sandbox's" in (
            str(caught.value)
        ), component
        # status says the same about the component, instead of "not running" alone
        components = Sandbox(lab).status()["components"]
        named = [e for e in components if str(port) in str(e["address"])]
        assert named and all("in use" in e["detail"] for e in named), named
