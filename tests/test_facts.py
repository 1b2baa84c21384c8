"""Facts parse what nodes print: fstab, ufw, ss, dpkg, timedatectl, modules, k3s version."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "steps"))  # the in-memory test Host
from fakehost import FakeHost, Reply, ubuntu_node

from labkit import facts
from labkit.errors import CommandError


def test_fstab_ignores_comments_and_finds_swap() -> None:
    entries = facts.parse_fstab(
        "# /swap.img none swap sw 0 0\nUUID=a / ext4 defaults 0 1\n/swap.img none swap sw 0 0\n"
    )
    assert [(e.line_number, e.is_swap) for e in entries] == [(2, False), (3, True)]


def test_ufw_status_parsing() -> None:
    text = (
        "Status: active\n\nTo                         Action      From\n"
        "6443/tcp                   ALLOW       Anywhere\n"
        "2379:2380/tcp              ALLOW       Anywhere\n"
        "8472/udp (v6)              ALLOW       Anywhere (v6)\n"
        "22/tcp                     DENY        Anywhere\n"
    )
    active, allowed = facts.parse_ufw(text)
    assert active and allowed == {"6443/tcp", "2379:2380/tcp", "8472/udp"}
    assert facts.parse_ufw("Status: inactive\n") == (False, frozenset())


def test_ss_parsing_names_the_process() -> None:
    text = (
        'tcp LISTEN 0 4096 *:6443 *:* users:(("kube-apiserver",pid=9,fd=3))\n'
        "udp UNCONN 0 0 0.0.0.0:8472 0.0.0.0:*\n"
        'tcp LISTEN 0 128 [::1]:10250 [::]:* users:(("k3s",pid=7,fd=9))\n'
    )
    found = facts.parse_ss(text)
    assert [(x.protocol, x.port, x.process) for x in found] == [
        ("tcp", 6443, "kube-apiserver"),
        ("udp", 8472, ""),
        ("tcp", 10250, "k3s"),
    ]
    assert found[2].address == "::1"


def test_packages_missing_is_none() -> None:
    host = ubuntu_node(packages=("curl", "ca-certificates"))
    host.answers[
        ("dpkg-query", "-W", "-f", "${Package}\t${db:Status-Abbrev}\t${Version}\n", "curl", "jq")
    ] = Reply(1, "curl\tii \t8.5.0\n", "dpkg-query: no packages found matching jq\n")
    assert facts.packages(host, ["curl", "jq"]) == {"curl": "8.5.0", "jq": None}


def test_time_sync_reads_timedatectl_then_chrony() -> None:
    host = ubuntu_node()
    assert facts.time_sync(host).synchronized
    host.answers[("timedatectl", "show", "--property=NTP", "--property=NTPSynchronized")] = Reply(
        1, "", "no bus\n"
    )
    host.answers[("chronyc", "-n", "tracking")] = Reply(
        0, "Reference ID : 1\nLeap status     : Normal\n"
    )
    state = facts.time_sync(host)
    assert (state.service, state.synchronized) == ("chrony", True)


def test_modules_builtin_detected_by_their_signs() -> None:
    host = FakeHost(
        files={"/proc/filesystems": "nodev\toverlay\n"}, directories={"/proc/sys/net/bridge"}
    )
    assert facts.modules_loaded(host, ["overlay", "br_netfilter", "nf_conntrack"]) == {
        "overlay": True,
        "br_netfilter": True,
        "nf_conntrack": False,
    }


def test_k3s_version_parsed_or_none() -> None:
    host = FakeHost(
        answers={("/usr/local/bin/k3s", "--version"): Reply(0, "k3s version v1.31.12+k3s1 (abc)\n")}
    )
    assert facts.k3s_version(host) == "v1.31.12+k3s1"
    assert facts.k3s_version(FakeHost()) is None


def test_unreadable_file_is_an_error_not_absent() -> None:
    host = FakeHost(
        answers={("cat", "/etc/shadow"): Reply(1, "", "cat: /etc/shadow: Permission denied")}
    )
    with pytest.raises(CommandError, match="Permission denied"):
        facts.read_file(host, "/etc/shadow")
    assert facts.read_file(host, "/etc/nothing") is None
