"""Test helper: ``labkit lab`` started by a test on loopback, for a private sandbox lab."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import REPOSITORY, free_ports

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class LabServer:
    """A running ``labkit lab``: where it serves, its token, its process and output file."""

    port: int
    token: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def base(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str) -> Any:
        """GET ``/api/<path>`` with the token; the JSON answer."""
        request = urllib.request.Request(
            f"{self.base}/api/{path}", headers={"Authorization": f"token {self.token}"}
        )
        with _NO_PROXY.open(request, timeout=10) as response:
            return json.loads(response.read())

    def output(self) -> str:
        """What ``labkit lab`` printed so far."""
        return self.log.read_text(errors="replace")


def lab_command(params: Path, *more: str) -> list[str]:
    """argv of ``labkit lab`` for ``params`` with this interpreter."""
    return [sys.executable, "-m", "labkit.cli", "lab", "--params", str(params), *more]


@contextlib.contextmanager
def running_lab(
    params: Path,
    directory: Path,
    timeout_s: float = 240.0,
    env: dict[str, str] | None = None,
    root: Path | None = None,
) -> Iterator[LabServer]:
    """``labkit lab`` for ``params`` until JupyterLab answers; on exit SIGTERM it and wait.

    The sandbox coming up is part of the start, so the deadline is generous. ``env`` is
    added to its environment (and so to its kernels'); ``root`` is the folder served.
    """
    port = free_ports(1)[0]
    token = secrets.token_urlsafe(16)
    log = directory / "labkit-lab.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            lab_command(params, "--port", str(port), *(["--root", str(root)] if root else [])),
            cwd=REPOSITORY,
            env={**os.environ, **(env or {}), "JUPYTER_TOKEN": token},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    server = LabServer(port, token, process, log)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            assert process.poll() is None, f"labkit lab exited:\n{server.output()}"
            with contextlib.suppress(OSError):
                server.api("status")
                break
            assert time.monotonic() < deadline, f"no JupyterLab after {timeout_s}s:\n{log}"
            time.sleep(0.5)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=180)  # JupyterLab, then the sandbox, go down
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
