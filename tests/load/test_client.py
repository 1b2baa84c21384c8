"""The connection pool's failure paths: answers the parser rejects are ``protocol`` errors."""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httptools
import pytest

from labkit.load.client import STATUS_SPAN, Pool, is_parse_error
from labkit.load.schedule import Schedule
from labkit.load.worker import WorkerSpec, run_worker
from labkit.load.workload import Fixed, Mixed, Workload
from tests.load.conftest import TestServer


class _Garbage(socketserver.BaseRequestHandler):
    """Answers every request with ``server.answer``, bytes no HTTP parser accepts."""

    def handle(self) -> None:
        received = b""
        while True:
            data = self.request.recv(4096)
            if not data:
                return
            received += data
            while b"\r\n\r\n" in received:
                _, _, received = received.partition(b"\r\n\r\n")
                self.request.sendall(self.server.answer)  # type: ignore[attr-defined]


@pytest.fixture
def garbage_server() -> Iterator[socketserver.ThreadingTCPServer]:
    """A loopback server of our own that answers with ``server.answer`` (set by the test)."""
    socketserver.ThreadingTCPServer.daemon_threads = True
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Garbage)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.mark.parametrize(
    "answer",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: zz\r\n\r\n",
    ],
    ids=["not-http", "bad-content-length"],
)
def test_a_malformed_response_is_a_protocol_error_of_its_operation_and_logs_nothing(
    garbage_server: socketserver.ThreadingTCPServer,
    answer: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    garbage_server.answer = answer  # type: ignore[attr-defined]
    port = garbage_server.server_address[1]
    # Two operations, so an error charged to the wrong operation would show.
    workload = Mixed(
        read=Fixed("127.0.0.1", "/read", operation="read"),
        write=Fixed("127.0.0.1", "/write", operation="write"),
        reads=1,
        writes=1,
    )
    spec = WorkerSpec(
        host="127.0.0.1",
        port=port,
        workload=workload,
        schedule=Schedule.constant(40, 0.5),
        connections=2,
        read_timeout_s=5.0,
    )
    with caplog.at_level(logging.ERROR):
        result = run_worker(spec, lambda: time.monotonic_ns() + 20_000_000)
    operations = result["recorder"]["operations"]
    assert operations["read"]["errors"] == {"protocol": 10}
    assert operations["write"]["errors"] == {"protocol": 10}
    assert operations["read"]["status_codes"] == operations["write"]["status_codes"] == {}
    # Counted, so not reported again as a fatal transport error by the event loop.
    assert not [record for record in caplog.records if "Fatal error" in record.getMessage()]


def test_only_the_parser_s_own_errors_count_as_malformed_responses() -> None:
    assert is_parse_error(httptools.HttpParserError("bad"))
    assert is_parse_error(httptools.HttpParserUpgrade("upgrade"))
    # An exception raised in our own callback is a bug: it must stay visible.
    assert not is_parse_error(httptools.HttpParserCallbackError("bug"))
    assert not is_parse_error(ConnectionResetError())
    assert not is_parse_error(None)


def test_a_connect_that_never_completes_is_a_connect_timeout() -> None:
    """A listener that never accepts: once its queue is full the kernel drops new SYNs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        for _ in range(8):  # fill the accept queue (its size is backlog + 1 or so)
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        time.sleep(0.2)
        spec = WorkerSpec(
            host="127.0.0.1",
            port=port,
            workload=Fixed("127.0.0.1", "/"),
            schedule=Schedule.constant(4, 0.5),
            connections=2,
            connect_timeout_s=0.3,
            read_timeout_s=1.0,
        )
        try:
            result = run_worker(spec, lambda: time.monotonic_ns() + 20_000_000)
        finally:
            for filler in fillers:
                filler.close()
    (operation,) = result["recorder"]["operations"].values()
    errors = operation["errors"]
    assert errors == {"connect_timeout": 2}, errors


@dataclass(frozen=True)
class _BigPost(Workload):
    """POSTs with a body larger than the loopback socket buffers can hold at once."""

    size: int

    def request(self, index: int) -> tuple[str, bytes]:
        head = f"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {self.size}\r\n\r\n"
        return "upload", head.encode() + b"x" * self.size

    @property
    def operations(self) -> tuple[str, ...]:
        return ("upload",)


def _buffer(name: str, which: int) -> int:
    """min, default, max of /proc/sys/net/ipv4/tcp_wmem or tcp_rmem."""
    return int(Path(f"/proc/sys/net/ipv4/{name}").read_text().split()[which])


def test_a_request_the_socket_cannot_take_at_once_is_still_sent_whole() -> None:
    size = 12 * 1024 * 1024
    # The premise: while the server is frozen (not reading, so its receive buffer stays
    # at its default size), the socket cannot take the whole request in one write.
    assert size > _buffer("tcp_wmem", 2) + _buffer("tcp_rmem", 1)
    server = TestServer("--status", "200", "--stall-at", "0", "--stall-for", "0.5")
    try:
        spec = WorkerSpec(
            host="127.0.0.1",
            port=server.port,
            workload=_BigPost(size),
            schedule=Schedule.constant(4, 0.5),
            connections=2,
            read_timeout_s=20.0,
        )
        result = run_worker(spec, lambda: time.monotonic_ns() + 20_000_000)
    finally:
        server.stop()
    upload = result["recorder"]["operations"]["upload"]
    assert upload["status_codes"] == {"200": 2} and upload["errors"] == {}, upload


def test_a_full_backlog_charges_requests_not_sent_instead_of_growing() -> None:
    """Memory stays bounded when the plan outruns the connections (e.g. a stalled server)."""
    charged: list[tuple[int, str, int, int, int]] = []
    pool = Pool(
        "127.0.0.1", 9, 0, lambda *failure: charged.append(failure), backlog_max=3
    )  # size 0: nothing is ever opened, every request waits
    for index in range(5):
        pool.queue(STATUS_SPAN, b"GET / HTTP/1.1\r\n\r\n", index, 100 + index)
    assert [intended for _, _, intended, _ in pool.backlog] == [0, 1, 2]
    assert charged == [(1, "not_sent", 3, 103, 103), (1, "not_sent", 4, 104, 104)]
