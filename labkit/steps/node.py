"""Node preparation (roadmap 1.2): hostname, swap, modules, sysctls, packages, time, firewall.

Each step persists its setting (a file under /etc) and sets it now. On the
sandbox a node is a set of namespaces on this machine's kernel: modules and
swap are global there, so those steps say ``cannot`` instead of touching the
host, while the files they persist still land in the node's own filesystem.
"""

from __future__ import annotations

from dataclasses import dataclass

from labkit import facts
from labkit.steps.base import Change, Diff, Step, Target, write_file

__all__ = [
    "K3S_MODULES",
    "K3S_SYSCTLS",
    "MODULES_FILE",
    "SYSCTL_FILE",
    "FirewallPorts",
    "Hostname",
    "KernelModules",
    "Packages",
    "Swap",
    "Sysctls",
    "TimeSync",
    "k3s_ports",
]

K3S_MODULES = ("overlay", "br_netfilter")
K3S_SYSCTLS = {
    "net.bridge.bridge-nf-call-iptables": "1",
    "net.bridge.bridge-nf-call-ip6tables": "1",
    "net.ipv4.ip_forward": "1",
}
MODULES_FILE = "/etc/modules-load.d/k3s.conf"
SYSCTL_FILE = "/etc/sysctl.d/90-k3s.conf"
_HEADER = "# written by labkit (roadmap 1.2): K3s node preparation\n"


def _excerpt(text: str | None) -> str:
    if text is None:
        return "(absent)"
    return ", ".join(facts.settings_lines(text)) or "(empty)"


@dataclass(frozen=True, repr=False)
class Hostname(Step):
    """The running hostname and /etc/hostname both equal the node's name."""

    name = "hostname"

    def diff(self, target: Target) -> Diff:
        """Compare ``hostname`` and /etc/hostname with the node name."""
        want = target.node.name
        running = facts.hostname(target.host)
        saved = facts.read_file(target.host, "/etc/hostname")
        parts = []
        if running == want:
            parts.append(Diff.none(f"hostname is {running}"))
        elif target.shares_host_kernel and facts.shares_namespaces(target.host, ["uts"])["uts"]:
            parts.append(
                Diff.cannot(
                    f"hostname is {running}, not {want}, and this sandbox node shares the "
                    "host's UTS namespace: setting it would rename this machine"
                )
            )
        else:
            parts.append(
                Diff.change(
                    Change(f"hostname {running} -> {want}", running, want, ("hostname", want))
                )
            )
        if saved is not None and saved.strip() == want:
            parts.append(Diff.none(f"/etc/hostname is {want}"))
        else:
            shown = "(absent)" if saved is None else saved.strip()
            parts.append(Diff.change(write_file("/etc/hostname", want + "\n", shown, want)))
        return Diff.merge(*parts)


@dataclass(frozen=True, repr=False)
class Swap(Step):
    """No swap in use now, and no active swap line in /etc/fstab."""

    name = "swap"

    def diff(self, target: Target) -> Diff:
        """Read /proc/swaps and /etc/fstab."""
        active = facts.swaps(target.host)
        text, entries = facts.fstab(target.host)
        parts = []
        if not active:
            parts.append(Diff.none("no active swap"))
        elif target.shares_host_kernel:
            parts.append(
                Diff.cannot(
                    f"swap {', '.join(active)} is the host's: a sandbox node shares its kernel, "
                    "and labkit will not turn off this machine's swap"
                )
            )
        else:
            parts.append(
                Diff.change(Change("swapoff -a", ", ".join(active), "no swap", ("swapoff", "-a")))
            )
        swap_lines = {entry.line_number for entry in entries if entry.is_swap}
        if not swap_lines:
            parts.append(Diff.none("fstab has no active swap entry"))
        else:
            lines = text.splitlines()
            commented = [
                f"# {line}  # disabled by labkit: K3s needs swap off" if n in swap_lines else line
                for n, line in enumerate(lines, start=1)
            ]
            before = ", ".join(lines[n - 1].split()[0] for n in sorted(swap_lines))
            parts.append(
                Diff.change(
                    write_file(
                        "/etc/fstab", "\n".join(commented) + "\n", f"swap: {before}", "commented"
                    )
                )
            )
        return Diff.merge(*parts)


@dataclass(frozen=True, repr=False)
class KernelModules(Step):
    """overlay and br_netfilter loaded now and listed in /etc/modules-load.d/k3s.conf."""

    modules: tuple[str, ...] = K3S_MODULES
    name = "kernel-modules"

    def diff(self, target: Target) -> Diff:
        """Read the loaded modules and the modules-load.d file."""
        loaded = facts.modules_loaded(target.host, self.modules)
        parts = []
        for module, present in loaded.items():
            if present:
                parts.append(Diff.none(f"{module} loaded"))
            elif target.shares_host_kernel:
                parts.append(
                    Diff.cannot(
                        f"{module} is not loaded in the host kernel this sandbox node shares; "
                        "labkit does not load modules into the host"
                    )
                )
            else:
                parts.append(
                    Diff.change(
                        Change(f"load {module}", "not loaded", "loaded", ("modprobe", module))
                    )
                )
        want = _HEADER + "".join(f"{module}\n" for module in self.modules)
        saved = facts.read_file(target.host, MODULES_FILE)
        if saved == want:
            parts.append(Diff.none(f"{MODULES_FILE} lists {', '.join(self.modules)}"))
        else:
            parts.append(
                Diff.change(
                    write_file(MODULES_FILE, want, _excerpt(saved), ", ".join(self.modules))
                )
            )
        return Diff.merge(*parts)


