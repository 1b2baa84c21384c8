"""Fixtures for the load tests: tiny HTTP servers we start ourselves on loopback."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from labkit.params import Lab, load_lab

SERVER = Path(__file__).with_name("servers.py")


class TestServer:
    """A servers.py process: its port, and its stdout lines after it stopped."""

    __test__ = False

    def __init__(self, *arguments: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(SERVER), *arguments], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # blocks until bound (or the process died)
        assert line.startswith("PORT "), f"test server did not start: {line!r}"
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}/"

    def stop(self) -> str:
        """Terminate our own server by its handle; returns what it printed."""
        if self.process.poll() is None:
            self.process.terminate()
        output, _ = self.process.communicate(timeout=10)
        return output


@pytest.fixture
def http_server() -> Iterator[Callable[..., TestServer]]:
    """Factory: ``http_server("--status", "503")`` starts a server, stopped after the test."""
    started: list[TestServer] = []

    def start(*arguments: str) -> TestServer:
        server = TestServer(*arguments)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def sandbox_params_lab() -> Lab:
    """params/local.yaml as a Lab (targets, allow-list); nothing is started."""
    return load_lab(Path(__file__).resolve().parents[2] / "params" / "local.yaml")


@pytest.fixture
def no_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any resolver call fails the test (and none reaches a real DNS server)."""

    def lookup(*arguments: object, **keywords: object) -> object:
        raise AssertionError(f"a name was looked up: {arguments}")

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    monkeypatch.setattr(socket, "gethostbyname", lookup)
