"""``labkit lab`` (make lab): the sandbox up, JupyterLab on loopback at notebooks/, both stop."""

from __future__ import annotations

import os
import subprocess
import urllib.error
from collections.abc import Callable
from pathlib import Path

import pytest

from labkit.jupyter import _command
from labkit.params import load_lab
from labkit.sandbox import Sandbox
from tests.conftest import REPOSITORY
from tests.labserver import LabServer, lab_command, running_lab


def test_jupyterlab_listens_on_loopback_at_the_lab_book() -> None:
    command = _command(8899, REPOSITORY)
    assert "--ServerApp.ip=127.0.0.1" in command
    assert "--LabApp.default_url=/lab/tree/notebooks" in command
    assert ("--allow-root" in command) == (os.geteuid() == 0)
    assert not any("token" in part.lower() for part in command)  # argv is public (ps)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_make_lab_serves_the_lab_book_with_the_sandbox_up_and_stops_both(
    tmp_path: Path, private_sandbox_params: Callable[..., Path]
) -> None:
    params = private_sandbox_params(tmp_path, name="lab-test")
    sandbox = Sandbox(load_lab(params))
    assert not sandbox.running
    with running_lab(params, tmp_path) as server:
        assert sandbox.running  # up before JupyterLab answered
        listed = {item["name"] for item in server.api("contents/notebooks")["content"]}
        assert {"00-preflight.ipynb", "01-infrastructure.ipynb"} <= listed
        printed = server.output()
        assert f"http://127.0.0.1:{server.port}/lab/tree/notebooks?token=" in printed
        assert "make lab-stop" in printed and "Ctrl-C" in printed
        if os.geteuid() == 0:
            assert "--allow-root" in printed  # and why
        wrong = LabServer(server.port, "wrong-token", server.process, server.log)
        with pytest.raises(urllib.error.HTTPError) as refused:
            wrong.api("contents/notebooks")
        assert refused.value.code == 403
        stopped = subprocess.run(
            lab_command(params, "--stop"), capture_output=True, text=True, timeout=200, check=False
        )
        assert stopped.returncode == 0, stopped.stderr
        assert "stopped" in stopped.stdout
        assert server.process.wait(timeout=30) == 0
    assert not sandbox.running  # make lab brought it up, so make lab took it down
    assert "labkit lab: stopped" in server.output()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_sandbox_that_was_up_stays_up(
    tmp_path: Path, private_sandbox_params: Callable[..., Path]
) -> None:
    params = private_sandbox_params(tmp_path, name="lab-test-up")
    sandbox = Sandbox(load_lab(params))
    sandbox.up(progress=lambda message: None)
    try:
        with running_lab(params, tmp_path) as server:
            server.process.terminate()  # what Ctrl-C's cleanup does, from here
            assert server.process.wait(timeout=60) == 0
        assert sandbox.running
    finally:
        sandbox.down()
