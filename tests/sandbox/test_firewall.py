"""The forwarding fence: sandbox nodes do not route beyond their bridge, even when forwarding is on.

The effect is proved in a topology made only of network namespaces this module
creates: a "machine" namespace with ``net.ipv4.ip_forward=1`` (set inside it; this
machine's own setting is never touched), a bridge with one node behind it, and an
"outside" network on another link. The node reaches the outside without the fence
and not with it; it still reaches the machine itself. The real nodes' start and stop
add and remove the table in this machine's namespace.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit.params import load_lab
from labkit.sandbox import firewall
from labkit.sandbox.nodes import start_nodes, stop_nodes
from tests.conftest import write_sandbox_params

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and nftables need root"),
    pytest.mark.skipif(firewall._binary() is None, reason="needs nft (apt-get install nftables)"),
]

N = os.getpid() % 200 + 20
MACHINE, NODE, OUTSIDE = (f"lkt-fw{N}-{role}" for role in ("machine", "node", "outside"))
BRIDGE = "lkt-fwbr"
GATEWAY, NODE_ADDRESS = f"10.79.{N}.1", f"10.79.{N}.11"
EDGE, FAR = f"10.81.{N}.1", f"10.81.{N}.2"


def ip(*argv: str, namespace: str | None = None, check: bool = True) -> None:
    """``ip`` in one of this module's namespaces (or, for netns add/del, in none)."""
    prefix = ["ip", "-n", namespace] if namespace else ["ip"]
    subprocess.run([*prefix, *argv], check=check, capture_output=True, timeout=20)


def in_namespace(namespace: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", namespace, *argv],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def reaches(address: str) -> bool:
    """The node pings ``address`` (one echo, one second)."""
    return in_namespace(NODE, "ping", "-c", "1", "-W", "1", address).returncode == 0


def fence(action: str) -> None:
    """Run labkit's own fence function inside the machine namespace."""
    code = f"from labkit.sandbox import firewall; firewall.{action}_fence({BRIDGE!r})"
    done = in_namespace(MACHINE, sys.executable, "-c", code)
    assert done.returncode == 0, done.stderr


def fence_present() -> bool:
    code = f"from labkit.sandbox import firewall; print(firewall.fence_present({BRIDGE!r}))"
    return in_namespace(MACHINE, sys.executable, "-c", code).stdout.strip() == "True"


@pytest.fixture
def topology() -> Iterator[None]:
    for namespace in (MACHINE, NODE, OUTSIDE):
        ip("netns", "add", namespace)
    try:
        done = in_namespace(MACHINE, "sysctl", "-w", "net.ipv4.ip_forward=1")
        assert done.returncode == 0, done.stderr
        ip("link", "add", BRIDGE, "type", "bridge", namespace=MACHINE)
        ip("addr", "add", f"{GATEWAY}/24", "dev", BRIDGE, namespace=MACHINE)
        ip("link", "set", BRIDGE, "up", namespace=MACHINE)
        # The node: a veth into the bridge, default route via the machine (as sandbox nodes).
        ip("link", "add", "to-node", "type", "veth", "peer", "name", "eth0", "netns", NODE,
           namespace=MACHINE)  # fmt: skip
        ip("link", "set", "to-node", "master", BRIDGE, "up", namespace=MACHINE)
        ip("addr", "add", f"{NODE_ADDRESS}/24", "dev", "eth0", namespace=NODE)
        ip("link", "set", "eth0", "up", namespace=NODE)
        ip("route", "add", "default", "via", GATEWAY, namespace=NODE)
        # The outside: another of the machine's networks, which routes back to the nodes.
        ip("link", "add", "to-outside", "type", "veth", "peer", "name", "eth0", "netns", OUTSIDE,
           namespace=MACHINE)  # fmt: skip
        ip("addr", "add", f"{EDGE}/24", "dev", "to-outside", namespace=MACHINE)
        ip("link", "set", "to-outside", "up", namespace=MACHINE)
        ip("addr", "add", f"{FAR}/24", "dev", "eth0", namespace=OUTSIDE)
        ip("link", "set", "eth0", "up", namespace=OUTSIDE)
        ip("route", "add", "default", "via", EDGE, namespace=OUTSIDE)
        yield
    finally:
        for namespace in (NODE, OUTSIDE, MACHINE):
            ip("netns", "del", namespace, check=False)


def test_the_fence_keeps_nodes_from_routing_beyond_their_bridge(topology: None) -> None:
    host_forwarding = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    assert reaches(GATEWAY)
    assert reaches(FAR), "without the fence the machine forwards the node's packets"
    fence("ensure")
    assert fence_present()
    assert not reaches(FAR)
    # The machine itself is not beyond the bridge: its addresses are delivered, not forwarded.
    assert reaches(GATEWAY) and reaches(EDGE)
    fence("ensure")  # again: replaced, not doubled
    assert not reaches(FAR)
    fence("remove")
    assert not fence_present()
    assert reaches(FAR)
    fence("remove")  # nothing left to remove: no error
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == host_forwarding


def test_nodes_start_with_the_fence_and_stop_without_it(tmp_path: Path) -> None:
    lab = load_lab(write_sandbox_params(tmp_path, "fence-test"))
    assert lab.sandbox is not None
    state = lab.path(lab.sandbox.state_dir)
    bridge = lab.sandbox.bridge
    assert not firewall.fence_present(bridge)
    try:
        start_nodes(lab, state, progress=lambda _: None)
        assert firewall.fence_present(bridge)
        listed = subprocess.run(
            ["nft", "list", "table", "inet", firewall.table_name(bridge)],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
        assert f'iifname "{bridge}" oifname != "{bridge}" drop' in listed
    finally:
        stop_nodes(lab, state)
    assert not firewall.fence_present(bridge)
