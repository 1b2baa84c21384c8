"""Node preparation steps, table-driven: node state in -> diff kind and commands out."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fakehost import FakeHost, Reply, ubuntu_node

from labkit.params import Lab, load_lab
from labkit.steps import (
    DiffKind,
    FirewallPorts,
    Hostname,
    KernelModules,
    Packages,
    Step,
    Swap,
    Sysctls,
    Target,
    TimeSync,
)

LOCAL = Path(__file__).resolve().parents[2] / "params" / "local.yaml"


def lab_of(kind: str = "homelab", internet: bool = True) -> Lab:
    """The local lab, viewed as ``kind`` (homelab: a real VM with its own kernel)."""
    return load_lab(LOCAL).model_copy(update={"kind": kind, "internet": internet})


def target(host: FakeHost, lab: Lab) -> Target:
    return Target(lab.node(host.name), host, lab)


def commands(step: Step, host: FakeHost, lab: Lab) -> tuple[DiffKind, list[tuple[str, ...]]]:
    verdict = step.diff(target(host, lab))
    return verdict.kind, [change.argv for change in verdict.changes]


def fresh() -> FakeHost:
    return ubuntu_node(fresh=True)


def prepared() -> FakeHost:
    return ubuntu_node()


INSTALL = ("env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y")
CASES: list[tuple[str, Step, Callable[[], FakeHost], str, DiffKind, list[tuple[str, ...]]]] = [
    ("hostname already set", Hostname(), prepared, "homelab", DiffKind.NONE, []),
    (
        "hostname wrong now and in /etc/hostname",
        Hostname(),
        fresh,
        "homelab",
        DiffKind.CHANGE,
        [
            ("hostname", "k3s-node-01"),
            ("install", "-D", "-m", "0644", "/dev/stdin", "/etc/hostname"),
        ],
    ),
    ("swap already off", Swap(), prepared, "homelab", DiffKind.NONE, []),
    (
        "swap on and in fstab",
        Swap(),
        fresh,
        "homelab",
        DiffKind.CHANGE,
        [("swapoff", "-a"), ("install", "-D", "-m", "0644", "/dev/stdin", "/etc/fstab")],
    ),
    (
        "sandbox: host swap is left alone, fstab still fixed",
        Swap(),
        fresh,
        "sandbox",
        DiffKind.CHANGE,
        [("install", "-D", "-m", "0644", "/dev/stdin", "/etc/fstab")],
    ),
    ("modules loaded and persisted", KernelModules(), prepared, "homelab", DiffKind.NONE, []),
    (
        "modules missing",
        KernelModules(),
        fresh,
        "homelab",
        DiffKind.CHANGE,
        [
            ("modprobe", "overlay"),
            ("modprobe", "br_netfilter"),
            ("install", "-D", "-m", "0644", "/dev/stdin", "/etc/modules-load.d/k3s.conf"),
        ],
    ),
    (
        "sandbox: never modprobe into the host kernel",
        KernelModules(),
        fresh,
        "sandbox",
        DiffKind.CHANGE,
        [("install", "-D", "-m", "0644", "/dev/stdin", "/etc/modules-load.d/k3s.conf")],
    ),
    ("sysctls set and persisted", Sysctls(), prepared, "homelab", DiffKind.NONE, []),
    (
        "sysctls unset (bridge keys appear once br_netfilter loads)",
        Sysctls(),
        fresh,
        "homelab",
        DiffKind.CHANGE,
        [
            ("sysctl", "-w", "net.bridge.bridge-nf-call-iptables=1"),
            ("sysctl", "-w", "net.bridge.bridge-nf-call-ip6tables=1"),
            ("sysctl", "-w", "net.ipv4.ip_forward=1"),
            ("install", "-D", "-m", "0644", "/dev/stdin", "/etc/sysctl.d/90-k3s.conf"),
        ],
    ),
    (
        "sandbox: bridge keys absent from the shared kernel are not pretended",
        Sysctls(),
        fresh,
        "sandbox",
        DiffKind.CHANGE,
        [
            ("sysctl", "-w", "net.ipv4.ip_forward=1"),
            ("install", "-D", "-m", "0644", "/dev/stdin", "/etc/sysctl.d/90-k3s.conf"),
        ],
    ),
    ("packages present", Packages(), prepared, "homelab", DiffKind.NONE, []),
    (
        "packages missing: apt-get only those",
        Packages(),
        fresh,
        "homelab",
        DiffKind.CHANGE,
        [(*INSTALL, "--no-install-recommends", "curl", "ca-certificates")],
    ),
    ("NTP on", TimeSync(), prepared, "homelab", DiffKind.NONE, []),
    (
        "NTP off",
        TimeSync(),
        fresh,
        "homelab",
        DiffKind.CHANGE,
        [("timedatectl", "set-ntp", "true")],
    ),
    (
        "sandbox: NTP off is this machine's setting, left alone",
        TimeSync(),
        fresh,
        "sandbox",
        DiffKind.CANNOT,
        [],
    ),
    ("ufw inactive: nothing to open", FirewallPorts(), prepared, "homelab", DiffKind.NONE, []),
    (
        "ufw active without K3s rules",
        FirewallPorts(),
        fresh,
        "homelab",
        DiffKind.CHANGE,
        [
            ("ufw", "allow", "6443/tcp"),
            ("ufw", "allow", "2379:2380/tcp"),
            ("ufw", "allow", "8472/udp"),
            ("ufw", "allow", "10250/tcp"),
        ],
    ),
]


@pytest.mark.parametrize(
    ("step", "state", "kind", "expected_kind", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_step_diff(
    step: Step,
    state: Callable[[], FakeHost],
    kind: str,
    expected_kind: DiffKind,
    expected: list[tuple[str, ...]],
) -> None:
    host = state()
    assert commands(step, host, lab_of(kind)) == (expected_kind, expected)
    assert host.writes() == []  # a diff never writes


def test_diff_reads_only() -> None:
    host = fresh()
    lab = lab_of()
    steps = (Hostname(), Swap(), KernelModules(), Sysctls(), Packages(), TimeSync())
    for step in (*steps, FirewallPorts()):
        step.diff(target(host, lab))
    changing = {"hostname", "swapoff", "modprobe", "sysctl", "install", "timedatectl", "ufw"}
    ran = [
        c for c in host.calls if c[0] in changing and len(c) > 1 and c[1] not in {"show", "status"}
    ]
    assert ran == []


def test_sandbox_modules_missing_says_why() -> None:
    host = fresh()
    host.files["/etc/modules-load.d/k3s.conf"] = (
        "# written by labkit (roadmap 1.2): K3s node preparation\noverlay\nbr_netfilter\n"
    )
    verdict = KernelModules().diff(target(host, lab_of("sandbox")))
    assert verdict.kind is DiffKind.CANNOT
    assert "does not load modules into the host" in verdict.reason


def test_sandbox_hostname_in_shared_uts_namespace_is_refused() -> None:
    host = fresh()
    verdict = Hostname().diff(target(host, lab_of("sandbox")))
    assert [c.argv[0] for c in verdict.changes] == ["install"]  # /etc/hostname only
    host.files["/etc/hostname"] = "k3s-node-01\n"
    verdict = Hostname().diff(target(host, lab_of("sandbox")))
    assert verdict.kind is DiffKind.CANNOT
    assert "rename this machine" in verdict.reason


def test_sandbox_hostname_in_own_uts_namespace_is_set() -> None:
    host = fresh()
    host.answers[("readlink", "/proc/self/ns/uts")] = Reply(0, "uts:[4026532999]\n")
    verdict = Hostname().diff(target(host, lab_of("sandbox")))
    assert ("hostname", "k3s-node-01") in [c.argv for c in verdict.changes]


def test_packages_without_internet_cannot() -> None:
    verdict = Packages().diff(target(fresh(), lab_of(internet=False)))
    assert verdict.kind is DiffKind.CANNOT
    assert "curl" in verdict.reason and "no internet" in verdict.reason


def test_no_time_service_cannot() -> None:
    host = fresh()
    host.answers[("timedatectl", "show", "--property=NTP", "--property=NTPSynchronized")] = Reply(
        1, "", "System has not been booted with systemd as init system (PID 1)."
    )
    verdict = TimeSync().diff(target(host, lab_of("sandbox")))
    assert verdict.kind is DiffKind.CANNOT
    assert "shares this machine's clock" in verdict.reason


def test_fstab_swap_line_is_commented_not_deleted() -> None:
    host = fresh()
    change = Swap().diff(target(host, lab_of())).changes[-1]
    assert isinstance(change.stdin, str)
    assert "# /swap.img none swap sw 0 0" in change.stdin
    assert "UUID=abc / ext4 defaults 0 1" in change.stdin


def test_wireguard_opens_its_ports() -> None:
    lab = lab_of()
    lab = lab.model_copy(update={"k3s": lab.k3s.model_copy(update={"wireguard": True})})
    host = fresh()
    argvs = [c.argv for c in FirewallPorts().diff(target(host, lab)).changes]
    assert ("ufw", "allow", "51820/udp") in argvs and ("ufw", "allow", "51821/udp") in argvs


def test_a_changing_step_keeps_what_it_cannot_do_here() -> None:
    # On the sandbox the host's swap is not the node's to turn off, while fstab is: the plan
    # shows the fstab change and the part it will not do, side by side.
    lab = lab_of("sandbox")
    host = ubuntu_node(fresh=True)
    verdict = Swap().diff(target(host, lab))
    assert verdict.kind is DiffKind.CHANGE
    assert [change.summary for change in verdict.changes] == ["write /etc/fstab"]
    assert verdict.cannot_parts and "swap" in verdict.cannot_parts[0]
