"""Phase 1 checks over SSH: 1.1 the VMs, 1.2 node preparation, 1.3.1 the K3s service.

Each check reads facts from every node and judges them per node. What a
sandbox node cannot show (modules and swap belong to the host kernel, no time
service of its own, no internet) is a ``skip`` with the reason, never a pass.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from contextlib import ExitStack

from labkit import facts
from labkit.checks.base import Context, Outcome, Status, implements
from labkit.errors import LabkitError
from labkit.params import Node
from labkit.steps.k3s import INSTALL_SCRIPT
from labkit.steps.node import K3S_MODULES, K3S_SYSCTLS, MODULES_FILE, SYSCTL_FILE, k3s_ports

__all__: list[str] = []

Host = facts.RemoteHost
_K3S_PORTS = {6443: "tcp", 2379: "tcp", 2380: "tcp", 8472: "udp", 10250: "tcp"}


def _hosts(context: Context) -> Mapping[str, Host]:
    def open_all() -> tuple[ExitStack, Mapping[str, Host]]:
        from labkit.hosts import open_hosts  # noqa: PLC0415 - paramiko only when checks run

        stack = ExitStack()
        return stack, stack.enter_context(open_hosts(context.lab))

    made: tuple[ExitStack, Mapping[str, Host]] = context.resource(
        "phase1-ssh", open_all, lambda made: made[0].close()
    )
    return made[1]


def _each(context: Context, judge: Callable[[Node, Host], Outcome]) -> list[Outcome]:
    """``judge`` every node; a node that cannot be reached or read is an error naming it."""
    hosts = _hosts(context)
    outcomes = []
    for node in context.lab.nodes:
        try:
            outcomes.append(judge(node, hosts[node.name]))
        except LabkitError as exc:
            outcomes.append(Outcome(Status.ERROR, observed=str(exc), subject=node.name))
    return outcomes


@implements("1.1.1")
def booted(context: Context) -> list[Outcome]:
    """Every node finished booting: systemd reports ``running`` (``degraded`` names failures)."""

    def judge(node: Node, host: Host) -> Outcome:
        seconds = facts.uptime_s(host)
        if context.lab.kind == "sandbox":
            return Outcome.skip(
                f"a sandbox node does not boot: it shares this machine's kernel (up "
                f"{seconds / 3600:.1f} h)",
                node.name,
            )
        state = host.run(["systemctl", "is-system-running"], check=False)
        observed = state.stdout.strip() or state.stderr.strip() or f"exit {state.exit_code}"
        return Outcome.judge(
            observed == "running",
            "systemctl is-system-running: running",
            f"{observed}, up {seconds / 3600:.1f} h",
            "systemctl is-system-running; cat /proc/uptime",
            node.name,
        )

    return _each(context, judge)


@implements("1.1.2")
def ssh_reachable(context: Context) -> list[Outcome]:
    """An SSH session runs a command on every node (host key verified)."""
    hosts = _hosts(context)
    outcomes = []
    for node in context.lab.nodes:
        where = f"{node.ssh_user}@{node.address}:{node.ssh_port}"
        try:
            result = hosts[node.name].run(["true"])
        except LabkitError as exc:
            outcomes.append(Outcome.judge(False, f"ssh {where} works", str(exc), "", node.name))
            continue
        outcomes.append(
            Outcome.judge(True, f"ssh {where} works", f"exit {result.exit_code}", "true", node.name)
        )
    return outcomes


@implements("1.1.3")
def static_address(context: Context) -> list[Outcome]:
    """The params address is configured on the node and not a DHCP lease ('dynamic')."""

    def judge(node: Node, host: Host) -> Outcome:
        lines = host.run(["ip", "-o", "addr", "show"]).stdout.splitlines()
        mine = [line for line in lines if f" {node.address}/" in line]
        dynamic = any(" dynamic" in line for line in mine)
        observed = "absent" if not mine else ("dynamic (DHCP)" if dynamic else "static")
        evidence = "ip -o addr show\n" + "\n".join(" ".join(line.split()[:6]) for line in mine)
        return Outcome.judge(
            bool(mine) and not dynamic, f"{node.address} static", observed, evidence, node.name
        )

    return _each(context, judge)


@implements("1.1.4")
def hostname_set(context: Context) -> list[Outcome]:
    """``hostname`` shows the node's name."""

    def judge(node: Node, host: Host) -> Outcome:
        name = facts.hostname(host)
        return Outcome.judge(name == node.name, node.name, name, "hostname", node.name)

    return _each(context, judge)


