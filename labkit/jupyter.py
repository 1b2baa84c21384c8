"""Stepping through the lab-book: JupyterLab on loopback with a token, the sandbox up beside it.

``labkit lab`` brings the sandbox up (a lease, as ``labkit run`` takes one), starts
JupyterLab on 127.0.0.1 at the lab-book's notebooks folder and waits. Ctrl-C here,
or ``labkit lab --stop`` from another terminal, stops JupyterLab and takes the
sandbox down again when this command brought it up.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from labkit.arguments import count, path
from labkit.errors import ConfigError, WaitTimeout
from labkit.params import Lab, load_lab

__all__ = ["DEFAULT_PORT", "register", "serve", "stop"]

DEFAULT_PORT = 8888
REPOSITORY = Path(__file__).resolve().parent.parent
_START_TIMEOUT_S = 90.0
_STOP_TIMEOUT_S = 120.0  # JupyterLab's shutdown, then the sandbox's
_STATE = Path("~/.local/state/labkit")
_SETTINGS = Path(__file__).resolve().parent / "data" / "jupyterlab"  # overrides.json


def _pid_file(lab: Lab) -> Path:
    """Where a running ``labkit lab`` of this lab writes its pid (the sandbox's state dir)."""
    if lab.sandbox is not None:
        from labkit.sandbox import state_dir_of  # noqa: PLC0415 - sandbox labs only

        return state_dir_of(lab) / "jupyterlab.json"
    return _STATE.expanduser() / f"jupyterlab-{lab.name}.json"


def _command(port: int, root: Path) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",  # loopback only; the token guards it from local users
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",  # the URL printed is the URL served, or an error
        f"--ServerApp.root_dir={root}",
        "--LabApp.default_url=/lab/tree/notebooks",
        # Nothing is fetched from the internet: no news feed, no update check, and the
        # lab-book's setting defaults (overrides.json) turn off the "get notified about
        # Jupyter news?" prompt; a user's own settings still win.
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        f"--LabApp.app_settings_dir={_SETTINGS}",
    ]
    if os.geteuid() == 0:
        # JupyterLab refuses to start as root without it. Root is how the sandbox isolates
        # its nodes (network namespaces); the server still listens on loopback only.
        command.append("--allow-root")
    return command


