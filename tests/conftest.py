"""Shared session fixtures: a sandbox lab of its own for this test run, and that sandbox up.

The lab extends params/local.yaml but owns everything that could collide with a
user's running sandbox or another test run on this machine: its state
directory (a pytest temp dir), free loopback ports chosen by the kernel, and a
bridge and /24 of 10.78.0.0/16 picked from this process id.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, settings

from labkit.params import Lab, load_lab
from labkit.routes import route_to
from labkit.sandbox import Sandbox

# Property tests: the same examples on every run (a CI failure reproduces here), no per-example
# deadline (a shared 2-core machine makes timings noise), and no example database in the tree.
settings.register_profile(
    "labkit",
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile("labkit")

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
    # Skip a /24 whose bridge is already there (another test run's sandbox, or one a killed run
    # left behind): sharing it, a "sandbox down" test would find a live bridge and connect.
    index = 0
    for _ in range(200):
        index = 20 + (os.getpid() + 101 * next(_SANDBOXES)) % 200
        if not Path(f"/sys/class/net/lkt-test{index}").exists():
            break
    ports = free_ports(18)
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
            # Short intervals: alert tests see a rule go pending within seconds.
            "monitoring": {
                "prometheus_port": ports[13],
                "alertmanager_port": ports[14],
                "redis_exporter_port": ports[15],
                "postgres_exporter_ports": [ports[16], ports[17]],
                "scrape_interval_s": 1,
                "evaluation_interval_s": 1,
            },
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


# Networks the tests may talk to: loopback, and the /16s their own namespaces use
# (10.77 the default sandbox, 10.78 session sandboxes, 10.79 hosts/nodes tests, 10.81 steps).
_TEST_NETWORKS = [
    ipaddress.ip_network(n)
    for n in (
        "127.0.0.0/8",
        "::1/128",
        "10.77.0.0/16",
        "10.78.0.0/16",
        "10.79.0.0/16",
        "10.81.0.0/16",
    )
]


def _guarded(connect: Callable[..., Any]) -> Callable[..., Any]:
    def guard(sock: socket.socket, address: Any, *args: Any) -> Any:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                host = ipaddress.ip_address(address[0])
            except ValueError:  # a name: only localhost is expected in tests
                host = ipaddress.ip_address("127.0.0.1" if address[0] == "localhost" else "0.0.0.0")
            if not any(host in network for network in _TEST_NETWORKS):
                raise AssertionError(
                    f"a test tried to connect to {address[0]}: tests talk only to loopback "
                    "and to namespaces they created"
                )
            if not host.is_loopback:
                # A namespace's address is real only while its link carries it: refuse one
                # the kernel would send through a gateway (a sandbox that is down).
                route = route_to(str(host))
                if route is None or route.gateway is not None:
                    raise AssertionError(
                        f"a test tried to connect to {address[0]}, which this machine would "
                        f"route {f'via {route.gateway} dev {route.device}' if route else 'nowhere'}"
                        ": its namespace is not up"
                    )
        return connect(sock, address, *args)

    return guard


@pytest.fixture(autouse=True, scope="session")
def _only_loopback_and_own_namespaces() -> Iterator[None]:
    """Fail any test whose code (in this process) connects outside the test networks."""
    original, original_ex = socket.socket.connect, socket.socket.connect_ex
    socket.socket.connect = _guarded(original)  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded(original_ex)  # type: ignore[method-assign]
    try:
        yield
    finally:
        socket.socket.connect = original  # type: ignore[method-assign]
        socket.socket.connect_ex = original_ex  # type: ignore[method-assign]
