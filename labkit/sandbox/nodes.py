"""The sandbox's three SSH nodes: OpenSSH sshd, key-only auth, generated host keys.

As root each node is isolated: a network namespace with a veth into the lab's
private bridge (``lab.sandbox.bridge``, gateway ``lab.sandbox.gateway``) and the
node's address from params, its own hostname (UTS namespace), and a
copy-on-write view of the directories provisioning changes: a private mount
namespace with an overlayfs over /etc, /usr (so /bin, /sbin, /lib on merged-usr
systems), /var, /root, /opt, /home, /srv, /tmp and /run whose upper layers live
under ``<state>/nodes/<name>/layers``. Writes there change nothing on the host.

The bridge is fenced (``labkit.sandbox.firewall``): when this machine forwards
IPv4, nothing is routed from the bridge to its other networks or back.

What is still shared with the host (kernel-wide, not namespaced): loaded kernel
modules, swap, non-``net.*`` sysctls, the clock, and files outside the
overlaid directories (e.g. /work, /mnt, /boot). Provisioning steps that touch
those must treat the sandbox node as plan-only for them.

Without root nodes are plain sshd processes on distinct loopback addresses
(127.X.Y.Z from the node's address) and ports >= 1024; they are not isolated,
``nodes_status`` says so, and ``nodes_lab`` gives the lab with those endpoints.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labkit.errors import ConfigError, LabkitError, SandboxDown
from labkit.known_hosts import known_hosts_name
from labkit.params import Lab, Node
from labkit.sandbox import firewall, processes

__all__ = [
    "OVERLAID",
    "netns_name",
    "node_endpoint",
    "nodes_lab",
    "nodes_status",
    "start_nodes",
    "stop_nodes",
    "veth_name",
]

SSHD = "/usr/sbin/sshd"
OVERLAID = ("/etc", "/usr", "/var", "/root", "/opt", "/home", "/srv", "/tmp", "/run")
_IP_TIMEOUT_S = 20.0
_UNPRIVILEGED_PORT = 2222


def _settings(lab: Lab) -> Any:
    if lab.sandbox is None:
        raise ConfigError(f"lab {lab.name} has no 'sandbox' section; sandbox nodes need one")
    return lab.sandbox


def netns_name(lab: Lab, node: Node) -> str:
    """The node's network namespace name (derived from the bridge so labs never collide)."""
    return f"{_settings(lab).bridge}-{node.name}"


def veth_name(lab: Lab, node: Node, side: str = "h") -> str:
    """The host-side (``h``) or temporary peer (``p``) veth name; at most 15 characters."""
    digest = hashlib.sha1(f"{_settings(lab).bridge}/{node.name}".encode()).hexdigest()[:10]
    return f"lk{side}{digest}"


def _node_dir(state_dir: Path, node: Node) -> Path:
    return state_dir / "nodes" / node.name


def _loopback_for(node: Node, index: int) -> str:
    try:
        address = ipaddress.ip_address(node.address)
    except ValueError:
        return f"127.0.0.{11 + index}"
    if address.version == 4:
        return "127." + ".".join(str(address).split(".")[1:])
    return f"127.0.0.{11 + index}"


def node_endpoint(lab: Lab, node: Node, state_dir: Path) -> tuple[str, int]:
    """Where the node's sshd listens: its params address when isolated, else a loopback one."""
    record = _read_record(state_dir, node)
    if record is not None:
        return str(record["address"]), int(record["port"])
    return node.address, node.ssh_port


def nodes_lab(lab: Lab, state_dir: Path) -> Lab:
    """``lab`` with each node's address/port replaced by where its sshd really listens."""
    nodes = []
    for node in lab.nodes:
        address, port = node_endpoint(lab, node, state_dir)
        nodes.append(node.model_copy(update={"address": address, "ssh_port": port}))
    return lab.model_copy(update={"nodes": nodes})


