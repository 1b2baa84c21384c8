"""Phase 1 checks over in-memory nodes: state in -> pass, fail or skip (with why) out."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "steps"))  # the in-memory test Host
from fakehost import FakeHost, Reply, ubuntu_node

from labkit.checks import Context, Status, run_checks
from labkit.params import Lab, load_lab

LOCAL = Path(__file__).resolve().parents[2] / "params" / "local.yaml"
ADDRESSES = {"k3s-node-01": "10.77.0.11", "k3s-node-02": "10.77.0.12", "k3s-node-03": "10.77.0.13"}


def run(lab: Lab, hosts: dict[str, FakeHost], ids: list[str]) -> dict[tuple[str, str], Status]:
    with Context(lab) as context:
        context.resource("phase1-ssh", lambda: (ExitStack(), hosts))
        results = run_checks(lab, ids=ids, context=context)
    return {(r.id, r.subject): r.status for r in results}


def nodes(fresh: bool = False) -> dict[str, FakeHost]:
    return {name: ubuntu_node(name, address, fresh=fresh) for name, address in ADDRESSES.items()}


def homelab() -> Lab:
    return load_lab(LOCAL).model_copy(update={"kind": "homelab", "internet": True})


def test_prepared_nodes_pass_node_preparation() -> None:
    hosts = nodes()
    status = run(homelab(), hosts, ["1.1.1", "1.1.4", "1.2.2", "1.2.3", "1.2.4", "1.2.5", "1.2.6"])
    assert set(status.values()) == {Status.PASS}, status


def test_a_degraded_boot_fails_1_1_1() -> None:
    hosts = nodes()
    hosts["k3s-node-02"].answers[("systemctl", "is-system-running")] = Reply(1, "degraded\n")
    status = run(homelab(), hosts, ["1.1.1"])
    assert status[("1.1.1", "k3s-node-02")] == Status.FAIL
    assert status[("1.1.1", "k3s-node-01")] == Status.PASS


def test_another_firewall_is_not_judged_by_ufw_rules() -> None:
    hosts = nodes()
    rules = (
        "table inet filter {\n chain input {\n  type filter hook input priority 0; policy drop;\n"
    )
    hosts["k3s-node-03"].answers[("nft", "list", "ruleset")] = Reply(0, rules)
    status = run(homelab(), hosts, ["1.2.4"])
    assert status[("1.2.4", "k3s-node-03")] == Status.SKIP
    assert status[("1.2.4", "k3s-node-01")] == Status.PASS


def test_fresh_nodes_fail_with_what_was_seen() -> None:
    status = run(homelab(), nodes(fresh=True), ["1.1.4", "1.2.2", "1.2.3", "1.2.4", "1.2.5"])
    assert set(status.values()) == {Status.FAIL}, status


def test_sandbox_skips_what_it_cannot_show() -> None:
    lab = load_lab(LOCAL)
    hosts = nodes(fresh=True)
    for host in hosts.values():
        host.answers[("timedatectl", "show", "--property=NTP", "--property=NTPSynchronized")] = (
            Reply(1, "", "no systemd")
        )
        host.answers[("chronyc", "-n", "tracking")] = Reply(127, "", "chronyc: not found")
    status = run(lab, hosts, ["1.1.6", "1.1.7", "1.2.5", "1.3.1", "1.3.3"])
    assert set(status.values()) == {Status.SKIP}, status


def test_sandbox_skips_the_host_kernels_modules_but_judges_what_the_node_owns() -> None:
    lab = load_lab(LOCAL)
    hosts = nodes()
    for host in hosts.values():  # the host kernel has no br_netfilter (nor its sysctls)
        host.files["/proc/modules"] = ""
        for key in ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables"):
            del host.files[f"/proc/sys/net/bridge/{key}"]
        host.directories.discard("/proc/sys/net/bridge")
    hosts["k3s-node-02"].files["/proc/sys/net/ipv4/ip_forward"] = "0\n"  # the node's own
    status = run(lab, hosts, ["1.2.3"])
    assert status[("1.2.3", "k3s-node-01")] is Status.SKIP
    assert status[("1.2.3", "k3s-node-02")] is Status.FAIL


def test_commented_out_settings_are_not_persisted() -> None:
    from labkit.steps.node import _HEADER, MODULES_FILE, SYSCTL_FILE

    hosts = nodes()
    hosts["k3s-node-02"].files[MODULES_FILE] = _HEADER + "# overlay br_netfilter\n"
    sysctls = hosts["k3s-node-03"].files[SYSCTL_FILE]
    hosts["k3s-node-03"].files[SYSCTL_FILE] = sysctls.replace(
        "net.ipv4.ip_forward = 1", "#net.ipv4.ip_forward = 1\nnet.ipv4.ip_forward=0"
    )
    assert "#net.ipv4.ip_forward" in hosts["k3s-node-03"].files[SYSCTL_FILE]
    status = run(homelab(), hosts, ["1.2.3"])
    assert status[("1.2.3", "k3s-node-01")] is Status.PASS
    assert status[("1.2.3", "k3s-node-02")] is Status.FAIL
    assert status[("1.2.3", "k3s-node-03")] is Status.FAIL


def test_firewall_rules_nobody_could_read_are_not_none() -> None:
    hosts = nodes()
    hosts["k3s-node-02"].answers[("nft", "list", "ruleset")] = Reply(127, "", "nft: not found")
    with Context(homelab()) as context:
        context.resource("phase1-ssh", lambda: (ExitStack(), hosts))
        results = run_checks(homelab(), ids=["1.2.4"], context=context)
    by_node = {r.subject: r for r in results}
    assert by_node["k3s-node-02"].status is Status.SKIP
    assert "nft exit 127" in by_node["k3s-node-02"].observed
    assert by_node["k3s-node-01"].status is Status.PASS
    assert "iptables-save exit 127" in by_node["k3s-node-01"].observed  # read by nft alone


def _k3s_running(host: FakeHost, unit: str) -> None:
    host.answers[("/usr/local/bin/k3s", "--version")] = Reply(0, "k3s version v1.31.12+k3s1 (x)\n")
    for name in ("k3s", "k3s-agent"):
        state = "active" if name == unit else "inactive"
        host.answers[
            ("systemctl", "show", name, "--property=ActiveState", "--property=MainPID")
        ] = Reply(0, f"ActiveState={state}\nMainPID={42 if name == unit else 0}\n")


def test_an_agent_is_judged_on_the_k3s_agent_unit() -> None:
    lab = homelab()
    nodes_ = [
        n.model_copy(update={"role": "agent"}) if n.name == "k3s-node-03" else n for n in lab.nodes
    ]
    lab = lab.model_copy(update={"nodes": nodes_})
    hosts = nodes()
    _k3s_running(hosts["k3s-node-01"], "k3s")
    _k3s_running(hosts["k3s-node-02"], "k3s")
    _k3s_running(hosts["k3s-node-03"], "k3s")  # the server unit on an agent: wrong
    status = run(lab, hosts, ["1.3.1"])
    assert status[("1.3.1", "k3s-node-01")] is Status.PASS
    assert status[("1.3.1", "k3s-node-03")] is Status.FAIL
    _k3s_running(hosts["k3s-node-03"], "k3s-agent")
    assert run(lab, hosts, ["1.3.1"])[("1.3.1", "k3s-node-03")] is Status.PASS


def test_k3s_missing_on_the_homelab_fails_even_when_it_cannot_be_installed() -> None:
    lab = homelab().model_copy(update={"internet": False})
    status = run(lab, nodes(), ["1.3.1"])
    assert set(status.values()) == {Status.FAIL}, status


def test_conflicting_listener_fails_1_2_6() -> None:
    hosts = nodes()
    hosts["k3s-node-02"].answers[("ss", "-H", "-l", "-n", "-t", "-u", "-p")] = Reply(
        0, 'tcp LISTEN 0 511 0.0.0.0:6443 0.0.0.0:* users:(("nginx",pid=5,fd=6))\n'
    )
    status = run(homelab(), hosts, ["1.2.6"])
    assert status[("1.2.6", "k3s-node-02")] is Status.FAIL
    assert status[("1.2.6", "k3s-node-01")] is Status.PASS


def test_unreachable_peer_fails_1_1_5_naming_it() -> None:
    hosts = nodes()
    for name, host in hosts.items():
        for other, address in ADDRESSES.items():
            ok = "k3s-node-03" not in (name, other)
            host.answers[("ping", "-c", "1", "-W", "2", address)] = Reply(0 if ok else 1)
    with Context(homelab()) as context:
        context.resource("phase1-ssh", lambda: (ExitStack(), hosts))
        results = run_checks(homelab(), ids=["1.1.5"], context=context)
    by_node = {r.subject: r for r in results}
    assert (
        by_node["k3s-node-01"].status is Status.FAIL
        and "k3s-node-03" in by_node["k3s-node-01"].observed
    )
    assert by_node["k3s-node-03"].status is Status.FAIL


def test_argocd_cli_on_the_workstation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """1.5.4 runs the real `argocd` found on PATH: absent fails, failing fails, working passes."""
    homelab = load_lab(Path(__file__).resolve().parents[2] / "params" / "homelab.yaml")
    monkeypatch.setenv("PATH", str(tmp_path))
    (result,) = run_checks(homelab, ids=["1.5.4"])
    assert (result.status, result.observed) == (Status.FAIL, "not found on PATH")
    program = tmp_path / "argocd"
    program.write_text("#!/bin/sh\necho 'argocd: v2.13.2+abc'\nexit $ARGOCD_EXIT\n")
    program.chmod(0o755)
    monkeypatch.setenv("ARGOCD_EXIT", "1")
    assert run_checks(homelab, ids=["1.5.4"]).by_id("1.5.4")[0].status == Status.FAIL
    monkeypatch.setenv("ARGOCD_EXIT", "0")
    (result,) = run_checks(homelab, ids=["1.5.4"])
    assert (result.status, result.observed) == (Status.PASS, "argocd: v2.13.2+abc")
