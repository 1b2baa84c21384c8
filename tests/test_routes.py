"""The sandbox guard: a sandbox address is contacted only while the sandbox's bridge carries it.

The route decision is tested against the kernel's real state: a bridge this module
makes by hand in each state (missing, no node attached, no address on it, up), and a
private sandbox's nodes up and then down. The command line is run with a spy on every
socket connect: with the sandbox down it must stop at once, exit 2, and connect nowhere.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from labkit.cli import main
from labkit.errors import ConnectError, SandboxDown
from labkit.hosts import Host
from labkit.params import load_lab
from labkit.routes import (
    SANDBOX_DOWN,
    Route,
    bridge_state,
    in_sandbox_network,
    require_sandbox_route,
    route_to,
)
from labkit.sandbox.nodes import start_nodes, stop_nodes
from tests.conftest import LOCAL_PARAMS, REPOSITORY, write_sandbox_params

ROOT = os.geteuid() == 0
NUMBER = 100 + os.getpid() % 100  # our own /24 of 10.79.0.0/16 (hosts tests use 10..99)
needs_root = pytest.mark.skipif(not ROOT, reason="making a bridge needs root")


@dataclass(frozen=True)
class Settings:
    """Sandbox settings as params give them."""

    bridge: str
    gateway: str
    prefix_length: int = 24


HAND_MADE = Settings(f"lkt-rt{NUMBER}", f"10.79.{NUMBER}.1")
NODE_ADDRESS = f"10.79.{NUMBER}.11"


def ip(*argv: str, check: bool = True) -> None:
    """Run ``ip`` (as root): the test's own bridge, veth and namespace only."""
    subprocess.run(["ip", *argv], check=check, capture_output=True, timeout=20)


def wait_for(state: str, bridge: str, timeout_s: float = 10.0) -> None:
    """Poll the bridge's operational state until it is ``state``."""
    deadline = time.monotonic() + timeout_s
    while bridge_state(bridge) != state:
        assert time.monotonic() < deadline, f"{bridge} stayed {bridge_state(bridge)}"
        time.sleep(0.05)


@pytest.fixture
def bridge() -> Iterator[Callable[[str], None]]:
    """Build the hand-made bridge in a state: missing, no-port, no-address or up."""
    name, namespace = HAND_MADE.bridge, f"lkt-rt{NUMBER}-node"
    host_side, peer = f"lkrth{NUMBER}", f"lkrtp{NUMBER}"

    def build(state: str) -> None:
        if state == "missing":
            return
        ip("link", "add", name, "type", "bridge")
        if state != "no-address":
            ip("addr", "add", f"{HAND_MADE.gateway}/24", "dev", name)
        ip("link", "set", name, "up")
        if state == "no-port":
            return  # a bridge without ports reports "unknown" (new) or "down", never "up"
        # A node: a veth whose far end is up in a namespace of ours gives the bridge carrier.
        ip("netns", "add", namespace)
        ip("link", "add", host_side, "type", "veth", "peer", "name", peer)
        ip("link", "set", peer, "netns", namespace)
        ip("-n", namespace, "link", "set", peer, "up")
        ip("link", "set", host_side, "master", name, "up")
        wait_for("up", name)

    try:
        yield build
    finally:
        ip("link", "del", host_side, check=False)
        ip("netns", "del", namespace, check=False)
        ip("link", "del", name, check=False)


