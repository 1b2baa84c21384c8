"""The hot path: raw HTTP/1.1 keep-alive connections on asyncio transports, parsed by httptools.

A ``Pool`` holds at most ``size`` connections. A dispatched request goes to an
idle connection, or waits in a FIFO backlog (that wait counts in its corrected
latency). Redirects are never followed: a 302 is the answer. Connections the
server closes between requests are replaced without counting an error; a
request in flight when its connection breaks is counted by category. A response
must say where it ends (Content-Length or chunked, as HTTP/1.1 servers and
proxies do): one that ends only by the server closing the connection (allowed
for HTTP/1.0) is counted as ``closed``, since httptools cannot be told of the
end of the stream.

Per request the hot path allocates nothing but one sample tuple: the request's
times live in its connection's slots, and a response appends
``operation * STATUS_SPAN + status, intended, dispatched, written, done`` (five
ints, times in ns) to the flat list ``Pool.samples``, which the worker turns into
histograms in vectorised batches (a flat list of ints converts to an array far
faster than one of tuples). Per response, one Python function runs: the event
loop hands the bytes straight to the httptools parser, which calls back
``on_message_complete`` once the response is whole; a malformed response makes
the parser raise, the transport close with that exception, and
``connection_lost`` charge the request to ``protocol``.
"""

from __future__ import annotations

import asyncio
import errno
import time
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import httptools

__all__ = [
    "BACKLOG_MAX",
    "SAMPLE_FIELDS",
    "STATUS_SPAN",
    "Failed",
    "Pool",
    "is_parse_error",
    "quiet_parse_errors",
]

# Five ints per response in Pool.samples: operation code * STATUS_SPAN + status, then
# intended, dispatched, written and done (ns). Status codes have three digits.
SAMPLE_FIELDS = 5
STATUS_SPAN = 1000
# Requests waiting for a connection, at most, per worker (about 15 MB): over four seconds
# of a stalled server at 25,000 req/s per worker. Beyond it a due request is charged
# ``not_sent`` at once, so a plan the generator or the server cannot keep never grows
# the worker's memory without limit.
BACKLOG_MAX = 100_000
# on_error(operation code, error category, intended ns, dispatched ns, done ns)
Failed = Callable[[int, str, int, int, int], None]
# A request waiting for a connection: (operation key, raw bytes, intended ns, dispatched ns),
# where the key is the operation code * STATUS_SPAN.
Waiting = tuple[int, bytes, int, int]

_monotonic_ns = time.monotonic_ns
# What the parser raises on a response it cannot parse (HttpParserUpgrade is no subclass).
_PARSE_ERRORS = (httptools.HttpParserError, httptools.HttpParserUpgrade)


def is_parse_error(exc: BaseException | None) -> bool:
    """True for a malformed response: the parser's error, not an exception in our callback."""
    return isinstance(exc, _PARSE_ERRORS) and not isinstance(exc, httptools.HttpParserCallbackError)


