"""read_regular: a regular file within its bound, and a clear error for anything else."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest

from labkit.errors import ConfigError
from labkit.files import read_regular


def _read(path: Path | str, limit: int = 1024) -> bytes:
    return read_regular(Path(path), f"thing {path}", kind="a thing", limit=limit, hint="fix it")


def test_a_regular_file_within_the_bound_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "ok"
    path.write_bytes(b"x" * 1024)
    assert _read(path) == b"x" * 1024


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda p: p.mkdir(), "a directory"),
        (os.mkfifo, "a FIFO (named pipe)"),
        (lambda p: socket.socket(socket.AF_UNIX).bind(str(p)), "a socket"),
    ],
)
def test_anything_but_a_regular_file_is_refused_unopened(tmp_path: Path, make, kind: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "odd"
    make(path)
    # A FIFO without a writer would block an open() for ever: the refusal comes before.
    with pytest.raises(
        ConfigError, match=re.escape(f"thing {path}: is {kind}; a thing is read only")
    ):
        _read(path)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null", "/dev/urandom"])
def test_a_device_is_refused(device: str) -> None:
    with pytest.raises(ConfigError, match="is a character device"):
        _read(device)


def test_a_file_over_the_bound_is_refused_by_its_size(tmp_path: Path) -> None:
    path = tmp_path / "big"
    with path.open("wb") as file:
        file.truncate(5 * 1024**3)  # sparse: 5 GiB that take no disk
    with pytest.raises(
        ConfigError, match=r"its size \(5,368,709,120 bytes\) is more than the 1 KiB"
    ):
        _read(path)


def test_a_missing_file_names_it_and_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot be read \(No such file or directory\); fix it"):
        _read(tmp_path / "absent")


def test_a_nul_in_the_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a file name"):
        _read("bad\x00name")
