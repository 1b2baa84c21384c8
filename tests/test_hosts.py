"""Host and Group against real sshd nodes in network namespaces this module creates.

The nodes come from labkit.sandbox.nodes with a lab of this module's own: a
bridge and a /24 of 10.79.0.0/16 picked from the process id, so concurrent
test runs and a user's sandbox never meet.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from labkit.errors import CommandError, ConnectError, NotAllowed
from labkit.hosts import (
    CommandTimeout,
    Group,
    GroupConnectError,
    GroupError,
    Host,
)
from labkit.params import Lab, Node, load_lab
from labkit.sandbox.nodes import start_nodes, stop_nodes
from labkit.secrets import Secret

REPOSITORY = Path(__file__).resolve().parent.parent
SUBNET = 10 + os.getpid() % 90  # our own /24 of 10.79.0.0/16 and bridge, per test process

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="isolated sshd nodes need root (namespaces)"),
]


def write_lab(directory: Path, *, user: str = "lab", sudo: bool = True) -> Path:
    """A params file for three nodes on this module's bridge, state under ``directory``."""
    state = directory / "state"
    key = str(state / "ssh" / "id_ed25519")
    data = {
        "extends": str(REPOSITORY / "params" / "local.yaml"),
        "name": "hosts-test",
        "nodes": [
            {
                "name": f"k3s-node-0{i}",
                "address": f"10.79.{SUBNET}.1{i}",
                "ssh_user": user,
                "ssh_key": key,
            }
            for i in (1, 2, 3)
        ],
        "ssh": {
            "known_hosts": str(state / "ssh" / "known_hosts"),
            "sudo": sudo,
            "connect_timeout_s": 2,
            "command_timeout_s": 30,
            "use_ssh_config": False,
        },
        "sandbox": {
            "state_dir": str(state),
            "bridge": f"lkt-hosts{SUBNET}",
            "gateway": f"10.79.{SUBNET}.1",
            "prefix_length": 24,
            "startup_timeout_s": 30,
        },
        "allow_list": ["127.0.0.0/8", f"10.79.{SUBNET}.0/24"],
    }
    path = directory / "lab.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Three isolated nodes with a sudo-capable user 'lab', up for this module."""
    directory = tmp_path_factory.mktemp("hosts")
    lab = load_lab(write_lab(directory))
    assert lab.sandbox is not None
    state = lab.path(lab.sandbox.state_dir)
    start_nodes(lab, state, progress=lambda _: None)
    yield lab
    stop_nodes(lab, state)


def with_ssh(lab: Lab, **changes: object) -> Lab:
    """``lab`` with some ``ssh`` settings changed."""
    return lab.model_copy(update={"ssh": lab.ssh.model_copy(update=changes)})


def host_key_line(lab: Lab, name: str) -> str:
    """The node's real host key as 'type base64'."""
    assert lab.sandbox is not None
    public = lab.path(lab.sandbox.state_dir) / "nodes" / name / "ssh_host_ed25519_key.pub"
    kind, key = public.read_text().split()[:2]
    return f"{kind} {key}"


def new_key(directory: Path, name: str) -> Path:
    """A fresh ed25519 key pair that no node knows."""
    path = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, timeout=30
    )
    return path


def test_run_returns_exit_code_output_and_duration(lab: Lab) -> None:
    with Host(lab.nodes[0], lab.ssh, lab) as host:
        result = host.run(["printf", "%s|", "a b", "it's", "$HOME", ";", "rm -rf /"])
        assert result.ok
        assert result.stdout == "a b|it's|$HOME|;|rm -rf /|"  # no word splitting, no expansion
        assert result.host == "k3s-node-01"
        assert result.argv[0] == "printf"
        assert 0 < result.duration_s < 10
        failed = host.run(["sh", "-c", "echo out; echo err >&2; exit 7"], check=False)
        assert (failed.exit_code, failed.stdout, failed.stderr) == (7, "out\n", "err\n")
        assert not failed.ok


def test_output_written_just_before_exit_is_never_cut(lab: Lab) -> None:
    """The exit status may arrive before the last stderr bytes: every byte must still be read."""
    tail = "x" * 3000
    with Host(lab.nodes[0], lab.ssh, lab) as host:
        for _ in range(60):
            result = host.run(
                ["sh", "-c", f"printf %s {tail} >&2; cat /nonexistent-labkit"], check=False
            )
            assert result.exit_code == 1
            assert result.stderr.startswith(tail)
            assert result.stderr.endswith("No such file or directory\n"), result.stderr[-80:]


def test_failing_command_raises_with_node_command_exit_and_stderr(lab: Lab) -> None:
    with Host(lab.nodes[1], lab.ssh, lab) as host, pytest.raises(CommandError) as caught:
        host.run(["ls", "/no/such/dir"])
    message = str(caught.value)
    assert message.startswith("k3s-node-02: ")
    assert "ls /no/such/dir" in message
    assert "exited 2" in message
    assert "No such file or directory" in message
    assert caught.value.remote_status == 2
    assert caught.value.exit_code == 2  # the command line's status: labkit's, not ls's


