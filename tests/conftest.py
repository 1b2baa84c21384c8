"""Shared session fixtures: a sandbox lab of its own for this test run, and that sandbox up.

The lab extends params/local.yaml but owns everything that could collide with a
user's running sandbox or another test run on this machine: its state
directory (a pytest temp dir), free loopback ports chosen by the kernel, and a
bridge and /24 of 10.78.0.0/16 picked from this process id.
"""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import yaml

from labkit.params import Lab, load_lab
from labkit.sandbox import Sandbox

_SANDBOXES = itertools.count()
REPOSITORY = Path(__file__).resolve().parent.parent
LOCAL_PARAMS = REPOSITORY / "params" / "local.yaml"


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 right now (the kernel picks them)."""
    with ExitStack() as stack:
        sockets = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]


def write_sandbox_params(directory: Path, name: str = "sandbox-test") -> Path:
    """Write a params file for a private sandbox under ``directory``; returns its path."""
    state = directory / "state"
    # A /24 and a bridge of our own, unlikely to meet another run or another sandbox of this run.
    index = 20 + (os.getpid() + 101 * next(_SANDBOXES)) % 200
    ports = free_ports(13)
    as_root = os.geteuid() == 0
    key = str(state / "ssh" / "id_ed25519")
    if as_root:
        # Each node is a network namespace with its own address on the bridge; sshd on port 22.
        nodes = [
            {
                "name": f"k3s-node-0{i}",
                "address": f"10.78.{index}.1{i}",
                "ssh_user": "root",
                "ssh_key": key,
            }
            for i in (1, 2, 3)
        ]
    else:
        # Without root: sshd processes on distinct loopback addresses and free ports.
        nodes = [
            {
                "name": f"k3s-node-0{i}",
                "address": f"127.78.{index}.1{i}",
                "ssh_user": os.environ.get("USER", "nobody"),
                "ssh_port": ports[6 + i],
                "ssh_key": key,
            }
            for i in (1, 2, 3)
        ]
    data = {
        "extends": str(LOCAL_PARAMS),
        "name": name,
        "nodes": nodes,
        "ssh": {"known_hosts": str(state / "ssh" / "known_hosts")},
        "k3s": {"kubeconfig": str(state / "kubeconfig.yaml")},
        "postgres": {
            "port": ports[0],
            "standby_port": ports[1],
            "password": {"file": str(state / "secrets" / "postgres-password")},
        },
        "redis": {
            "port": ports[2],
            "replica_ports": [ports[3], ports[4]],
            "sentinel_ports": ports[10:13],
        },
        "shlink": {
            "base_url": f"http://127.0.0.1:{ports[5]}",
            "api_key": {"file": str(state / "secrets" / "shlink-api-key")},
        },
        "sandbox": {
            "state_dir": str(state),
            "bridge": f"lkt-test{index}",
            "gateway": f"10.78.{index}.1",
        },
        "allow_list": ["127.0.0.0/8", f"10.78.{index}.0/24"],
    }
    path = directory / "params.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def private_sandbox_params() -> Callable[..., Path]:
    """``write_sandbox_params``: for a test that needs a sandbox (or a part) of its own."""
    return write_sandbox_params


@pytest.fixture(scope="session")
def sandbox_lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    """A sandbox Lab private to this test session (own state dir, ports, bridge, subnet)."""
    return load_lab(write_sandbox_params(tmp_path_factory.mktemp("sandbox")))


@pytest.fixture(scope="session")
def sandbox(sandbox_lab: Lab) -> Iterator[Sandbox]:
    """The session's sandbox, up for every test that asks for it, down at the end."""
    lab_sandbox = Sandbox(sandbox_lab)
    try:
        lab_sandbox.up(progress=lambda message: None)
        yield lab_sandbox
    finally:
        lab_sandbox.down()