@implements("1.1.5")
def nodes_ping(context: Context) -> list[Outcome]:
    """Every node pings every other node by address."""

    def judge(node: Node, host: Host) -> Outcome:
        others = [other for other in context.lab.nodes if other.name != node.name]
        failed, lines = [], []
        for other in others:
            argv = ["ping", "-c", "1", "-W", "2", other.address]
            result = host.run(argv, check=False, timeout_s=10)
            lines.append(f"{facts.quote(argv)} -> exit {result.exit_code}")
            if result.exit_code != 0:
                failed.append(other.name)
        observed = f"unreachable: {', '.join(failed)}" if failed else f"{len(others)} reachable"
        return Outcome.judge(
            not failed, f"reaches {len(others)} nodes", observed, "\n".join(lines), node.name
        )

    return _each(context, judge)


def _outside(context: Context, item: str, argv: list[str]) -> list[Outcome]:
    if not context.lab.internet:
        return [Outcome.skip(f"lab {context.lab.name} has no internet (params internet: false)")]

    def judge(node: Node, host: Host) -> Outcome:
        result = host.run(argv, check=False, timeout_s=15)
        tail = (result.stdout + result.stderr).strip().splitlines()[-1:]
        return Outcome.judge(
            result.exit_code == 0,
            item,
            f"exit {result.exit_code}",
            f"{facts.quote(argv)}\n{''.join(tail)}",
            node.name,
        )

    return _each(context, judge)


@implements("1.1.6")
def internet(context: Context) -> list[Outcome]:
    """Every node reaches the internet (ping 8.8.8.8)."""
    return _outside(context, "ping 8.8.8.8 answers", ["ping", "-c", "1", "-W", "3", "8.8.8.8"])


@implements("1.1.7")
def dns(context: Context) -> list[Outcome]:
    """Every node resolves a public name."""
    return _outside(context, "google.com resolves", ["getent", "hosts", "google.com"])


@implements("1.2.1")
def packages_current(context: Context) -> list[Outcome]:
    """Nothing is left to upgrade, as of the node's package lists (no apt update is run)."""

    def judge(node: Node, host: Host) -> Outcome:
        pending = facts.apt_upgradable(host)
        shown = ", ".join(pending[:10]) + (" ..." if len(pending) > 10 else "")
        if pending and context.lab.kind == "sandbox" and not context.lab.internet:
            # A sandbox node is a copy-on-write view of this machine with no route to a mirror:
            # its pending upgrades are this machine's, and it could not fetch them anyway.
            return Outcome.skip(
                f"{len(pending)} upgradable, inherited from this machine; the sandbox has no "
                f"route to a package mirror: {shown}",
                node.name,
            )
        return Outcome.judge(
            not pending,
            "0 upgradable (per the node's apt lists)",
            f"{len(pending)} upgradable" + (f": {shown}" if pending else ""),
            "apt-get --simulate upgrade",
            node.name,
        )

    return _each(context, judge)


@implements("1.2.2")
def swap_off(context: Context) -> list[Outcome]:
    """No swap in use and no active swap entry in /etc/fstab."""

    def judge(node: Node, host: Host) -> Outcome:
        active = facts.swaps(host)
        _, entries = facts.fstab(host)
        in_fstab = [entry.source for entry in entries if entry.is_swap]
        observed = f"active: {active or 'none'}; fstab: {in_fstab or 'none'}"
        if active and context.lab.kind == "sandbox" and not in_fstab:
            return Outcome.skip(
                f"{observed}: the host's swap (a sandbox node shares its kernel)", node.name
            )
        return Outcome.judge(
            not active and not in_fstab,
            "no swap now or in fstab",
            observed,
            "cat /proc/swaps; cat /etc/fstab",
            node.name,
        )

    return _each(context, judge)