def _read_record(state_dir: Path, node: Node) -> dict[str, Any] | None:
    try:
        data = json.loads((_node_dir(state_dir, node) / "node.json").read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise LabkitError(
            f"sandbox node {node.name}: {_node_dir(state_dir, node)}/node.json is corrupt ({exc}); "
            "run `labkit sandbox down` and remove it"
        ) from None
    return data if isinstance(data, dict) else None


def _command(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=_IP_TIMEOUT_S, check=False
        )
    except FileNotFoundError as exc:
        raise LabkitError(
            f"sandbox nodes: {argv[0]} is not installed; apt-get install -y iproute2 "
            "openssh-server util-linux"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise LabkitError(
            f"sandbox nodes: {shlex.join(argv)} did not finish in {_IP_TIMEOUT_S:g}s"
        ) from exc
    if check and done.returncode != 0:
        raise LabkitError(
            f"sandbox nodes: {shlex.join(argv)} exited {done.returncode} "
            f"({done.stderr.strip() or done.stdout.strip()})"
        )
    return done


def _keygen(path: Path, comment: str) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    _command(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])


def _client_keys(lab: Lab) -> list[Path]:
    keys: list[Path] = []
    for node in lab.nodes:
        if node.ssh_key is None:
            raise ConfigError(
                f"sandbox node {node.name}: nodes[].ssh_key must name a key file; "
                "the sandbox generates it there"
            )
        key = lab.path(node.ssh_key)
        if key not in keys:
            keys.append(key)
    return keys


def _write_known_hosts(lab: Lab, state_dir: Path) -> None:
    path = lab.path(lab.ssh.known_hosts)
    ours: dict[str, str] = {}
    for node in lab.nodes:
        address, port = node_endpoint(lab, node, state_dir)
        public = (_node_dir(state_dir, node) / "ssh_host_ed25519_key.pub").read_text().split()
        ours[known_hosts_name(address, port)] = f"{public[0]} {public[1]}"
    kept = []
    if path.exists():
        kept = [
            line
            for line in path.read_text().splitlines()
            if line.strip() and line.split()[0] not in ours
        ]
    lines = kept + [f"{name} {key}" for name, key in ours.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text("\n".join(lines) + "\n")
    partial.chmod(0o600)
    partial.replace(path)


def _sshd_config(
    lab: Lab, node: Node, state_dir: Path, address: str, port: int, isolated: bool
) -> Path:
    directory = _node_dir(state_dir, node)
    authorized = directory / "authorized_keys"
    authorized.write_text("".join(Path(f"{key}.pub").read_text() for key in _client_keys(lab)))
    authorized.chmod(0o600)
    config = directory / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                f"ListenAddress {address}",
                f"HostKey {directory / 'ssh_host_ed25519_key'}",
                # Isolated: the boot script installs the keys in the user's home in the node.
                f"AuthorizedKeysFile {'.ssh/authorized_keys' if isolated else authorized}",
                "PidFile none",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "UsePAM no",
                "StrictModes no",  # the state dir's modes are the user's business
                "PrintMotd no",
                "Subsystem sftp internal-sftp",
                f"AllowUsers {node.ssh_user}",
                "",
            ]
        )
    )
    return config


