"""Supervision: only processes we started are signalled; stopping takes the whole group."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.errors import WaitTimeout
from labkit.sandbox import processes


def test_a_reused_pid_is_not_ours_and_is_never_signalled(tmp_path: Path) -> None:
    # A long-lived process we did not start through the supervisor stands in for a pid
    # reused after a reboot: the pidfile names it, but with another start time.
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        managed = processes.Managed("ghost", tmp_path / "ghost.pid", tmp_path / "ghost.log")
        start = processes.start_time(bystander.pid)
        assert start is not None
        managed.pidfile.write_text(f"{bystander.pid} {start + 1}\n")
        assert managed.pid is None
        assert processes.stop(managed) is False
        assert bystander.poll() is None  # still running: it was not ours to stop
        assert not managed.pidfile.exists()
        managed.pidfile.write_text(f"{bystander.pid}\n")  # an old-format pidfile: unverifiable
        assert managed.pid is None
    finally:
        bystander.kill()
        bystander.wait()


def test_stop_takes_the_whole_process_group(tmp_path: Path) -> None:
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    managed = processes.start("parent", [sys.executable, "-c", script], tmp_path)
    processes.poll_until("parent", lambda: managed.logfile.read_text().strip() != "", 10.0, managed)
    child = int(managed.logfile.read_text().split()[0])
    assert managed.pid is not None and processes.alive(child)
    assert processes.stop(managed, timeout_s=5.0) is True
    processes.poll_until("child gone", lambda: not processes.alive(child), 5.0)
    assert managed.pid is None


def test_a_second_start_changes_nothing(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    first = processes.start("sleeper", argv, tmp_path)
    try:
        pid = first.pid
        assert pid is not None
        assert processes.start("sleeper", argv, tmp_path).pid == pid
    finally:
        processes.stop(first)


def test_a_timeout_names_the_component_and_the_last_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there

    def ready() -> bool:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True

    with pytest.raises(WaitTimeout, match=r"sandbox probe not ready after 1s \(last: .*refused"):
        processes.poll_until("probe", ready, 1.0)


def test_not_running_and_crashed_are_told_apart(tmp_path: Path) -> None:
    managed = processes.Managed("gone", tmp_path / "gone.pid", tmp_path / "gone.log")
    assert processes.describe(managed, "redis", "127.0.0.1:1")["detail"] == "not running"
    managed.pidfile.write_text(f"{os.getpid()} 1\n")
    entry = processes.describe(managed, "redis", "127.0.0.1:1")
    assert entry["detail"] == "crashed (pidfile left, process gone)"
    assert entry["pid"] is None