def _saved_sysctls(text: str) -> dict[str, str]:
    """``key = value`` settings of a sysctl.d file (the last one wins, as sysctl applies them)."""
    saved = {}
    for line in facts.settings_lines(text):
        key, equals, value = line.partition("=")
        if equals:
            saved[key.strip().lstrip("-")] = value.strip()
    return saved


@implements("1.2.3")
def modules_loaded(context: Context) -> list[Outcome]:
    """overlay and br_netfilter are active and persisted in modules-load.d."""

    def judge(node: Node, host: Host) -> Outcome:
        loaded = facts.modules_loaded(host, K3S_MODULES)
        modules_file = facts.read_file(host, MODULES_FILE) or ""
        saved = {line.split()[0] for line in facts.settings_lines(modules_file)}
        persisted = [m for m in K3S_MODULES if m in saved]
        missing = [m for m, ok in loaded.items() if not ok]
        wrong = {k: facts.sysctl(host, k) for k, v in K3S_SYSCTLS.items()}
        wrong = {k: v for k, v in wrong.items() if v != K3S_SYSCTLS[k]}
        saved_sysctls = _saved_sysctls(facts.read_file(host, SYSCTL_FILE) or "")
        unsaved = [k for k, v in K3S_SYSCTLS.items() if saved_sysctls.get(k) != v]
        observed = (
            f"loaded: {[m for m, ok in loaded.items() if ok]}; persisted: {persisted}; "
            f"sysctls off: {wrong or 'none'}; not persisted: {unsaved or 'none'}"
        )
        evidence = (
            "/proc/modules, /proc/filesystems, /proc/sys/net/bridge; "
            f"cat {MODULES_FILE}; /proc/sys/...; cat {SYSCTL_FILE}"
        )
        # A sandbox node shares the host's kernel, so its modules (and the bridge sysctls
        # they bring) are the host's; what the node owns (its files, its ip_forward) is
        # still judged.
        host_owned = context.lab.kind == "sandbox" and bool(missing)
        owned_wrong = [k for k in wrong if not (host_owned and k.startswith("net.bridge."))]
        node_ok = persisted == list(K3S_MODULES) and not owned_wrong and not unsaved
        if host_owned and node_ok:
            return Outcome.skip(
                f"{observed}: {missing} not active in the host kernel this sandbox node shares",
                node.name,
            )
        return Outcome.judge(
            not missing and node_ok,
            f"{', '.join(K3S_MODULES)} loaded, K3s sysctls = 1; both persisted",
            observed,
            evidence,
            node.name,
        )

    return _each(context, judge)


_FILTERING = re.compile(r"\b(drop|reject)\b", re.IGNORECASE)


def _packet_filter_rules(host: Host) -> tuple[str, list[str]]:
    """The first rule lines that drop or reject, from nftables and iptables ("" when none),
    and the tools that could not be run (``nft exit 127``): rules nobody read are not "none".
    """
    found: list[str] = []
    unread: list[str] = []
    for argv in (["nft", "list", "ruleset"], ["iptables-save"]):
        result = host.run(argv, sudo=True, check=False)
        if result.exit_code != 0:
            unread.append(f"{argv[0]} exit {result.exit_code}")
            continue  # that tool is not installed or not usable here
        found += [
            line.strip()
            for line in result.stdout.splitlines()
            if _FILTERING.search(line) and not line.lstrip().startswith("#")
        ]
    return "; ".join(found[:3]), unread