def test_sudo_when_params_say_so_and_not_otherwise(lab: Lab) -> None:
    with Host(lab.nodes[0], lab.ssh, lab) as host:
        assert host.run(["id", "-u"]).stdout.strip() == "0"
        assert host.run(["id", "-u"], sudo=False).stdout.strip() != "0"
    with Host(lab.nodes[0], with_ssh(lab, sudo=False).ssh, lab) as host:
        assert host.run(["id", "-un"]).stdout.strip() == "lab"


def test_stdin_reaches_the_command(lab: Lab) -> None:
    with Host(lab.nodes[0], lab.ssh, lab) as host:
        assert host.run(["cat"], stdin="line one\nline two\n").stdout == "line one\nline two\n"


def test_put_and_get_as_root_through_sudo_and_isolated_from_this_machine(
    lab: Lab, tmp_path: Path
) -> None:
    remote = "/etc/labkit-hosts-test.conf"
    local = tmp_path / "payload"
    local.write_bytes(b"from a file\n")
    with Host(lab.nodes[2], lab.ssh, lab) as host:
        host.put(b"key: value\n\x00binary", remote, mode=0o640)
        assert host.get(remote) == b"key: value\n\x00binary"
        assert host.run(["stat", "-c", "%a %U", remote]).stdout.split() == ["640", "root"]
        host.put(local, remote)
        assert host.get(remote) == b"from a file\n"
        with pytest.raises(CommandError, match=r"k3s-node-03: .*/etc/no-such-file"):
            host.get("/etc/no-such-file")
    assert not Path(remote).exists()  # the node's /etc is an overlay, not ours


def test_put_and_get_without_sudo_use_sftp(lab: Lab) -> None:
    with Host(lab.nodes[0], with_ssh(lab, sudo=False).ssh, lab) as host:
        host.put(b"plain sftp\n", "/home/lab/note.txt", mode=0o600)
        assert host.get("/home/lab/note.txt") == b"plain sftp\n"
        assert host.run(["stat", "-c", "%a %U", "/home/lab/note.txt"]).stdout.split() == [
            "600",
            "lab",
        ]
        with pytest.raises(CommandError, match="k3s-node-01"):
            host.put(b"x", "/etc/not-writable-by-lab")


def test_command_timeout_names_node_and_leaves_host_usable(lab: Lab) -> None:
    with Host(lab.nodes[0], lab.ssh, lab) as host:
        started = time.monotonic()
        with pytest.raises(CommandTimeout, match=r"k3s-node-01: 'sleep 30' .*no exit after 0.5s"):
            host.run(["sleep", "30"], timeout_s=0.5)
        assert time.monotonic() - started < 5
        assert host.run(["true"]).ok


def test_secret_on_stdin_never_reaches_errors_or_logs(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    token = Secret("K10planted-token-4711::server:s3cr3t", "test")
    caplog.set_level(logging.DEBUG, logger="labkit.hosts")
    script = 'read t; echo "join failed with $t" >&2; exit 3'
    with Host(lab.nodes[0], lab.ssh, lab) as host, pytest.raises(CommandError) as caught:
        host.run(["sh", "-c", script], stdin=token.reveal() + "\n")
    assert "join failed with *****" in str(caught.value)
    assert token.reveal() not in str(caught.value)
    assert token.reveal() not in caplog.text
    assert "exited 3" in str(caught.value)


def test_changed_host_key_is_refused(lab: Lab, tmp_path: Path) -> None:
    other = new_key(tmp_path, "impostor").with_suffix(".pub").read_text().split()[:2]
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"{lab.nodes[0].address} {other[0]} {other[1]}\n")
    before = known_hosts.read_text()
    ssh = with_ssh(lab, known_hosts=known_hosts, trust_on_first_use=True).ssh
    with pytest.raises(ConnectError) as caught:
        Host(lab.nodes[0], ssh, lab).run(["true"])
    assert "k3s-node-01" in str(caught.value)
    assert "host key CHANGED" in str(caught.value)
    assert "refusing to connect" in str(caught.value)
    assert known_hosts.read_text() == before  # even TOFU never overwrites a known key


def test_unknown_host_key_refused_unless_trust_on_first_use(lab: Lab, tmp_path: Path) -> None:
    known_hosts = tmp_path / "ssh" / "known_hosts"
    strict = with_ssh(lab, known_hosts=known_hosts, trust_on_first_use=False).ssh
    with pytest.raises(ConnectError, match=r"k3s-node-02 .*is not in .*trust_on_first_use"):
        Host(lab.nodes[1], strict, lab).run(["true"])
    assert not known_hosts.exists()

    trusting = with_ssh(lab, known_hosts=known_hosts, trust_on_first_use=True).ssh
    with Host(lab.nodes[1], trusting, lab) as host:
        assert host.run(["true"]).ok
    recorded = known_hosts.read_text().splitlines()
    assert recorded == [f"{lab.nodes[1].address} {host_key_line(lab, 'k3s-node-02')}"]
    assert known_hosts.stat().st_mode & 0o777 == 0o600
    with Host(lab.nodes[1], strict, lab) as host:  # now known: strict mode connects
        assert host.run(["true"]).ok