def quiet_parse_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Keep malformed responses out of the loop's error log: they are counted as ``protocol``.

    The parser raises out of ``data_received``; the loop reports that as a fatal
    transport error before closing the connection. Every other report still reaches
    the handler that was there before.
    """
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if is_parse_error(context.get("exception")):
            return
        if previous is None:
            loop.default_exception_handler(context)
        else:
            previous(loop, context)

    loop.set_exception_handler(handler)


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time (``written`` 0 when idle).

    ``operation`` holds the request's operation key (code * ``STATUS_SPAN``): adding
    the status gives the sample's first field in one addition.
    """

    __slots__ = (
        "backlog",
        "data_received",
        "dispatched",
        "idle",
        "intended",
        "operation",
        "parser",
        "pool",
        "record",
        "transport",
        "write",
        "written",
    )

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.record = pool.samples.extend
        self.backlog = pool.backlog
        self.idle = pool.idle
        self.transport: asyncio.Transport | None = None
        self.write: Callable[[bytes], None] = _not_connected
        self.parser = httptools.HttpResponseParser(self)
        # The event loop fetches data_received when the connection is made: the parser's
        # own method saves a Python call per read. A malformed response raises out of it;
        # the loop then closes the transport with that exception, and connection_lost
        # charges the request to "protocol".
        self.data_received: Callable[[bytes], None] = self.parser.feed_data  # type: ignore[assignment]
        self.operation = 0
        self.intended = 0
        self.dispatched = 0
        self.written = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Remember the transport (the pool learns of it from its connect task)."""
        # uvloop's transports are not asyncio.Transport subclasses, only duck-typed ones.
        self.transport = cast(asyncio.Transport, transport)
        self.write = self.transport.write

    def send(self, operation: int, raw: bytes, intended: int, dispatched: int, now: int) -> None:
        """Write a request (``operation`` is its key) at ``now``: uncorrected latency starts there.

        The worker's scheduler inlines this for idle connections.
        """
        self.operation = operation
        self.intended = intended
        self.dispatched = dispatched
        self.written = now
        self.write(raw)

    def on_message_complete(self) -> None:
        """httptools callback: a full response arrived; record it, then reuse the connection."""
        now = _monotonic_ns()
        written = self.written
        if not written:
            self.fail("protocol")  # a response nobody asked for
            return
        parser = self.parser
        self.record(
            (
                self.operation + parser.get_status_code(),
                self.intended,
                self.dispatched,
                written,
                now,
            )
        )
        if not parser.should_keep_alive():
            # The server said "Connection: close": nothing is in flight, so close cleanly;
            # lost() opens a replacement if requests are waiting.
            self.written = 0
            if self.transport is not None:
                self.transport.close()
            return
        backlog = self.backlog
        if backlog:
            operation, raw, intended, dispatched = backlog.popleft()
            self.operation = operation
            self.intended = intended
            self.dispatched = dispatched
            self.written = now
            self.write(raw)
        else:
            self.written = 0
            self.idle.append(self)

    def fail(self, category: str) -> None:
        """Charge the request in flight (if any) to ``category`` and drop the connection."""
        self._charge(category)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        """Charge a request in flight: ``protocol`` (unparsable), ``reset`` or ``closed`` (EOF)."""
        if is_parse_error(exc):
            self._charge("protocol")
        else:
            self._charge("reset" if exc is not None else "closed")
        self.pool.lost(self)

    def _charge(self, category: str) -> None:
        """The request in flight, if any, ends as an error of ``category``."""
        if self.written:
            self.written = 0
            self.pool.on_error(
                self.operation // STATUS_SPAN,
                category,
                self.intended,
                self.dispatched,
                _monotonic_ns(),
            )


class _BodyConnection(_Connection):
    """A connection that also keeps the response bodies of the pool's ``capture`` operations.

    Only a traced run (a drill) uses it: the parser calls ``on_body`` only when the
    protocol has one, so ordinary runs pay nothing for it.
    """

    __slots__ = ("body",)

    def __init__(self, pool: Pool) -> None:
        self.body: list[bytes] = []
        super().__init__(pool)

    def on_body(self, body: bytes) -> None:
        """httptools callback: a piece of the response body."""
        if self.operation in self.pool.capture:
            self.body.append(body)

    def on_message_complete(self) -> None:
        """Keep ``(operation key, intended, status, body)`` of a captured response, then go on."""
        if self.written and self.operation in self.pool.capture:
            self.pool.bodies.append(
                (
                    self.operation,
                    self.intended,
                    self.parser.get_status_code(),
                    b"".join(self.body),
                )
            )
        self.body.clear()
        super().on_message_complete()


def _not_connected(raw: bytes) -> None:
    raise ConnectionError("labkit load: write on a connection that is not open yet")


class Pool:
    """At most ``size`` keep-alive connections to one address, with a FIFO backlog."""

    def __init__(
        self,
        host: str,
        port: int,
        size: int,
        on_error: Failed,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 10.0,
        capture: frozenset[int] = frozenset(),
        backlog_max: int = BACKLOG_MAX,
    ) -> None:
        self.host = host
        self.port = port
        self.size = size
        self.on_error = on_error
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_ns = int(read_timeout_s * 1e9)
        self.samples: list[int] = []
        self.idle: list[_Connection] = []
        self.connections: set[_Connection] = set()  # open, idle or busy
        self.backlog: deque[Waiting] = deque()
        self.backlog_max = backlog_max
        self.opening = 0
        self.connects = 0  # connections opened, for honest connection accounting
        self._tasks: set[asyncio.Task[None]] = set()
        # Operation keys whose response bodies are kept in ``bodies`` (a traced run's writes).
        self.capture = capture
        self.bodies: list[tuple[int, int, int, bytes]] = []
        self._protocol: type[_Connection] = _BodyConnection if capture else _Connection

    @property
    def open(self) -> int:
        """Connections open or being opened."""
        return len(self.connections) + self.opening

    @property
    def outstanding(self) -> int:
        """Requests in flight or waiting for a connection."""
        return sum(1 for connection in self.connections if connection.written) + len(self.backlog)

    async def prewarm(self) -> int:
        """Open every connection before the run starts; returns how many opened."""
        results = await asyncio.gather(
            *(self._connect() for _ in range(self.size)), return_exceptions=True
        )
        for result in results:
            if isinstance(result, _Connection):
                self.idle.append(result)
        return len(self.idle)

    def submit(self, operation: int, raw: bytes, intended: int, now: int) -> None:
        """Send now on an idle connection, or queue (opening a connection if below the cap).

        ``operation`` is the operation key: its code times ``STATUS_SPAN``. The worker's
        scheduler inlines the idle case; this is the general path.
        """
        if self.idle:
            self.idle.pop().send(operation, raw, intended, now, now)
            return
        self.queue(operation, raw, intended, now)

    def queue(self, operation: int, raw: bytes, intended: int, now: int) -> None:
        """No idle connection: wait in the backlog, opening a connection if below the cap.

        A full backlog (``backlog_max``) charges the request ``not_sent`` instead.
        """
        if len(self.backlog) >= self.backlog_max:
            self.on_error(operation // STATUS_SPAN, "not_sent", intended, now, now)
            return
        self.backlog.append((operation, raw, intended, now))
        if self.open < self.size:
            self._open_later()

    def lost(self, connection: _Connection) -> None:
        """Forget a closed connection; open a replacement when requests are waiting."""
        self.connections.discard(connection)
        if connection in self.idle:
            self.idle.remove(connection)
        if self.backlog and self.open < self.size:
            self._open_later()

    def expire(self, now_ns: int) -> None:
        """Fail requests in flight longer than the read timeout (called periodically)."""
        for connection in list(self.connections):
            written = connection.written
            if written and now_ns - written > self.read_timeout_ns:
                connection.fail("read_timeout")

    def abandon(self, now_ns: int) -> None:
        """At the end of the run: everything still waiting is charged, connections closed."""
        while self.backlog:
            operation, _, intended, dispatched = self.backlog.popleft()
            self.on_error(operation // STATUS_SPAN, "not_sent", intended, dispatched, now_ns)
        for connection in list(self.connections):
            if connection.written:
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
                operation, _, intended, dispatched = self.backlog.popleft()
                self.on_error(
                    operation // STATUS_SPAN,
                    _connect_category(exc),
                    intended,
                    dispatched,
                    _monotonic_ns(),
                )
            if self.backlog and self.open < self.size:
                self._open_later()  # every waiting request gets its own attempt
            return
        self.opening -= 1
        if self.backlog:
            operation, raw, intended, dispatched = self.backlog.popleft()
            connection.send(operation, raw, intended, dispatched, _monotonic_ns())
        else:
            self.idle.append(connection)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(lambda: self._protocol(self), self.host, self.port),
                self.connect_timeout_s,
            )
        except TimeoutError as exc:
            raise TimeoutError(errno.ETIMEDOUT, "connect timed out") from exc
        self.connects += 1
        self.connections.add(protocol)
        return protocol


def _connect_category(exc: OSError) -> str:
    if isinstance(exc, TimeoutError):  # our connect timeout, or the kernel's ETIMEDOUT
        return "connect_timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connect_refused"
    return "connect_error"