@implements("1.2.4")
def firewall(context: Context) -> list[Outcome]:
    """With ufw active, K3s's ports are allowed; with no active firewall nothing blocks them."""
    wanted = k3s_ports(context.lab.k3s.wireguard)

    def judge(node: Node, host: Host) -> Outcome:
        state = facts.ufw(host)
        if not state.active:
            why = "ufw not installed" if not state.installed else "ufw inactive"
            rules, unread = _packet_filter_rules(host)
            if len(unread) == 2:
                return Outcome.skip(
                    f"{why}, and no packet-filter rules could be read ({', '.join(unread)}): "
                    "cannot tell whether anything filters K3s's ports",
                    node.name,
                )
            if rules:
                # Some other firewall filters packets; labkit reads only ufw's rules.
                return Outcome.skip(
                    f"{why}, but packet-filter rules that drop or reject are present; labkit "
                    f"reads only ufw: check K3s's ports by hand ({rules})",
                    node.name,
                )
            return Outcome.judge(
                True,
                "K3s ports open",
                f"{why}, no dropping or rejecting nftables/iptables rules: nothing filters"
                + (f" (not read: {unread[0]})" if unread else ""),
                "ufw status; nft list ruleset; iptables-save",
                node.name,
            )
        missing = [port for port in wanted if port not in state.allowed]
        return Outcome.judge(
            not missing,
            f"ufw allows {', '.join(wanted)}",
            f"missing: {missing}" if missing else "all allowed",
            state.raw,
            node.name,
        )

    outcomes = _each(context, judge)
    return [
        o if o.subject else Outcome(o.status, o.expected, o.observed, o.evidence, node.name)
        for o, node in zip(outcomes, context.lab.nodes, strict=True)
    ]


@implements("1.2.5")
def time_synchronised(context: Context) -> list[Outcome]:
    """timedatectl (or chrony) says the clock is synchronised."""

    def judge(node: Node, host: Host) -> Outcome:
        state = facts.time_sync(host)
        if not state.service and context.lab.kind == "sandbox":
            return Outcome.skip(
                f"no time service on the node ({state.detail}); a sandbox node shares this "
                "machine's clock",
                node.name,
            )
        return Outcome.judge(
            state.synchronized,
            "clock synchronised",
            f"{state.service or 'no time service'}: synchronised={state.synchronized}",
            state.detail,
            node.name,
        )

    return _each(context, judge)


@implements("1.2.6")
def ports_free(context: Context) -> list[Outcome]:
    """Nothing but K3s listens on K3s's ports."""

    def judge(node: Node, host: Host) -> Outcome:
        found = facts.listeners(host)
        clashes = [
            f"{item.port}/{item.protocol} by {item.process or 'unknown'}"
            for item in found
            if _K3S_PORTS.get(item.port) == item.protocol
            and item.process not in {"k3s", "k3s-server"}
        ]
        return Outcome.judge(
            not clashes,
            "no other listener on 6443, 2379-2380, 8472, 10250",
            f"conflicts: {clashes}" if clashes else f"{len(found)} listeners, none conflicting",
            "ss -H -l -n -t -u -p",
            node.name,
        )

    return _each(context, judge)


@implements("1.3.1")
def k3s_running(context: Context) -> list[Outcome]:
    """The k3s (or k3s-agent) service is active on every node."""

    def judge(node: Node, host: Host) -> Outcome:
        version = facts.k3s_version(host)
        lab = context.lab
        unit = facts.k3s_unit(node.role)
        installable = lab.internet or lab.k3s.airgap_dir is not None
        if version is None and lab.kind == "sandbox" and not installable:
            # Elsewhere a missing K3s is the failure this item is about, whatever the reason.
            return Outcome.skip(
                "K3s is not installed and cannot be here: the sandbox has no internet and no "
                "k3s.airgap_dir",
                node.name,
            )
        state, _ = facts.k3s_service(host, unit)
        return Outcome.judge(
            state == "active",
            f"{unit} active",
            f"{unit} {state}; k3s {version or 'not installed'}",
            f"systemctl show {unit}; {INSTALL_SCRIPT}",
            node.name,
        )

    return _each(context, judge)


@implements("1.5.4")
def argocd_cli(context: Context) -> Outcome:
    """The argocd CLI on this workstation answers `argocd version --client`."""
    if context.lab.kind == "sandbox":
        return Outcome.skip("the sandbox runs no ArgoCD: its CLI would have nothing to talk to")
    program = shutil.which("argocd")
    if program is None:
        return Outcome.judge(False, "argocd on PATH", "not found on PATH", "shutil.which('argocd')")
    try:
        completed = subprocess.run(
            [program, "version", "--client", "--short"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Outcome.judge(False, "argocd version --client answers", str(exc), program)
    return Outcome.judge(
        completed.returncode == 0,
        "argocd version --client exits 0",
        (completed.stdout or completed.stderr).strip()[:200] or f"exit {completed.returncode}",
        f"{program} version --client --short",
    )
