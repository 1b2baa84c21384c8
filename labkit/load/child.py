"""Entry point of a worker process (``python -m labkit.load.child``), framed pickles over stdio.

The spec (which may carry an API key) arrives on stdin, never in argv or the
environment. A subprocess rather than multiprocessing, so no caller's
``__main__`` is ever re-imported (scripts, notebooks and pytest all work).
"""

from __future__ import annotations

import pickle
import struct
import sys
from typing import IO, Any

from labkit.load.worker import WorkerSpec, run_worker

__all__ = ["main", "read_frame", "write_frame"]

_HEADER = struct.Struct("!I")


def write_frame(stream: IO[bytes], value: Any) -> None:
    """Write one length-prefixed pickle and flush."""
    payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(payload)) + payload)
    stream.flush()


def read_frame(stream: IO[bytes]) -> Any:
    """Read one length-prefixed pickle; EOFError when the other side is gone."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("load worker pipe closed")
    (size,) = _HEADER.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:
        raise EOFError("load worker pipe closed mid-frame")
    return pickle.loads(payload)  # our own parent's data, over our own pipe


def main() -> int:
    """Read the spec, report ready, wait for t0, run, write the result."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    spec: WorkerSpec = read_frame(stdin)

    def wait_for_t0() -> int:
        write_frame(stdout, ("ready", None))
        t0: int = read_frame(stdin)
        return t0

    try:
        result = run_worker(spec, wait_for_t0)
    except Exception as exc:  # the parent raises it as a LabkitError with this text
        write_frame(stdout, ("error", f"{type(exc).__name__}: {exc}"))
        return 1
    write_frame(stdout, ("result", result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