def test_unreachable_node_is_one_clear_error(lab: Lab) -> None:
    ghost = lab.nodes[0].model_copy(update={"address": f"10.79.{SUBNET}.99"})
    started = time.monotonic()
    with pytest.raises(ConnectError) as caught:
        Host(ghost, lab.ssh, lab).run(["true"])
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert message.startswith(f"k3s-node-01 (lab@10.79.{SUBNET}.99:22): ")
    assert "no answer within 2s" in message or "unreachable" in message
    assert "Traceback" not in message and "paramiko" not in message


def test_refused_port_is_a_clear_error(lab: Lab) -> None:
    closed = lab.nodes[0].model_copy(update={"ssh_port": 2})
    with pytest.raises(ConnectError, match=r"k3s-node-01 .*connection refused; is sshd running"):
        Host(closed, lab.ssh, lab).run(["true"])


def test_wrong_key_is_refused_naming_the_node(lab: Lab, tmp_path: Path) -> None:
    stranger = lab.nodes[2].model_copy(update={"ssh_key": new_key(tmp_path, "stranger")})
    with pytest.raises(ConnectError) as caught:
        Host(stranger, lab.ssh, lab).run(["true"])
    assert str(caught.value).startswith("k3s-node-03 ")
    assert "authentication refused with key" in str(caught.value)
    missing = lab.nodes[2].model_copy(update={"ssh_key": tmp_path / "absent"})
    with pytest.raises(ConnectError, match=r"k3s-node-03 .*absent does not exist"):
        Host(missing, lab.ssh, lab).run(["true"])


def test_group_runs_in_parallel_and_returns_every_result(lab: Lab) -> None:
    with Group.from_lab(lab) as group:
        started = time.monotonic()
        results = group.run(["sh", "-c", "sleep 1; hostname"])
        elapsed = time.monotonic() - started
    assert {name: r.stdout.strip() for name, r in results.items()} == {
        "k3s-node-01": "k3s-node-01",
        "k3s-node-02": "k3s-node-02",
        "k3s-node-03": "k3s-node-03",
    }
    assert elapsed < 2.8  # three one-second commands, side by side


def test_group_failure_on_two_nodes_is_one_error_naming_both(lab: Lab) -> None:
    script = '[ "$(hostname)" = k3s-node-01 ] || { echo "wrong host $(hostname)" >&2; exit 4; }'
    with Group.from_lab(lab) as group, pytest.raises(GroupError) as caught:
        group.run(["sh", "-c", script])
    error = caught.value
    assert isinstance(error, CommandError)
    assert not isinstance(error, ConnectError)
    assert sorted(error.failures) == ["k3s-node-02", "k3s-node-03"]
    message = str(error)
    assert "2 node(s) failed (k3s-node-02, k3s-node-03)" in message
    assert "k3s-node-02: " in message and "k3s-node-03: " in message
    assert "exited 4 (wrong host k3s-node-02)" in message
    assert "exited 4 (wrong host k3s-node-03)" in message
    assert "k3s-node-01:" not in message


def test_group_with_an_unreachable_node_names_it(lab: Lab) -> None:
    ghost = lab.nodes[2].model_copy(update={"address": f"10.79.{SUBNET}.98"})
    group = Group([Host(lab.nodes[0], lab.ssh, lab), Host(ghost, lab.ssh, lab)])
    with group, pytest.raises(GroupConnectError) as caught:
        group.run(["true"])
    assert isinstance(caught.value, ConnectError)
    assert list(caught.value.failures) == ["k3s-node-03"]
    outcomes = group.attempt(lambda host: host.run(["true"]).ok)
    assert outcomes["k3s-node-01"] is True
    assert isinstance(outcomes["k3s-node-03"], ConnectError)


def test_address_outside_allow_list_refused_before_any_connection(lab: Lab) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        outsider = Node(name="k3s-node-09", address="127.0.0.1", ssh_user="lab", ssh_port=port)
        narrow = lab.model_copy(
            update={"allow_list": [f"10.79.{SUBNET}.0/24"], "nodes": [*lab.nodes, outsider]}
        )
        with pytest.raises(NotAllowed, match=r"127\.0\.0\.1 is not in lab hosts-test's allow_list"):
            Host(outsider, narrow.ssh, narrow).run(["true"])
        with pytest.raises(NotAllowed):
            Group.from_lab(narrow)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody ever knocked


def test_ssh_config_identity_file_is_honoured(lab: Lab, tmp_path: Path) -> None:
    key = lab.path(lab.nodes[0].ssh_key or Path("unset"))
    config = tmp_path / "config"
    config.write_text(f"Host k3s-node-01\n    IdentityFile {key}\n")
    keyless = Node(name="k3s-node-01", address=lab.nodes[0].address, ssh_user="lab")
    ssh = with_ssh(lab, use_ssh_config=True).ssh
    with Host(keyless, ssh, lab, ssh_config=config) as host:
        assert host.run(["hostname"]).stdout.strip() == "k3s-node-01"
