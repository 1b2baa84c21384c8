"""Process supervision for the sandbox: start with a log and a pidfile, poll readiness, stop by pid.

Only processes this module started (their pid recorded in a pidfile under the
sandbox state directory) are ever signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit.errors import LabkitError, WaitTimeout

__all__ = ["Managed", "alive", "describe", "poll_until", "read_pid", "start", "stop", "tail"]


@dataclass(frozen=True)
class Managed:
    """A supervised process: its name, pidfile and log file."""

    name: str
    pidfile: Path
    logfile: Path

    @property
    def pid(self) -> int | None:
        """The recorded pid when that process is still alive, else None."""
        pid = read_pid(self.pidfile)
        return pid if pid is not None and alive(pid) else None


def describe(managed: Managed, kind: str, address: str, role: str | None = None) -> dict[str, Any]:
    """A component's status entry; when its process is gone, ``detail`` says whether it crashed."""
    pid = managed.pid
    detail = ""
    if pid is None:
        crashed = read_pid(managed.pidfile) is not None
        detail = "crashed (pidfile left, process gone)" if crashed else "not running"
    return {
        "name": managed.name,
        "kind": kind,
        "pid": pid,
        "address": address,
        "role": role,
        "healthy": False,
        "detail": detail,
        "log": str(managed.logfile),
    }


def read_pid(pidfile: Path) -> int | None:
    """The pid written in ``pidfile``, or None when there is none."""
    try:
        text = pidfile.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def tail(logfile: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log file (empty when it does not exist)."""
    try:
        content = logfile.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    return "\n".join(content[-lines:])


def start(
    name: str,
    argv: Sequence[str],
    state_dir: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    pid_of: Callable[[int], int] | None = None,
) -> Managed:
    """Start ``argv`` detached (own session), logging to ``<state>/logs/<name>.log``.

    ``pid_of`` maps the spawned pid to the pid to supervise, for programs that
    daemonise or run inside a wrapper; by default it is the spawned pid.
    """
    logs = state_dir / "logs"
    run = state_dir / "run"
    logs.mkdir(parents=True, exist_ok=True)
    run.mkdir(parents=True, exist_ok=True)
    managed = Managed(name, run / f"{name}.pid", logs / f"{name}.log")
    if managed.pid is not None:
        return managed  # already running: starting twice changes nothing
    with managed.logfile.open("ab") as log:
        try:
            process = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as exc:
            raise LabkitError(
                f"sandbox {name}: cannot start {argv[0]} ({exc.strerror}); "
                "is it installed? see the README's set-up commands"
            ) from exc
    pid = pid_of(process.pid) if pid_of else process.pid
    managed.pidfile.write_text(f"{pid}\n")
    return managed


def poll_until(
    what: str,
    ready: Callable[[], bool],
    timeout_s: float,
    managed: Managed | None = None,
    interval_s: float = 0.1,
) -> None:
    """Call ``ready`` until it returns True; WaitTimeout names ``what`` and its log tail."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if ready():
                return
        except OSError:
            pass  # not listening yet: keep polling until the deadline
        if managed is not None and managed.pid is None and read_pid(managed.pidfile) is not None:
            raise LabkitError(
                f"sandbox {what} exited during start-up; log {managed.logfile}:\n"
                f"{tail(managed.logfile)}"
            )
        if time.monotonic() >= deadline:
            where = f"; log {managed.logfile}:\n{tail(managed.logfile)}" if managed else ""
            raise WaitTimeout(f"sandbox {what} not ready after {timeout_s:.0f}s{where}")
        time.sleep(interval_s)


def stop(managed: Managed, timeout_s: float = 10.0) -> bool:
    """SIGTERM the recorded pid, then SIGKILL after ``timeout_s``; True when one was running."""
    pid = managed.pid
    managed_pidfile_exists = managed.pidfile.exists()
    if pid is None:
        if managed_pidfile_exists:
            managed.pidfile.unlink()
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.05)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
        while alive(pid):
            _reap(pid)
            time.sleep(0.02)
    managed.pidfile.unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    # A child of this process stays a zombie until waited for.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