def _boot_script(lab: Lab, node: Node, state_dir: Path, config: Path) -> Path:
    directory = _node_dir(state_dir, node)
    hosts = "".join(f"{other.address} {other.name}\\n" for other in lab.nodes)
    lines = ["#!/bin/sh", "set -eu", f"hostname {shlex.quote(node.name)}"]
    # The overlay over the directory holding the layers goes last: once mounted, paths
    # below it resolve through overlayfs, which cannot serve as another overlay's upper.
    holder = [t for t in OVERLAID if directory.resolve().is_relative_to(t)]
    for target in [t for t in OVERLAID if t not in holder] + holder:
        layer = directory / "layers" / target.strip("/")
        upper, work = layer / "upper", layer / "work"
        options = f"lowerdir={target},upperdir={upper},workdir={work}"
        lines += [
            f"mkdir -p {shlex.quote(str(upper))} {shlex.quote(str(work))}",
            # The merged root takes its mode from the upper dir: /tmp must stay 1777.
            f"chmod --reference={target} {shlex.quote(str(upper))}",
            f"chown --reference={target} {shlex.quote(str(upper))}",
            f"mount -t overlay {shlex.quote('labkit-' + node.name)} -o {shlex.quote(options)} "
            f"{target}",
        ]
    user = shlex.quote(node.ssh_user)
    lines += [
        "mkdir -p /run/sshd",
        # The login user exists only in the node's overlay, like the homelab's cloud user:
        # '*' keeps the account usable with keys and without a password; sudo needs none.
        f"id -u {user} >/dev/null 2>&1 || useradd -m -p '*' -s /bin/sh {user}",
        # sshd reads authorized_keys as the user, who cannot see into the state directory.
        f'home=$(getent passwd {user} | cut -d: -f6) && mkdir -p "$home/.ssh"',
        f'cp {shlex.quote(str(directory / "authorized_keys"))} "$home/.ssh/authorized_keys"',
        f'chown -R {user}: "$home/.ssh" && chmod 700 "$home/.ssh"',
        'chmod 600 "$home/.ssh/authorized_keys"',
    ]
    if node.ssh_user != "root":
        sudoers = shlex.quote(f"/etc/sudoers.d/labkit-{node.ssh_user}")
        lines += [
            "mkdir -p /etc/sudoers.d",
            f"printf '%s ALL=(ALL) NOPASSWD:ALL\\n' {user} > {sudoers}",
            f"chmod 440 {sudoers}",
        ]
    lines += [
        f"printf '%s\\n' {shlex.quote(node.name)} > /etc/hostname",
        f"grep -q {shlex.quote('# labkit sandbox nodes')} /etc/hosts || "
        f"printf '# labkit sandbox nodes\\n{hosts}' >> /etc/hosts",
        f"exec {SSHD} -D -e -f {shlex.quote(str(config))}",
        "",
    ]
    script = directory / "boot.sh"
    script.write_text("\n".join(lines))
    script.chmod(0o700)
    return script


def _links() -> set[str]:
    done = _command(["ip", "-o", "link", "show"])
    return {line.split(":")[1].strip().split("@")[0] for line in done.stdout.splitlines()}


def _namespaces() -> set[str]:
    done = _command(["ip", "netns", "list"])
    return {line.split()[0] for line in done.stdout.splitlines() if line.strip()}


def _ensure_bridge(lab: Lab) -> None:
    settings = _settings(lab)
    if settings.bridge not in _links():
        # A fixed MAC: otherwise the bridge takes its ports' lowest MAC, which changes as
        # nodes join, and nodes keep sending to the stale one until their ARP entry expires.
        digest = hashlib.sha1(settings.bridge.encode()).hexdigest()
        mac = "02:" + ":".join(digest[i : i + 2] for i in range(0, 10, 2))
        _command(["ip", "link", "add", settings.bridge, "address", mac, "type", "bridge"])
    addresses = _command(["ip", "-o", "addr", "show", "dev", settings.bridge]).stdout
    gateway = f"{settings.gateway}/{settings.prefix_length}"
    if f" {gateway} " not in addresses:
        _command(["ip", "addr", "add", gateway, "dev", settings.bridge])
    _command(["ip", "link", "set", settings.bridge, "up"])


def _ensure_netns(lab: Lab, node: Node) -> None:
    settings = _settings(lab)
    namespace, host_side = netns_name(lab, node), veth_name(lab, node)
    in_namespace = ["ip", "-n", namespace]
    if namespace not in _namespaces():
        _command(["ip", "netns", "add", namespace])
    if _command([*in_namespace, "link", "show", "dev", "eth0"], check=False).returncode != 0:
        if host_side in _links():
            _command(["ip", "link", "del", host_side])  # half-built by an interrupted start
        peer = veth_name(lab, node, "p")
        _command(["ip", "link", "add", host_side, "type", "veth", "peer", "name", peer])
        _command(["ip", "link", "set", peer, "netns", namespace])
        _command([*in_namespace, "link", "set", peer, "name", "eth0"])
        address = f"{node.address}/{settings.prefix_length}"
        _command([*in_namespace, "addr", "add", address, "dev", "eth0"])
        # A new veth has a new MAC: forget the old one or replies go astray until ARP expires.
        _command(["ip", "neigh", "flush", "to", node.address], check=False)
    link = _command(["ip", "-o", "link", "show", "dev", host_side]).stdout
    if f" master {settings.bridge} " not in link:
        _command(["ip", "link", "set", host_side, "master", settings.bridge])
    _command(["ip", "link", "set", host_side, "up"])
    _command([*in_namespace, "link", "set", "lo", "up"])
    _command([*in_namespace, "link", "set", "eth0", "up"])
    if not _command([*in_namespace, "route", "show", "default"]).stdout.strip():
        _command([*in_namespace, "route", "add", "default", "via", settings.gateway])


