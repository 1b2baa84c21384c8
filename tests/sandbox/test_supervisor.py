"""The supervisor against real processes: up, status, idempotent second up, crash shown, down."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from labkit.errors import ConfigError
from labkit.params import load_lab
from labkit.sandbox import Sandbox, ensure_up
from labkit.sandbox.processes import alive


def test_status_lists_every_component_healthy(sandbox: Sandbox) -> None:
    status = sandbox.status()
    json.dumps(status)  # JSON-ready
    by_name = {entry["name"]: entry for entry in status["components"]}
    lab = sandbox.lab
    assert by_name["postgres-primary"]["role"] == "primary"
    assert by_name["postgres-standby"]["role"] == "standby"
    assert by_name[f"redis-{lab.redis.port}"]["role"] == "master"
    for port in lab.redis.replica_ports:
        assert by_name[f"redis-{port}"]["role"] == "replica"
    for port in lab.redis.sentinel_ports:
        assert by_name[f"sentinel-{port}"]["healthy"] is True
    unhealthy = [entry for entry in status["components"] if not entry["healthy"]]
    assert unhealthy == []
    assert status["healthy"] is True


def test_second_up_changes_nothing(sandbox: Sandbox) -> None:
    before = {entry["name"]: entry["pid"] for entry in sandbox.status()["components"]}
    started = time.monotonic()
    sandbox.up(progress=lambda message: None)
    after = {entry["name"]: entry["pid"] for entry in sandbox.status()["components"]}
    assert after == before
    assert time.monotonic() - started < 15


def test_secrets_are_generated_private_and_never_in_status(sandbox: Sandbox) -> None:
    lab = sandbox.lab
    assert lab.postgres.password.file is not None
    path = lab.path(lab.postgres.password.file)
    assert path.stat().st_mode & 0o077 == 0
    password = path.read_text().strip()
    assert len(password) >= 16
    assert password not in json.dumps(sandbox.status())
    for logfile in (sandbox.state_dir / "logs").glob("*.log"):
        assert password not in logfile.read_text(errors="replace"), logfile


def test_everything_listens_on_loopback_only(sandbox: Sandbox) -> None:
    psutil = pytest.importorskip("psutil")
    pids = {entry["pid"] for entry in sandbox.status()["components"] if entry["kind"] != "node"}
    listening = [
        connection
        for connection in psutil.net_connections(kind="inet")
        if connection.status == psutil.CONN_LISTEN and connection.pid in pids
    ]
    assert listening, "no listening sockets found for the sandbox's processes"
    assert {connection.laddr.ip for connection in listening} <= {"127.0.0.1", "::1"}


def test_a_non_sandbox_lab_is_refused() -> None:
    homelab = Path(__file__).resolve().parents[2] / "params" / "homelab.yaml"
    with pytest.raises(ConfigError, match="not a sandbox"):
        Sandbox(load_lab(homelab))


@pytest.mark.slow
def test_up_crash_down_on_a_private_sandbox(
    tmp_path: Path, private_sandbox_params: Callable[..., Path]
) -> None:
    lab = load_lab(private_sandbox_params(tmp_path, name="sandbox-private"))
    private = Sandbox(lab)
    assert private.running is False
    try:
        started = time.monotonic()
        with ensure_up(lab, progress=lambda message: None) as inside:
            assert time.monotonic() - started < 60
            assert inside.status()["healthy"] is True
            # A crashed component is reported, not hidden.
            replica = f"redis-{lab.redis.replica_ports[0]}"
            entry = next(e for e in inside.status()["components"] if e["name"] == replica)
            os.kill(entry["pid"], signal.SIGKILL)
            deadline = time.monotonic() + 10
            while alive(entry["pid"]) and time.monotonic() < deadline:
                time.sleep(0.05)
            crashed = next(e for e in inside.status()["components"] if e["name"] == replica)
            assert crashed["healthy"] is False
            assert "crashed" in crashed["detail"]
            pids = [e["pid"] for e in inside.status()["components"] if e["pid"]]
        # ensure_up took it down because it was not running before.
        assert private.running is False
        assert not any(alive(pid) for pid in pids)
        if os.geteuid() == 0 and lab.sandbox is not None:
            links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
            assert f" {lab.sandbox.bridge}:" not in links.stdout
            namespaces = subprocess.run(
                ["ip", "netns", "list"], capture_output=True, text=True, check=True
            )
            assert lab.sandbox.bridge not in namespaces.stdout
            mounts = Path("/proc/mounts").read_text()
            assert str(private.state_dir) not in mounts
    finally:
        private.down()


def test_cli_status_prints_json(sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    from labkit.cli import main

    code = main(["sandbox", "status", "--params", str(sandbox.lab.source[-1])])
    status = json.loads(capsys.readouterr().out)
    assert code == 0
    assert status["healthy"] is True
    assert {entry["kind"] for entry in status["components"]} >= {"postgres", "redis", "sentinel"}


def test_overlapping_runs_do_not_take_the_sandbox_from_each_other(
    private_sandbox_params: Callable[..., Path], tmp_path: Path
) -> None:
    """Run A brings the sandbox up, run B joins, A ends first: B keeps it; B ends: it goes."""
    lab = load_lab(private_sandbox_params(tmp_path, name="sandbox-lease"))
    first, second = ensure_up(lab, lambda _: None), ensure_up(lab, lambda _: None)
    try:
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)
        assert Sandbox(lab).running  # the second run still holds it
        second.__exit__(None, None, None)
        assert not Sandbox(lab).running  # the last holder took down what a run brought up
        with ensure_up(lab, lambda _: None):  # a sandbox the user started stays up
            pass
        user = Sandbox(lab)
        user.up(lambda _: None)
        with ensure_up(lab, lambda _: None):
            pass
        assert user.running
    finally:
        Sandbox(lab).down()


def test_a_killed_runs_marker_does_not_take_down_a_sandbox_started_by_hand(
    sandbox: Sandbox,
) -> None:
    """A run that brought the sandbox up was killed: its marker must not outlive it."""
    folder = sandbox.state_dir / "leases"
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / ".brought-up-by-a-run"
    # The marker as a run writes it (its pid and start time), then the run is killed -9.
    script = (
        "import os, sys, time\n"
        "from labkit.sandbox.supervisor import _holder\n"
        "open(sys.argv[1], 'w').write(_holder(os.getpid()) + '\\n')\n"
        "print('written', flush=True)\n"
        "time.sleep(60)\n"
    )
    run = subprocess.Popen([sys.executable, "-c", script, str(marker)], stdout=subprocess.PIPE)
    try:
        assert run.stdout is not None and run.stdout.readline() == b"written\n"
    finally:
        run.kill()
        run.wait()
    assert marker.read_text().startswith(f"{run.pid} ")
    # The sandbox is up (by hand, as the user left it); the next run comes and goes.
    with ensure_up(sandbox.lab, lambda _: None):
        pass
    assert sandbox.running
    assert sandbox.status()["healthy"] is True
    assert not marker.exists()
