"""The hot path: raw HTTP/1.1 keep-alive connections on asyncio transports, parsed by httptools.

A ``Pool`` holds at most ``size`` connections. A submitted request goes to an
idle connection, or waits in a FIFO backlog (that wait counts in its corrected
latency). Redirects are never followed: a 302 is the answer. Connections the
server closes between requests are replaced without counting an error; a
request in flight when its connection breaks is counted by category.
"""

from __future__ import annotations

import asyncio
import errno
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import httptools

__all__ = ["Pending", "Pool"]


@dataclass(slots=True)
class Pending:
    """One request: what to send, when it was due, when the scheduler dispatched it."""

    operation: str
    raw: bytes
    intended_ns: int
    dispatched_ns: int
    measured: bool
    written_ns: int = 0


# on_done(pending, status or 0, error category or "", completion ns)
Done = Callable[[Pending, int, str, int], None]


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.pending: Pending | None = None
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Remember the transport (the pool learns of it from its connect task)."""
        # uvloop's transports are not asyncio.Transport subclasses, only duck-typed ones.
        self.transport = cast(asyncio.Transport, transport)

    def send(self, pending: Pending) -> None:
        """Write a request; its uncorrected latency starts now."""
        assert self.transport is not None
        self.pending = pending
        pending.written_ns = time.monotonic_ns()
        self.transport.write(pending.raw)

    def data_received(self, data: bytes) -> None:
        """Feed the parser; a malformed response is a ``protocol`` error."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.fail("protocol")

    def on_message_complete(self) -> None:
        """httptools callback: a full response arrived (and says if the connection stays)."""
        self.keep_alive = self.parser.should_keep_alive()
        pending, self.pending = self.pending, None
        if pending is None:
            self.fail("protocol")  # a response nobody asked for
            return
        self.pool.answered(self, pending, self.parser.get_status_code())

    def fail(self, category: str) -> None:
        """Charge the request in flight (if any) to ``category`` and drop the connection."""
        pending, self.pending = self.pending, None
        if pending is not None:
            self.pool.on_done(pending, 0, category, time.monotonic_ns())
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        """A request in flight is a ``reset`` (an error) or ``closed`` (clean EOF)."""
        pending, self.pending = self.pending, None
        if pending is not None:
            category = "closed" if exc is None else "reset"
            self.pool.on_done(pending, 0, category, time.monotonic_ns())
        self.pool.lost(self)


class Pool:
    """At most ``size`` keep-alive connections to one address, with a FIFO backlog."""

    def __init__(
        self,
        host: str,
        port: int,
        size: int,
        on_done: Done,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.size = size
        self.on_done = on_done
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_ns = int(read_timeout_s * 1e9)
        self.idle: list[_Connection] = []
        self.busy: set[_Connection] = set()
        self.backlog: deque[Pending] = deque()
        self.opening = 0
        self.connects = 0  # connections opened, for honest connection accounting
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def open(self) -> int:
        """Connections open or being opened."""
        return len(self.idle) + len(self.busy) + self.opening

    @property
    def outstanding(self) -> int:
        """Requests in flight or waiting for a connection."""
        return len(self.busy) + len(self.backlog)

    async def prewarm(self) -> int:
        """Open every connection before the run starts; returns how many opened."""
        results = await asyncio.gather(
            *(self._connect() for _ in range(self.size)), return_exceptions=True
        )
        for result in results:
            if isinstance(result, _Connection):
                self.idle.append(result)
        return len(self.idle)

    def submit(self, pending: Pending) -> None:
        """Send now on an idle connection, or queue (opening a connection if below the cap)."""
        if self.idle:
            connection = self.idle.pop()
            self.busy.add(connection)
            connection.send(pending)
            return
        self.backlog.append(pending)
        if self.open < self.size:
            self._open_later()

    def answered(self, connection: _Connection, pending: Pending, status: int) -> None:
        """A response arrived: record it, then reuse or retire the connection."""
        self.on_done(pending, status, "", time.monotonic_ns())
        if not connection.keep_alive:
            # The server said "Connection: close": nothing is in flight, so close cleanly;
            # lost() opens a replacement if requests are waiting.
            if connection.transport is not None:
                connection.transport.close()
            return
        if self.backlog:
            connection.send(self.backlog.popleft())
        else:
            self.busy.discard(connection)
            self.idle.append(connection)

    def lost(self, connection: _Connection) -> None:
        """Forget a closed connection; open a replacement when requests are waiting."""
        self.busy.discard(connection)
        if connection in self.idle:
            self.idle.remove(connection)
        if self.backlog and self.open < self.size:
            self._open_later()

    def expire(self, now_ns: int) -> None:
        """Fail requests in flight longer than the read timeout (called periodically)."""
        for connection in list(self.busy):
            pending = connection.pending
            if pending is not None and now_ns - pending.written_ns > self.read_timeout_ns:
                connection.fail("read_timeout")

    def abandon(self, now_ns: int) -> None:
        """At the end of the run: everything still waiting is charged, connections closed."""
        while self.backlog:
            self.on_done(self.backlog.popleft(), 0, "not_sent", now_ns)
        for connection in list(self.busy):
            connection.fail("read_timeout")
        for connection in list(self.idle):
            if connection.transport is not None:
                connection.transport.close()
        self.idle.clear()

    def _open_later(self) -> None:
        self.opening += 1
        task = asyncio.get_running_loop().create_task(self._replace())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _replace(self) -> None:
        try:
            connection = await self._connect()
        except OSError as exc:
            self.opening -= 1
            # A failed connect consumes the request it was opened for, so a dead server
            # shows up as errors at the planned rate instead of an ever-growing queue.
            if self.backlog:
                self.on_done(self.backlog.popleft(), 0, _connect_category(exc), time.monotonic_ns())
            if self.backlog and self.open < self.size:
                self._open_later()  # every waiting request gets its own attempt
            return
        self.opening -= 1
        if self.backlog:
            self.busy.add(connection)
            connection.send(self.backlog.popleft())
        else:
            self.idle.append(connection)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(self), self.host, self.port),
                self.connect_timeout_s,
            )
        except TimeoutError as exc:
            raise _ConnectTimeout(errno.ETIMEDOUT, "connect timed out") from exc
        self.connects += 1
        return protocol


class _ConnectTimeout(OSError):
    """A connect that did not finish within the connect timeout."""


def _connect_category(exc: OSError) -> str:
    if isinstance(exc, _ConnectTimeout):
        return "connect_timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connect_refused"
    return "connect_error"