def _managed(state_dir: Path, node: Node) -> processes.Managed:
    return processes.Managed(
        f"node-{node.name}",
        state_dir / "run" / f"node-{node.name}.pid",
        state_dir / "logs" / f"node-{node.name}.log",
    )


def _current_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def _banner(lab: Lab, address: str, port: int, timeout_s: float) -> bool:
    """True when an SSH server greets on ``address``; False (nothing sent) off the bridge."""
    try:
        lab.require_allowed(address)
    except SandboxDown:
        return False  # the bridge does not carry it (yet): never let it leave by another route
    with socket.create_connection((address, port), timeout=timeout_s) as connection:
        connection.settimeout(timeout_s)
        return connection.recv(64).startswith(b"SSH-")


def start_nodes(
    lab: Lab,
    state_dir: Path,
    progress: Callable[[str], None] = print,
    *,
    isolated: bool | None = None,
) -> None:
    """Start every node's sshd (idempotent); isolated in namespaces when root, else on loopback."""
    isolate = os.geteuid() == 0 if isolated is None else isolated
    if isolate and os.geteuid() != 0:
        raise ConfigError("sandbox nodes: isolated nodes need root (network and mount namespaces)")
    if not Path(SSHD).is_file():
        raise LabkitError(f"sandbox nodes: {SSHD} is missing; apt-get install -y openssh-server")
    settings = _settings(lab)
    for node in lab.nodes:  # refuse a mode switch before touching anything
        record = _read_record(state_dir, node)
        if record is not None and record["isolated"] != isolate and _managed(state_dir, node).pid:
            raise ConfigError(
                f"sandbox node {node.name} is already running "
                f"{'isolated' if record['isolated'] else 'on loopback'}; stop the nodes first"
            )
    for key in _client_keys(lab):
        _keygen(key, f"labkit-{lab.name}")
    if isolate:
        _ensure_bridge(lab)
        firewall.ensure_fence(settings.bridge)  # before any node can send through the bridge
    started: list[tuple[Node, processes.Managed, str, int]] = []
    for index, node in enumerate(lab.nodes):
        directory = _node_dir(state_dir, node)
        directory.mkdir(parents=True, exist_ok=True)
        _keygen(directory / "ssh_host_ed25519_key", f"{node.name}-host")
        managed = _managed(state_dir, node)
        if isolate:
            address, port = node.address, node.ssh_port
        else:
            if node.ssh_user != _current_user():
                raise ConfigError(
                    f"sandbox node {node.name}: ssh_user {node.ssh_user!r} cannot log in to a "
                    f"loopback node run by {_current_user()!r}; use that user or run as root"
                )
            address = _loopback_for(node, index)
            port = node.ssh_port if node.ssh_port >= 1024 else _UNPRIVILEGED_PORT
        if managed.pid is not None:
            progress(f"node {node.name}: already running (pid {managed.pid})")
            started.append((node, managed, address, port))
            continue
        config = _sshd_config(lab, node, state_dir, address, port, isolate)
        if isolate:
            _ensure_netns(lab, node)
            script = _boot_script(lab, node, state_dir, config)
            argv = [
                "ip", "netns", "exec", netns_name(lab, node),
                "unshare", "--uts", "--mount", "--propagation", "private", "--",
                "/bin/sh", str(script),
            ]  # fmt: skip
        else:
            if os.geteuid() == 0:
                Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privsep directory
            argv = [SSHD, "-D", "-e", "-f", str(config)]
        record = {
            "isolated": isolate,
            "address": address,
            "port": port,
            "netns": netns_name(lab, node) if isolate else None,
            "veth": veth_name(lab, node) if isolate else None,
        }
        (directory / "node.json").write_text(json.dumps(record, indent=2) + "\n")
        # A loopback node shares this machine's ports; an isolated one has its namespace's own.
        listens = [] if isolate else [(address, port)]
        managed = processes.start(f"node-{node.name}", argv, state_dir, listens=listens)
        progress(f"node {node.name}: sshd starting on {address}:{port} (pid {managed.pid})")
        started.append((node, managed, address, port))
    _write_known_hosts(lab, state_dir)
    for node, managed, address, port in started:
        processes.poll_until(
            f"node {node.name} (sshd on {address}:{port})",
            lambda address=address, port=port: _banner(lab, address, port, 1.0),  # type: ignore[misc]
            settings.startup_timeout_s,
            managed,
        )
    progress(f"nodes ready: {', '.join(lab.node_names)} ({'isolated' if isolate else 'loopback'})")


