"""Entry point of a worker process (``python -m labkit.load.child``), framed pickles over stdio.

Frames to the parent are ``(kind, payload)``: ``ready``, then ``progress`` once a
second while the schedule runs, then ``result`` (or ``error``).

The spec (which may carry an API key) arrives on stdin, never in argv or the
environment. A subprocess rather than multiprocessing, so no caller's
``__main__`` is ever re-imported (scripts, notebooks and pytest all work).
"""

from __future__ import annotations

import pickle
import struct
import sys
from typing import IO, Any

from labkit.load.worker import Progress, WorkerSpec, run_worker

__all__ = ["main", "read_frame", "write_frame"]

_HEADER = struct.Struct("!I")


def write_frame(stream: IO[bytes], value: Any) -> None:
    """Write one length-prefixed pickle and flush (continuing short writes of a raw pipe)."""
    payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    frame = memoryview(_HEADER.pack(len(payload)) + payload)
    while frame:
        written = stream.write(frame)
        frame = frame[written if written is not None else len(frame) :]
    stream.flush()


def read_frame(stream: IO[bytes]) -> Any:
    """Read one length-prefixed pickle; EOFError when the other side is gone.

    Works on unbuffered pipes too (short reads are continued), so a reader can
    ``select`` on the pipe without a buffer holding frames it cannot see.
    """
    (size,) = _HEADER.unpack(_exactly(stream, _HEADER.size, "load worker pipe closed"))
    payload = _exactly(stream, size, "load worker pipe closed mid-frame")
    return pickle.loads(payload)  # our own parent's data, over our own pipe


def _exactly(stream: IO[bytes], size: int, closed: str) -> bytes:
    chunks = []
    while size:
        chunk = stream.read(size)
        if not chunk:
            raise EOFError(closed)
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def main() -> int:
    """Read the spec, report ready, wait for t0, run, write the result."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    spec: WorkerSpec = read_frame(stdin)

    def wait_for_t0() -> int:
        write_frame(stdout, ("ready", None))
        t0: int = read_frame(stdin)
        return t0

    def report(progress: Progress) -> None:
        write_frame(stdout, ("progress", progress))

    try:
        result = run_worker(spec, wait_for_t0, report)
    except Exception as exc:  # the parent raises it as a LabkitError with this text
        write_frame(stdout, ("error", f"{type(exc).__name__}: {exc}"))
        return 1
    write_frame(stdout, ("result", result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