@dataclass(frozen=True, repr=False)
class Sysctls(Step):
    """The K3s sysctls set now and persisted in /etc/sysctl.d/90-k3s.conf."""

    values: tuple[tuple[str, str], ...] = tuple(K3S_SYSCTLS.items())
    name = "sysctl"

    def diff(self, target: Target) -> Diff:
        """Read each key under /proc/sys and the sysctl.d file."""
        parts = []
        for key, value in self.values:
            current = facts.sysctl(target.host, key)
            if current == value:
                parts.append(Diff.none(f"{key} is already {current}"))
            elif current is None and target.shares_host_kernel:
                parts.append(
                    Diff.cannot(
                        f"{key} does not exist on this sandbox node (its module is not "
                        "active in the shared host kernel)"
                    )
                )
            else:
                shown = "(absent: module not loaded yet)" if current is None else current
                parts.append(
                    Diff.change(
                        Change(
                            f"{key}: {shown} -> {value}",
                            shown,
                            value,
                            ("sysctl", "-w", f"{key}={value}"),
                        )
                    )
                )
        want = _HEADER + "".join(f"{key} = {value}\n" for key, value in self.values)
        saved = facts.read_file(target.host, SYSCTL_FILE)
        if saved == want:
            parts.append(Diff.none(f"{SYSCTL_FILE} persists {len(self.values)} keys"))
        else:
            parts.append(
                Diff.change(
                    write_file(
                        SYSCTL_FILE,
                        want,
                        _excerpt(saved),
                        ", ".join(f"{k}={v}" for k, v in self.values),
                    )
                )
            )
        return Diff.merge(*parts)


@dataclass(frozen=True, repr=False)
class Packages(Step):
    """The lab's required packages are installed (apt-get install, only those missing)."""

    name = "packages"

    def diff(self, target: Target) -> Diff:
        """Ask dpkg which of ``k3s.packages`` are installed."""
        wanted = target.lab.k3s.packages
        if not wanted:
            return Diff.none("no packages required")
        versions = facts.packages(target.host, wanted)
        missing = [name for name, version in versions.items() if version is None]
        if not missing:
            return Diff.none(
                "installed: " + ", ".join(f"{name} {versions[name]}" for name in wanted)
            )
        if not target.lab.internet:
            return Diff.cannot(
                f"missing {', '.join(missing)} and lab {target.lab.name} has no internet "
                "to install from; add them to the node image"
            )
        argv = (
            "env",
            "DEBIAN_FRONTEND=noninteractive",
            "apt-get",
            "install",
            "-y",
            "--no-install-recommends",
            *missing,
        )
        return Diff.change(
            Change(
                f"install {', '.join(missing)}",
                "missing: " + ", ".join(missing),
                "installed",
                argv,
                timeout_s=600.0,
            )
        )


@dataclass(frozen=True, repr=False)
class TimeSync(Step):
    """The clock is kept synchronised by systemd-timesyncd (NTP on) or chrony."""

    name = "time-sync"

    def diff(self, target: Target) -> Diff:
        """Ask timedatectl, then chrony."""
        state = facts.time_sync(target.host)
        if state.service == "":
            why = (
                "a sandbox node shares this machine's clock and has no time service of its own"
                if target.shares_host_kernel
                else "install systemd-timesyncd or chrony"
            )
            return Diff.cannot(f"no time service answers ({state.detail}); {why}")
        if state.enabled:
            return Diff.none(f"{state.service}: NTP on (synchronised: {state.synchronized})")
        if target.shares_host_kernel:
            # The clock and the time service that answered are this machine's own.
            return Diff.cannot(
                f"{state.service}: NTP off, but a sandbox node shares this machine's clock: "
                "labkit does not change this machine's time settings"
            )
        return Diff.change(
            Change("enable NTP", "NTP off", "NTP on", ("timedatectl", "set-ntp", "true"))
        )


def k3s_ports(wireguard: bool) -> list[str]:
    """The inbound ports a K3s HA server needs, as ufw specs."""
    ports = ["6443/tcp", "2379:2380/tcp", "8472/udp", "10250/tcp"]
    if wireguard:
        ports += ["51820/udp", "51821/udp"]
    return ports


@dataclass(frozen=True, repr=False)
class FirewallPorts(Step):
    """When ufw is active, it allows K3s's ports; no active firewall needs nothing."""

    name = "firewall"

    def diff(self, target: Target) -> Diff:
        """Read ``ufw status``."""
        state = facts.ufw(target.host)
        if not state.active:
            return Diff.none("ufw is not installed" if not state.installed else "ufw is inactive")
        wanted = k3s_ports(target.lab.k3s.wireguard)
        missing = [port for port in wanted if port not in state.allowed]
        if not missing:
            return Diff.none("ufw allows " + ", ".join(wanted))
        return Diff.change(
            *(
                Change(f"ufw allow {port}", "not allowed", "allowed", ("ufw", "allow", port))
                for port in missing
            )
        )