def down_params(directory: Path) -> Path:
    """A private sandbox that is not up, its nodes at addresses in its own subnet.

    Without root a private sandbox's nodes live on loopback; the guard is about the
    subnet, so the nodes are put there whoever runs the tests.
    """
    path = write_sandbox_params(directory, "routes-down")
    data = yaml.safe_load(path.read_text())
    prefix = data["sandbox"]["gateway"].rsplit(".", 1)[0]
    for index, node in enumerate(data["nodes"], start=11):
        node["address"] = f"{prefix}.{index}"
        node.pop("ssh_port", None)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every address this process tries to connect to; each attempt is refused."""
    attempts: list[Any] = []

    def refuse(sock: socket.socket, address: Any, *rest: Any) -> Any:
        attempts.append(address)
        raise OSError("refused by the test's connect spy")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


@pytest.mark.parametrize(
    ("address", "inside"),
    [
        ("10.79.0.11", False),
        (f"10.79.{NUMBER}.11", True),
        (f"10.79.{NUMBER}.1", True),
        ("127.0.0.1", False),
        ("k3s-node-01", False),  # a name is never taken for a sandbox address
    ],
)
def test_which_addresses_are_sandbox_addresses(address: str, inside: bool) -> None:
    assert in_sandbox_network(HAND_MADE, address) is inside


def test_an_address_outside_the_subnet_passes_without_a_bridge() -> None:
    assert bridge_state(HAND_MADE.bridge) == "missing"
    require_sandbox_route(HAND_MADE, "127.0.0.1")


@needs_root
@pytest.mark.root
@pytest.mark.parametrize(
    ("state", "reason"),
    [
        ("missing", f"its bridge {HAND_MADE.bridge} does not exist"),
        ("no-port", "(no node attached)"),
        # The bug this guards: the bridge exists but does not carry the subnet, so the
        # kernel would send the packet out through this machine's own route.
        ("no-address", f"{NODE_ADDRESS} "),
        ("up", ""),
    ],
)
def test_route_decision(bridge: Callable[[str], None], state: str, reason: str) -> None:
    bridge(state)
    if not reason:
        require_sandbox_route(HAND_MADE, NODE_ADDRESS)
        assert route_to(NODE_ADDRESS) == Route(HAND_MADE.bridge, None)
        return
    with pytest.raises(SandboxDown) as caught:
        require_sandbox_route(HAND_MADE, NODE_ADDRESS)
    assert SANDBOX_DOWN in str(caught.value) and reason in str(caught.value)
    if state == "no-address":
        assert f"not bridge {HAND_MADE.bridge}" in str(caught.value) or "no route" in str(
            caught.value
        )


@needs_root
@pytest.mark.root
def test_a_private_sandbox_is_reached_only_while_its_nodes_are_up(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    lab = load_lab(write_sandbox_params(tmp_path, "routes-test"))
    assert lab.sandbox is not None
    state = lab.path(lab.sandbox.state_dir)
    node = lab.nodes[0]
    start_nodes(lab, state, progress=lambda _: None)
    try:
        assert route_to(node.address) == Route(lab.sandbox.bridge, None)
        with Host(node, lab.ssh, lab) as host:
            assert host.run(["hostname"]).stdout.strip() == node.name
    finally:
        stop_nodes(lab, state)
    assert bridge_state(lab.sandbox.bridge) == "missing"
    attempts = request.getfixturevalue("connects")  # from here on every connect is refused
    with pytest.raises(SandboxDown, match="the sandbox is not running: `labkit sandbox up`"):
        Host(node, lab.ssh, lab).run(["hostname"])
    assert attempts == []


def test_plan_with_the_sandbox_down_stops_before_any_connection(
    tmp_path: Path, connects: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    params = down_params(tmp_path)
    started, computed = time.monotonic(), time.process_time()
    code = main(["plan", "--params", str(params), "--phase", "1"])
    took, worked = time.monotonic() - started, time.process_time() - computed
    err = capsys.readouterr().err
    assert code == 2, err
    assert SANDBOX_DOWN in err and "Traceback" not in err
    assert connects == []
    # Under 2 s of work, and no wait for anything: the shared test machine may be busy,
    # so the wall-clock bound has room, but a connect or SSH timeout (5 s) would not fit.
    assert worked < 2.0 and took < 4.5, (worked, took)


def test_check_and_bench_with_the_sandbox_down_connect_nowhere(
    tmp_path: Path, connects: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    params = down_params(tmp_path)
    lab = load_lab(params)
    address = lab.nodes[0].address
    with pytest.raises(ConnectError, match="the sandbox is not running"):
        Host(lab.nodes[0], lab.ssh, lab)
    code = main(
        ["bench", f"http://{address}:8080/", "--params", str(params), "--rate", "1",
         "--duration", "1"]
    )  # fmt: skip
    assert code == 2 and SANDBOX_DOWN in capsys.readouterr().err
    assert connects == []


SPY = """
import socket, sys
attempts = []
def refuse(sock, address, *rest):
    attempts.append(address)
    raise OSError("refused by the test's connect spy")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
from labkit.cli import main
code = main(sys.argv[1:])
print(f"connect attempts: {attempts}", file=sys.stderr)
sys.exit(code)
"""


def run_cli_with_spy(*argv: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """``labkit argv`` in a fresh interpreter whose every connect is recorded and refused."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", SPY, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPOSITORY,
        check=False,
    )
    return done, time.monotonic() - started


def test_the_command_line_exits_2_at_once_and_connects_nowhere(tmp_path: Path) -> None:
    params = down_params(tmp_path)
    done, took = run_cli_with_spy("plan", "--params", str(params), "--phase", "1")
    assert done.returncode == 2, done.stderr
    assert SANDBOX_DOWN in done.stderr and "Traceback" not in done.stderr
    assert "connect attempts: []" in done.stderr
    # Interpreter start and imports included, on a shared machine that may be busy: this
    # bound only catches a hang; the in-process test above bounds labkit's own time.
    assert took < 20.0, f"took {took:.1f}s"


@pytest.mark.skipif(
    bridge_state(load_lab(LOCAL_PARAMS).sandbox.bridge) != "missing",  # type: ignore[union-attr]
    reason="the default sandbox is up on this machine",
)
def test_plan_of_the_default_sandbox_while_it_is_down() -> None:
    done, _ = run_cli_with_spy("plan", "--params", "params/local.yaml", "--phase", "1")
    assert done.returncode == 2, done.stderr
    assert "k3s-node-01: 10.77.0.11 is a sandbox address but " + SANDBOX_DOWN in done.stderr
    assert "connect attempts: []" in done.stderr