def _netns_pids(namespace: str) -> list[int]:
    done = _command(["ip", "netns", "pids", namespace], check=False)
    return [int(pid) for pid in done.stdout.split() if pid.isdigit()]


def _terminate(pids: list[int], timeout_s: float = 10.0) -> None:
    # These pids live in a namespace this module created: every one of them is ours.
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while any(processes.alive(pid) for pid in pids) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    for pid in pids:
        if processes.alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def stop_nodes(lab: Lab, state_dir: Path, *, remove_layers: bool = False) -> None:
    """Stop every node; leaves no process, namespace, veth, bridge or mount behind."""
    settings = _settings(lab)
    root = os.geteuid() == 0
    namespaces = _namespaces() if root else set()
    problems = []
    for node in lab.nodes:
        try:  # one node that will not stop must not leave the others running
            _stop_node(lab, state_dir, node, namespaces, remove_layers=remove_layers)
        except LabkitError as exc:
            problems.append(f"{node.name}: {exc}")
    if root and settings.bridge in _links():
        _command(["ip", "link", "del", settings.bridge])
    if root:
        try:
            firewall.remove_fence(settings.bridge)
        except LabkitError as exc:
            problems.append(str(exc))
    if problems:
        raise LabkitError("sandbox nodes not fully stopped: " + "; ".join(problems))


def _stop_node(
    lab: Lab, state_dir: Path, node: Node, namespaces: set[str], *, remove_layers: bool
) -> None:
    """Stop one node: its processes, then its veth and namespace, then its record."""
    root = os.geteuid() == 0
    namespace = netns_name(lab, node)
    if namespace in namespaces:
        _terminate(_netns_pids(namespace))
    processes.stop(_managed(state_dir, node))
    if root:
        if veth_name(lab, node) in _links():
            _command(["ip", "link", "del", veth_name(lab, node)])
        if namespace in namespaces:
            _command(["ip", "netns", "del", namespace])
    (_node_dir(state_dir, node) / "node.json").unlink(missing_ok=True)
    if remove_layers:
        shutil.rmtree(_node_dir(state_dir, node) / "layers", ignore_errors=True)


def nodes_status(lab: Lab, state_dir: Path) -> list[dict[str, Any]]:
    """One JSON-ready row per node: name, address, port, pid, isolated, healthy, detail."""
    namespaces = _namespaces() if os.geteuid() == 0 else set()
    rows = []
    for node in lab.nodes:
        record = _read_record(state_dir, node)
        pid = _managed(state_dir, node).pid
        address, port = node_endpoint(lab, node, state_dir)
        isolated = bool(record and record["isolated"] and netns_name(lab, node) in namespaces)
        healthy = False
        if pid is not None:
            try:
                healthy = _banner(lab, address, port, 1.0)
            except OSError:
                healthy = False
        if record is None:
            detail = "not started"
        elif pid is None:
            detail = f"sshd exited; log {_managed(state_dir, node).logfile}"
        elif isolated:
            detail = (
                f"network namespace {netns_name(lab, node)} on bridge {_settings(lab).bridge}, "
                f"own hostname, overlay over {' '.join(OVERLAID)}"
            )
        else:
            detail = (
                "NOT isolated: sshd on loopback sharing this machine's network and files; "
                "provisioning runs in plan mode only"
            )
        if record is not None and not healthy and pid is not None:
            detail += f"; sshd not answering on {address}:{port}"
        rows.append(
            {
                "name": node.name,
                "address": address,
                "port": port,
                "pid": pid,
                "isolated": isolated,
                "healthy": healthy,
                "detail": detail,
            }
        )
    return rows
