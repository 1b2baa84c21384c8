"""Tiny HTTP/1.1 test servers for the load engine, each run as its own process on loopback.

``python tests/load/servers.py [--stall-at S --stall-for D] [--status N]`` binds
127.0.0.1 on a free port, prints ``PORT <n>`` and serves every request with
``--status`` (default 302). ``--hang`` reads requests and never answers;
``--close-every N`` answers every N-th response with ``Connection: close`` and
closes (as nginx does at ``keepalive_requests``); ``--ignore N`` never answers the
N-th request (its connection stays open, silent); ``--close-at N`` closes the N-th
request's connection without answering, ``--reset-at N`` resets it (RST). With
``--stall-at``, ``S`` seconds after the first request it blocks its whole event
loop for ``D`` seconds (a GC pause or a SIGSTOP, as wrk2's demonstration does),
then prints ``STALL <start_ns> <end_ns>``.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import struct
import sys
import time

_REASONS = {200: "OK", 302: "Found", 404: "Not Found", 503: "Service Unavailable"}


class _Http(asyncio.Protocol):
    def __init__(self, server: _Server) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            self.server.received += 1
            if self.server.received == self.server.ignore:
                continue  # this one is never answered
            if self.server.received in (self.server.close_at, self.server.reset_at):
                assert self.transport is not None
                if self.server.received == self.server.reset_at:
                    sock = self.transport.get_extra_info("socket")
                    # Linger 0: close() sends RST instead of FIN.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.transport.abort()
                else:
                    self.transport.close()
                return
            if not self.server.hang:
                self.server.answer(self)


class _Server:
    def __init__(
        self,
        status: int,
        stall_at: float | None,
        stall_for: float,
        hang: bool = False,
        close_every: int = 0,
        ignore: int = 0,
        close_at: int = 0,
        reset_at: int = 0,
    ) -> None:
        self.hang = hang
        self.ignore = ignore
        self.close_at = close_at
        self.reset_at = reset_at
        self.received = 0
        self.close_every = close_every
        self.answered = 0
        status_line = f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n"
        self.response = (
            status_line + "Location: http://example.com/\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        self.stall_at = stall_at
        self.stall_for = stall_for
        self.first = False

    def answer(self, connection: _Http) -> None:
        if not self.first:
            self.first = True
            if self.stall_at is not None:
                asyncio.get_running_loop().call_later(self.stall_at, self.stall)
        assert connection.transport is not None
        self.answered += 1
        if self.close_every and self.answered % self.close_every == 0:
            closing = self.response.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
            connection.transport.write(closing)
            connection.transport.close()
            return
        connection.transport.write(self.response)

    def stall(self) -> None:
        start = time.monotonic_ns()
        time.sleep(self.stall_for)  # blocks the loop on purpose: the server is frozen
        end = time.monotonic_ns()
        print(f"STALL {start} {end}", flush=True)


async def _main(arguments: argparse.Namespace) -> None:
    server = _Server(
        arguments.status,
        arguments.stall_at,
        arguments.stall_for,
        arguments.hang,
        arguments.close_every,
        arguments.ignore,
        arguments.close_at,
        arguments.reset_at,
    )
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: _Http(server), "127.0.0.1", 0, backlog=1024)
    port = listener.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    await listener.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--status", type=int, default=302)
    parser.add_argument("--stall-at", type=float)
    parser.add_argument("--stall-for", type=float, default=0.0)
    parser.add_argument("--hang", action="store_true")
    parser.add_argument("--close-every", type=int, default=0)
    parser.add_argument("--ignore", type=int, default=0)
    parser.add_argument("--close-at", type=int, default=0)
    parser.add_argument("--reset-at", type=int, default=0)
    try:
        asyncio.run(_main(parser.parse_args()))
    except KeyboardInterrupt:
        sys.exit(0)
