"""Sandbox nodes: isolated sshd in namespaces (root), loopback sshd otherwise; nothing left behind.

Each test module uses a bridge and a /24 of 10.79.0.0/16 picked from the process
id, so it never meets a user's sandbox (10.77.0.0/24), the shared test sandbox
(10.78.0.0/16) or a concurrent test run.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from labkit.errors import ConfigError
from labkit.hosts import Group, Host
from labkit.params import Lab, load_lab
from labkit.sandbox import processes
from labkit.sandbox.nodes import (
    netns_name,
    nodes_lab,
    nodes_status,
    start_nodes,
    stop_nodes,
    veth_name,
)

REPOSITORY = Path(__file__).resolve().parents[2]
SUBNET = 150 + os.getpid() % 25  # 150-249 across this module; test_hosts.py uses 10-99

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="isolated sshd nodes need root (namespaces)"),
]


def write_lab(directory: Path, subnet: int, user: str = "root") -> Lab:
    """A lab of three nodes on bridge lkt-nodes<subnet>, state under ``directory``."""
    state = directory / "state"
    key = str(state / "ssh" / "id_ed25519")
    data = {
        "extends": str(REPOSITORY / "params" / "local.yaml"),
        "name": "nodes-test",
        "nodes": [
            {
                "name": f"k3s-node-0{i}",
                "address": f"10.79.{subnet}.1{i}",
                "ssh_user": user,
                "ssh_key": key,
            }
            for i in (1, 2, 3)
        ],
        "ssh": {
            "known_hosts": str(state / "ssh" / "known_hosts"),
            "sudo": False,
            "connect_timeout_s": 3,
            "use_ssh_config": False,
        },
        "sandbox": {
            "state_dir": str(state),
            "bridge": f"lkt-nodes{subnet}",
            "gateway": f"10.79.{subnet}.1",
            "startup_timeout_s": 30,
        },
        "allow_list": [f"10.79.{subnet}.0/24", f"127.79.{subnet}.0/24"],
    }
    path = directory / "lab.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_lab(path)


def state_of(lab: Lab) -> Path:
    """The lab's sandbox state directory."""
    assert lab.sandbox is not None
    return lab.path(lab.sandbox.state_dir)


