"""What request *i* of a run is: an operation name and its pre-serialised HTTP/1.1 bytes.

Workloads are small frozen dataclasses so they travel to worker processes by
pickle (never argv or environment, so an API key never shows in ``ps``).
Building bytes is the only per-request work; the hot path does no JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property

__all__ = ["Creates", "Fixed", "Mixed", "Redirects", "Workload"]


def _request(method: str, path: str, host: str, headers: str = "", body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{headers}"
    if body or method in {"POST", "PUT", "PATCH"}:
        head += f"Content-Length: {len(body)}\r\n"
    return (head + "\r\n").encode("latin-1") + body


@dataclass(frozen=True)
class Workload:
    """Base of every workload: ``request(index) -> (operation, raw bytes)``."""

    def request(self, index: int) -> tuple[str, bytes]:
        """The operation name and the bytes of request ``index``."""
        raise NotImplementedError

    @property
    def operations(self) -> tuple[str, ...]:
        """Names of the operations this workload sends."""
        raise NotImplementedError

    def cycle(self) -> tuple[tuple[str, bytes], ...] | None:
        """Requests that repeat: ``request(i) == cycle()[i % len(cycle())]``, else None.

        Lets the scheduler index a table instead of calling ``request`` per send.
        """
        return None


@dataclass(frozen=True)
class Fixed(Workload):
    """The same GET for every request (``labkit bench URL``)."""

    host: str
    path: str = "/"
    operation: str = "get"

    @cached_property
    def _raw(self) -> bytes:
        return _request("GET", self.path, self.host)

    def request(self, index: int) -> tuple[str, bytes]:
        """The one request, whatever the index."""
        return self.operation, self._raw

    def cycle(self) -> tuple[tuple[str, bytes], ...]:
        """The one request."""
        return ((self.operation, self._raw),)

    @property
    def operations(self) -> tuple[str, ...]:
        """Just this one operation."""
        return (self.operation,)


@dataclass(frozen=True)
class Redirects(Workload):
    """``GET /{code}`` cycling through ``codes`` (a warm set, or codes never asked before)."""

    host: str
    codes: tuple[str, ...]
    operation: str = "redirect"

    @cached_property
    def _raw(self) -> list[bytes]:
        return [_request("GET", f"/{code}", self.host) for code in self.codes]

    def request(self, index: int) -> tuple[str, bytes]:
        """Code ``index mod len(codes)``."""
        raw = self._raw
        return self.operation, raw[index % len(raw)]

    def cycle(self) -> tuple[tuple[str, bytes], ...]:
        """One request per code, in order."""
        return tuple((self.operation, raw) for raw in self._raw)

    @property
    def operations(self) -> tuple[str, ...]:
        """Just the redirect."""
        return (self.operation,)


@dataclass(frozen=True)
class Creates(Workload):
    """``POST /rest/v3/short-urls`` with a long URL unique to the run and the index."""

    host: str
    run_tag: str
    api_key: str = field(repr=False)
    operation: str = "create"

    @cached_property
    def _headers(self) -> str:
        return f"X-Api-Key: {self.api_key}\r\nContent-Type: application/json\r\nAccept: */*\r\n"

    def request(self, index: int) -> tuple[str, bytes]:
        """A create whose long URL no other request of any run uses."""
        body = json.dumps({"longUrl": f"https://example.com/{self.run_tag}/{index}"}).encode()
        return self.operation, _request(
            "POST", "/rest/v3/short-urls", self.host, self._headers, body
        )

    @property
    def operations(self) -> tuple[str, ...]:
        """Just the create."""
        return (self.operation,)


@dataclass(frozen=True)
class Mixed(Workload):
    """``writes`` requests in every ``reads + writes``: read:write = reads:writes, interleaved."""

    read: Workload
    write: Workload
    reads: int = 100
    writes: int = 1

    def request(self, index: int) -> tuple[str, bytes]:
        """Deterministic: the last ``writes`` slots of each cycle are writes."""
        cycle = self.reads + self.writes
        slot = index % cycle
        if slot >= self.reads:
            return self.write.request(index)
        return self.read.request(index - (index // cycle) * self.writes)

    @property
    def operations(self) -> tuple[str, ...]:
        """Both sides' operations."""
        return self.read.operations + self.write.operations
