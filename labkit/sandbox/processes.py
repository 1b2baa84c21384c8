"""Process supervision for the sandbox: start with a log and a pidfile, poll readiness, stop by pid.

Only processes this module started are ever signalled: a pidfile holds the pid
and that process's start time (``/proc/<pid>/stat`` field 22), and a pid whose
start time differs (reused after a reboot or a crash) is not ours. Each process
leads its own session, so stopping it signals its whole process group (uvicorn's
workers included). Before a process is started, the ports it will listen on must
be free: a foreign server already there would otherwise answer its readiness
polls and pass for it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit.errors import LabkitError, WaitTimeout

__all__ = [
    "Managed",
    "alive",
    "describe",
    "interrupt",
    "kill",
    "poll_until",
    "port_in_use",
    "read_pid",
    "start",
    "start_time",
    "stop",
    "tail",
]


@dataclass(frozen=True)
class Managed:
    """A supervised process: its name, pidfile and log file."""

    name: str
    pidfile: Path
    logfile: Path

    @property
    def pid(self) -> int | None:
        """The recorded pid when that very process is still alive, else None."""
        pid = read_pid(self.pidfile)
        if pid is None or not alive(pid):
            return None
        recorded = _recorded_start(self.pidfile)
        return pid if recorded is not None and recorded == start_time(pid) else None


def describe(
    managed: Managed,
    kind: str,
    address: str,
    role: str | None = None,
    listen: tuple[str, int] | None = None,
) -> dict[str, Any]:
    """A component's status entry; when its process is gone, ``detail`` says whether it crashed.

    ``listen`` is where the component listens: when it is not running and another
    program holds that port, ``detail`` says so (the component could not start there).
    """
    pid = managed.pid
    detail = ""
    if pid is None:
        crashed = read_pid(managed.pidfile) is not None
        detail = "crashed (pidfile left, process gone)" if crashed else "not running"
        if listen is not None and port_in_use(*listen):
            detail += f"; {_in_use(*listen)}"
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
        fields = pidfile.read_text().split()
    except FileNotFoundError:
        return None
    return int(fields[0]) if fields and fields[0].isdigit() else None


def _recorded_start(pidfile: Path) -> int | None:
    try:
        fields = pidfile.read_text().split()
    except FileNotFoundError:
        return None
    return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None


def start_time(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (None when it does not exist)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[-1].split()[19])  # field 22 overall; 20 after "comm)"


def port_in_use(host: str, port: int) -> bool:
    """True when a program already listens on ``host:port`` (a local bind test; sends nothing)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As the servers themselves bind: a connection in TIME_WAIT does not count, a listener does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise LabkitError(f"cannot test port {port} on {host}: {exc.strerror}") from None
    return False


def _in_use(host: str, port: int) -> str:
    return (
        f"port {port} on {host} is in use by a program that is not this sandbox's "
        f"(`ss -ltnp 'sport = :{port}'` names it)"
    )


def _write_pidfile(pidfile: Path, pid: int) -> None:
    pidfile.write_text(f"{pid} {start_time(pid) or 0}\n")


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
    listens: Sequence[tuple[str, int]] = (),
) -> Managed:
    """Start ``argv`` detached (own session), logging to ``<state>/logs/<name>.log``.

    ``pid_of`` maps the spawned pid to the pid to supervise, for programs that
    daemonise or run inside a wrapper; by default it is the spawned pid.
    ``listens`` are the (host, port) it will listen on: each must be free, or a
    LabkitError names the port before anything starts.
    """
    logs = state_dir / "logs"
    run = state_dir / "run"
    logs.mkdir(parents=True, exist_ok=True)
    run.mkdir(parents=True, exist_ok=True)
    managed = Managed(name, run / f"{name}.pid", logs / f"{name}.log")
    if managed.pid is not None:
        return managed  # already running: starting twice changes nothing
    for host, port in listens:
        if port_in_use(host, port):
            raise LabkitError(
                f"sandbox {name}: {_in_use(host, port)}; stop it, or give the sandbox "
                "another port in params"
            )
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
    _write_pidfile(managed.pidfile, pid)
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
    last = ""
    while True:
        try:
            if ready():
                return
        except OSError as exc:  # not listening yet: keep polling until the deadline
            last = f" (last: {exc})"
        if managed is not None and managed.pid is None and read_pid(managed.pidfile) is not None:
            raise LabkitError(
                f"sandbox {what} exited during start-up; log {managed.logfile}:\n"
                f"{tail(managed.logfile)}"
            )
        if time.monotonic() >= deadline:
            where = f"; log {managed.logfile}:\n{tail(managed.logfile)}" if managed else ""
            raise WaitTimeout(f"sandbox {what} not ready after {timeout_s:.0f}s{last}{where}")
        time.sleep(interval_s)


def stop(managed: Managed, timeout_s: float = 10.0) -> bool:
    """SIGTERM the recorded process group, SIGKILL after ``timeout_s``; True when one ran."""
    pid = managed.pid
    if pid is None:
        managed.pidfile.unlink(missing_ok=True)  # stale or reused pid: never signal it
        return False
    _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.05)
    if alive(pid):
        _signal(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10.0
        while alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.02)
        if alive(pid):
            raise LabkitError(
                f"sandbox {managed.name}: pid {pid} survived SIGKILL for 10s "
                f"(stuck in the kernel?); see `ps -o stat,wchan -p {pid}`"
            )
    managed.pidfile.unlink(missing_ok=True)
    return True


def _signal(pid: int, signum: int) -> None:
    # Our processes lead their own session: signal the group so children go too.
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
    except ProcessLookupError:
        pass  # it exited between the check and the signal: nothing left to stop


def _reap(pid: int) -> None:
    # A child of this process stays a zombie until waited for.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def kill(managed: Managed, pid: int, timeout_s: float = 10.0) -> None:
    """SIGKILL ``pid`` (``managed``'s process) and its group, as a crash would; wait till gone.

    The pidfile stays: ``describe`` then says the process crashed.
    """
    _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while alive(pid):
        _reap(pid)
        if time.monotonic() >= deadline:
            raise LabkitError(
                f"sandbox {managed.name}: pid {pid} survived SIGKILL {timeout_s:.0f}s"
            )
        time.sleep(0.01)


def interrupt(managed: Managed, pid: int, timeout_s: float = 30.0) -> None:
    """SIGINT ``pid`` (a server's own fast shutdown); SIGKILL after ``timeout_s``; pidfile gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + timeout_s
    while alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.05)
    if alive(pid):
        kill(managed, pid)
    managed.pidfile.unlink(missing_ok=True)