def leftovers(lab: Lab) -> list[str]:
    """Every namespace, link or mount of this lab still present on the machine."""
    assert lab.sandbox is not None
    bridge = lab.sandbox.bridge
    names = {
        bridge,
        *(netns_name(lab, n) for n in lab.nodes),
        *(veth_name(lab, n) for n in lab.nodes),
    }
    found = []
    namespaces = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    links = subprocess.run(
        ["ip", "-o", "link", "show"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    mounts = Path("/proc/mounts").read_text()
    for name in names:
        found += [f"netns {name}" for line in namespaces.splitlines() if line.split()[0] == name]
        found += [f"link {name}" for line in links.splitlines() if f" {name}:" in line]
        found += [f"mount {name}" for line in mounts.splitlines() if name in line]
    found += [f"mount {line}" for line in mounts.splitlines() if str(state_of(lab)) in line]
    return found


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Three isolated root-login nodes, up for this module, checked clean at the end."""
    lab = write_lab(tmp_path_factory.mktemp("nodes"), SUBNET)
    start_nodes(lab, state_of(lab), progress=lambda _: None)
    yield lab
    stop_nodes(lab, state_of(lab))
    assert leftovers(lab) == []


def run_everywhere(lab: Lab, argv: list[str]) -> dict[str, str]:
    """stdout of ``argv`` on every node."""
    with Group.from_lab(lab) as group:
        return {name: result.stdout for name, result in group.run(argv).items()}


def test_status_reports_isolated_healthy_nodes(lab: Lab) -> None:
    rows = nodes_status(lab, state_of(lab))
    assert [row["name"] for row in rows] == lab.node_names
    for row, node in zip(rows, lab.nodes, strict=True):
        assert row["isolated"] is True
        assert row["healthy"] is True
        assert (row["address"], row["port"]) == (node.address, 22)
        assert processes.alive(row["pid"])
        assert f"network namespace {netns_name(lab, node)}" in row["detail"]
    json.dumps(rows)  # JSON-ready


def test_each_node_has_its_hostname_and_address(lab: Lab) -> None:
    script = "hostname; cat /etc/hostname; ip -o -4 addr show dev eth0 | awk '{print $4}'"
    outputs = run_everywhere(lab, ["sh", "-c", script])
    for node in lab.nodes:
        assert outputs[node.name].split() == [
            node.name,
            node.name,
            f"10.79.{SUBNET}.1{node.name[-1]}/24",
        ]


def test_nodes_reach_each_other_by_address_and_name(lab: Lab) -> None:
    with Host(lab.nodes[0], lab.ssh, lab) as host:
        for other in lab.nodes[1:]:
            assert host.run(["ping", "-n", "-c", "1", "-W", "2", other.address]).ok
            assert host.run(["getent", "ahostsv4", other.name]).stdout.split()[0] == other.address


def test_provisioning_on_a_node_changes_nothing_on_this_machine(lab: Lab) -> None:
    marker = f"labkit-nodes-test-{os.getpid()}"
    paths = [f"/etc/{marker}", f"/usr/local/bin/{marker}", f"/var/lib/{marker}", f"/root/{marker}"]
    with Host(lab.nodes[1], lab.ssh, lab) as host:
        host.run(["touch", *paths])
        host.run(["useradd", "--no-create-home", "provisioned"])
        host.run(["hostname", "changed-by-provisioning"])
        assert host.run(["ls", *paths]).ok
    for path in paths:
        assert not Path(path).exists()
    with pytest.raises(KeyError):
        pwd.getpwnam("provisioned")
    assert os.uname().nodename != "changed-by-provisioning"
    with Host(lab.nodes[2], lab.ssh, lab) as neighbour:  # nodes do not share each other's files
        assert not neighbour.run(["ls", paths[0]], check=False).ok


def test_start_again_changes_nothing(lab: Lab) -> None:
    before = [row["pid"] for row in nodes_status(lab, state_of(lab))]
    known_hosts = lab.path(lab.ssh.known_hosts).read_text()
    said: list[str] = []
    start_nodes(lab, state_of(lab), progress=said.append)
    assert [row["pid"] for row in nodes_status(lab, state_of(lab))] == before
    assert lab.path(lab.ssh.known_hosts).read_text() == known_hosts
    assert sum("already running" in line for line in said) == 3


def test_crashed_node_is_reported_then_restarted(lab: Lab) -> None:
    row = nodes_status(lab, state_of(lab))[1]
    os.kill(row["pid"], signal.SIGKILL)  # our own sshd, by its recorded pid
    processes.poll_until("sshd to die", lambda: not processes.alive(row["pid"]), 10)
    crashed = nodes_status(lab, state_of(lab))[1]
    assert crashed["healthy"] is False
    assert crashed["pid"] is None
    assert "sshd exited" in crashed["detail"]
    started = time.monotonic()
    start_nodes(lab, state_of(lab), progress=lambda _: None)
    assert time.monotonic() - started < 10  # its namespace and veth are reused as they are
    assert nodes_status(lab, state_of(lab))[1]["healthy"] is True
    assert run_everywhere(lab, ["hostname"])["k3s-node-02"].strip() == "k3s-node-02"


def test_stop_leaves_nothing_behind_even_processes_started_on_a_node(tmp_path: Path) -> None:
    lab = write_lab(tmp_path, SUBNET + 25, user="ubuntu")
    state = state_of(lab)
    start_nodes(lab, state, progress=lambda _: None)
    try:
        sshd_pids = [row["pid"] for row in nodes_status(lab, state)]
        with Host(lab.nodes[0], lab.ssh, lab) as host:
            assert host.run(["id", "-un"]).stdout.strip() == "ubuntu"
            daemon = host.run(["sh", "-c", "setsid sleep 600 >/dev/null 2>&1 & echo $!"])
        daemon_pid = int(daemon.stdout)
        assert processes.alive(daemon_pid)
        assert leftovers(lab) != []
    finally:
        stop_nodes(lab, state)
    assert leftovers(lab) == []
    assert not any(processes.alive(pid) for pid in [*sshd_pids, daemon_pid])
    assert all(
        row["pid"] is None and row["detail"] == "not started" for row in nodes_status(lab, state)
    )
    stop_nodes(lab, state)  # stopping twice is fine


def test_loopback_nodes_say_they_are_not_isolated(tmp_path: Path) -> None:
    lab = write_lab(tmp_path, SUBNET + 50)
    state = state_of(lab)
    start_nodes(lab, state, progress=lambda _: None, isolated=False)
    try:
        rows = nodes_status(lab, state)
        assert [(r["address"], r["port"]) for r in rows] == [
            (f"127.79.{SUBNET + 50}.1{i}", 2222) for i in (1, 2, 3)
        ]
        assert all(r["isolated"] is False and r["healthy"] is True for r in rows)
        assert all("NOT isolated" in r["detail"] for r in rows)
        with Group.from_lab(nodes_lab(lab, state)) as group:
            assert all(r.ok for r in group.run(["true"]).values())
        with pytest.raises(ConfigError, match="stop the nodes first"):
            start_nodes(lab, state, progress=lambda _: None, isolated=True)
    finally:
        stop_nodes(lab, state)
    assert not any(processes.alive(r["pid"]) for r in rows)
    assert leftovers(lab) == []


def test_loopback_nodes_refuse_a_user_they_cannot_serve(tmp_path: Path) -> None:
    lab = write_lab(tmp_path, SUBNET + 75, user="someone-else")
    with pytest.raises(ConfigError, match="cannot log in to a loopback node"):
        start_nodes(lab, state_of(lab), progress=lambda _: None, isolated=False)
