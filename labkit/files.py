"""Reading a file a user named: only a regular file, and never more of it than a bound.

A params file, a secret file or a kubeconfig comes from the user's command line or
params; named wrongly (``/dev/zero``, a FIFO, a directory, a 5 GiB log) it must be a
clear ConfigError, not a process that blocks or eats the machine's memory.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from labkit.errors import ConfigError

__all__ = ["read_regular"]

_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
)


def _size(limit: int) -> str:
    if limit % (1024 * 1024) == 0:
        return f"{limit // (1024 * 1024)} MiB"
    if limit % 1024 == 0:
        return f"{limit // 1024} KiB"
    return f"{limit:,} bytes"


def read_regular(path: Path, name: str, *, kind: str, limit: int, hint: str) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes.

    ``name`` is how errors show the file, ``kind`` what it is ("a params file"), ``hint``
    what to do instead. A device or FIFO is never opened (stat first, then ``O_NONBLOCK``
    and ``fstat`` of what was opened, in case the name changed in between), and no more
    than ``limit + 1`` bytes are ever read.
    """

    def not_regular(mode: int) -> ConfigError:
        found = next((text for test, text in _FILE_KINDS if test(mode)), "not a regular file")
        return ConfigError(f"{name}: is {found}; {kind} is read only from a regular file ({hint})")

    def too_large(what: str) -> ConfigError:
        return ConfigError(f"{name}: {what} is more than the {_size(limit)} {kind} may be")

    try:
        before = os.stat(path)
        if not stat.S_ISREG(before.st_mode):  # never open a device or a FIFO
            raise not_regular(before.st_mode)
        # O_NONBLOCK: if it became a FIFO since the stat, opening it must not wait for a writer.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"{name}: cannot be read ({exc.strerror}); {hint}") from exc
    except ValueError as exc:  # a NUL in the name
        raise ConfigError(f"{name!r}: not a file name ({exc})") from exc
    try:
        opened = os.fstat(descriptor)  # what was opened, not what the name meant a moment ago
        if not stat.S_ISREG(opened.st_mode):
            raise not_regular(opened.st_mode)
        if opened.st_size > limit:
            raise too_large(f"its size ({opened.st_size:,} bytes)")
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = os.read(descriptor, limit + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:  # it grew while being read
            raise too_large("what it holds")
        return b"".join(chunks)
    except OSError as exc:
        raise ConfigError(f"{name}: cannot be read ({exc.strerror}); {hint}") from exc
    finally:
        os.close(descriptor)