def _wait_until_serving(port: int, token: str, process: subprocess.Popen[bytes]) -> None:
    """Poll JupyterLab's status API until it answers (or the process dies, or time runs out)."""
    deadline = time.monotonic() + _START_TIMEOUT_S
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/status", headers={"Authorization": f"token {token}"}
    )
    # Loopback only: a proxy from the environment must never see the token.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ConfigError(
                f"JupyterLab exited with status {process.returncode} before serving on "
                f"127.0.0.1:{port} (its messages are above); is the port taken? try --port"
            )
        with contextlib.suppress(OSError), opener.open(request, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.3)
    raise WaitTimeout(f"JupyterLab did not answer on 127.0.0.1:{port} in {_START_TIMEOUT_S:.0f}s")


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class _Stop(Exception):
    """SIGTERM (``labkit lab --stop``) or SIGHUP: leave the way Ctrl-C does."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


@contextlib.contextmanager
def _lab_up(lab: Lab) -> Iterator[bool]:
    """A sandbox lab up for the block (a lease); True when it was not running before."""
    if lab.kind != "sandbox":
        yield False
        return
    from labkit.sandbox import Sandbox, ensure_up  # noqa: PLC0415

    was_running = Sandbox(lab).running
    with ensure_up(lab):
        yield not was_running


@contextlib.contextmanager
def _pid_written(path: Path, port: int) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": os.getpid(), "port": port}) + "\n")
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def serve(params: list[Path], port: int = DEFAULT_PORT, root: Path = REPOSITORY) -> int:
    """Run JupyterLab with the lab up until Ctrl-C or ``stop``; returns 0 when stopped."""
    lab = load_lab(*params)
    if not _port_free(port):
        raise ConfigError(f"127.0.0.1:{port} is in use; choose another with --port")
    token = os.environ.get("JUPYTER_TOKEN") or secrets.token_urlsafe(24)
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    pid_file = _pid_file(lab)
    try:
        with _pid_written(pid_file, port), _lab_up(lab) as brought_up:
            _run_jupyterlab(lab, port, root, token, brought_up)
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("labkit lab: stopped", flush=True)
    return 0


def _run_jupyterlab(lab: Lab, port: int, root: Path, token: str, brought_up: bool) -> None:
    if os.geteuid() == 0:
        print(
            "labkit lab: running as root (the sandbox isolates its nodes in network namespaces), "
            "so JupyterLab gets --allow-root; it listens on 127.0.0.1 only, behind a token"
        )
    # The token travels in the environment, not argv, which every local user can read (ps).
    environment = {**os.environ, "JUPYTER_TOKEN": token}
    # Its own session: Ctrl-C reaches only this process, which stops JupyterLab itself (the
    # server would otherwise stop to ask "Shutdown this Jupyter server (y/[n])?").
    process = subprocess.Popen(_command(port, root), env=environment, start_new_session=True)
    try:
        _wait_until_serving(port, token, process)
        url = f"http://127.0.0.1:{port}/lab/tree/notebooks?token={token}"
        down = " and take the sandbox down (this brought it up)" if brought_up else ""
        print(
            f"\nlabkit lab: JupyterLab serves the lab-book of lab {lab.name} at\n\n    {url}\n\n"
            f"Stop it{down} with Ctrl-C here, or from another terminal: make lab-stop "
            f"(labkit lab --stop --params {' '.join(str(f) for f in lab.files)})\n",
            flush=True,
        )
        process.wait()
        raise ConfigError(f"JupyterLab exited by itself with status {process.returncode}")
    finally:
        _end(process)


def _end(process: subprocess.Popen[bytes]) -> None:
    """Stop the JupyterLab we started (SIGTERM: it shuts its kernels down), then kill if stuck."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def stop(params: list[Path]) -> int:
    """Stop the ``labkit lab`` of this lab that runs elsewhere; waits until it has cleaned up."""
    lab = load_lab(*params)
    pid_file = _pid_file(lab)
    try:
        pid = int(json.loads(pid_file.read_text())["pid"])
    except (OSError, ValueError, KeyError):
        print(f"labkit lab: not running for lab {lab.name} (no {pid_file})")
        return 0
    if not _is_labkit_lab(pid):
        pid_file.unlink(missing_ok=True)
        print(f"labkit lab: not running for lab {lab.name} (stale {pid_file} removed)")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    while _is_labkit_lab(pid):
        if time.monotonic() > deadline:
            raise WaitTimeout(
                f"labkit lab (pid {pid}) still runs {_STOP_TIMEOUT_S:.0f}s after SIGTERM; "
                "look at its terminal"
            )
        time.sleep(0.3)
    print(f"labkit lab: stopped (pid {pid})")
    return 0


def _is_labkit_lab(pid: int) -> bool:
    """The pid is alive and is a ``labkit lab`` (not a process that reused the number)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    launcher = any(part.endswith((b"labkit", b"labkit.cli")) for part in command)
    return launcher and b"lab" in command


def _lab(arguments: Any) -> int:
    params = [Path(p) for p in arguments.params or [REPOSITORY / "params" / "local.yaml"]]
    if arguments.stop:
        return stop(params)
    root = Path(arguments.root).resolve() if arguments.root else REPOSITORY
    if not (root / "notebooks").is_dir():
        raise ConfigError(f"--root {root} has no notebooks/ folder to open")
    return serve(params, port=arguments.port, root=root)


def register(subparsers: Any) -> None:
    """Add ``labkit lab [--port N] [--stop]`` to the ``labkit`` command line."""
    lab = subparsers.add_parser(
        "lab", help="JupyterLab on 127.0.0.1 with the lab up (Ctrl-C or --stop ends both)"
    )
    lab.add_argument(
        "--params", action="append", type=path, metavar="FILE", help="default params/local.yaml"
    )
    lab.add_argument(
        "--port",
        type=count(1, 65535, "(a TCP port)", separators=False),
        default=DEFAULT_PORT,
        help=f"default {DEFAULT_PORT}",
    )
    lab.add_argument("--stop", action="store_true", help="stop the labkit lab running elsewhere")
    lab.add_argument(
        "--root",
        type=path,
        metavar="DIR",
        help="folder JupyterLab serves, holding notebooks/ (default: this repository)",
    )
    lab.set_defaults(handler=_lab)
