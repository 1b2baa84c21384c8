"""An in-memory Host for table-driven step tests: a file table plus answers per argv.

Files: ``cat PATH`` reads, ``install -D -m MODE /dev/stdin PATH`` writes,
``test -e|-d|-s PATH`` asks. Every other argv must be in ``answers`` (exact
tuple), whose value is a Reply or a function of the host returning one (to
change state, as the real command would). An unexpected command exits 127, so
a step that runs something the table does not list fails its test loudly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from labkit.errors import CommandError


@dataclass(frozen=True)
class Reply:
    """What a command answers."""

    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        """True when exit code is 0."""
        return self.exit_code == 0


Answer = Reply | Callable[["FakeHost"], Reply]


@dataclass
class FakeHost:
    """A node in memory: files, directories, answers; records every argv it ran."""

    name: str = "k3s-node-01"
    address: str = "10.77.0.11"
    files: dict[str, str] = field(default_factory=dict)
    directories: set[str] = field(default_factory=set)
    answers: dict[tuple[str, ...], Answer] = field(default_factory=dict)
    calls: list[tuple[str, ...]] = field(default_factory=list)
    stdins: list[str | None] = field(default_factory=list)
    uploads: dict[str, bytes] = field(default_factory=dict)

    def run(
        self,
        argv: list[str],
        *,
        sudo: bool | None = None,
        timeout_s: float | None = None,
        check: bool = True,
        stdin: str | None = None,
    ) -> Reply:
        """Answer ``argv`` from the file table or the answers."""
        key = tuple(argv)
        self.calls.append(key)
        self.stdins.append(stdin)
        reply = self._answer(key, stdin)
        if check and reply.exit_code != 0:
            raise CommandError(self.name, list(argv), reply.exit_code, reply.stderr)
        return reply

    def _answer(self, key: tuple[str, ...], stdin: str | None) -> Reply:
        if key in self.answers:
            answer = self.answers[key]
            return answer(self) if callable(answer) else answer
        if len(key) == 2 and key[0] == "cat":
            if key[1] in self.files:
                return Reply(0, self.files[key[1]])
            return Reply(1, "", f"cat: {key[1]}: No such file or directory")
        if key[:3] == ("install", "-D", "-m") and key[4:5] == ("/dev/stdin",):
            self.files[key[5]] = stdin or ""
            return Reply()
        if len(key) == 3 and key[0] == "test":
            path = key[2]
            present = {
                "-e": path in self.files or path in self.directories,
                "-d": path in self.directories,
                "-s": bool(self.files.get(path)) or path in self.uploads,
            }[key[1]]
            return Reply(0 if present else 1)
        return Reply(127, "", f"{key[0]}: command not found")

    def put(self, data: bytes | Path, remote: str, mode: int = 0o644) -> None:
        """Record an upload."""
        self.uploads[remote] = data.read_bytes() if isinstance(data, Path) else data

    def ran(self, *argv: str) -> bool:
        """True when exactly ``argv`` was run."""
        return tuple(argv) in self.calls

    def writes(self) -> list[str]:
        """Paths written through install /dev/stdin."""
        return [c[5] for c in self.calls if c[:1] == ("install",) and "/dev/stdin" in c]


_DPKG_FORMAT = "${Package}\t${db:Status-Abbrev}\t${Version}\n"
_SWAPS_HEADER = "Filename\tType\tSize\tUsed\tPriority\n"
_TIMEDATECTL = ("timedatectl", "show", "--property=NTP", "--property=NTPSynchronized")


def _dpkg(installed: dict[str, str], names: list[str]) -> Callable[[FakeHost], Reply]:
    def answer(host: FakeHost) -> Reply:
        lines = [f"{n}\tii \t{installed[n]}\n" for n in names if n in installed]
        missing = [n for n in names if n not in installed]
        err = "".join(f"dpkg-query: no packages found matching {n}\n" for n in missing)
        return Reply(1 if missing else 0, "".join(lines), err)

    return answer


def ubuntu_node(
    name: str = "k3s-node-01",
    address: str = "10.77.0.11",
    packages: tuple[str, ...] = ("curl", "ca-certificates"),
    fresh: bool = False,
) -> FakeHost:
    """A node that behaves like Ubuntu 24.04 for the 1.2 steps: prepared, or ``fresh`` (all wrong).

    Commands that change state change it here too, so apply then plan converges.
    """
    host = FakeHost(name, address)
    installed = {} if fresh else {p: "1.0" for p in packages}
    state = {"hostname": "ubuntu" if fresh else name, "ntp": not fresh, "ufw": [], "swap": fresh}
    host.files.update(
        {
            "/etc/hostname": "ubuntu\n" if fresh else f"{name}\n",
            "/proc/uptime": "1234.5 2000.0\n",
            "/proc/filesystems": "nodev\tproc\nnodev\toverlay\n",
            "/proc/modules": "" if fresh else "br_netfilter 32768 0 - Live 0x0\n",
            "/etc/fstab": "UUID=abc / ext4 defaults 0 1\n"
            + ("/swap.img none swap sw 0 0\n" if fresh else ""),
        }
    )
    if fresh:
        host.files["/proc/filesystems"] = "nodev\tproc\n"
    for key, value in {
        "net/bridge/bridge-nf-call-iptables": "1",
        "net/bridge/bridge-nf-call-ip6tables": "1",
        "net/ipv4/ip_forward": "1",
    }.items():
        if fresh and key.startswith("net/bridge"):
            continue
        host.files[f"/proc/sys/{key}"] = "0\n" if fresh else f"{value}\n"
    if not fresh:
        from labkit.steps.node import _HEADER, K3S_SYSCTLS, MODULES_FILE, SYSCTL_FILE

        host.files[MODULES_FILE] = _HEADER + "overlay\nbr_netfilter\n"
        host.files[SYSCTL_FILE] = _HEADER + "".join(f"{k} = {v}\n" for k, v in K3S_SYSCTLS.items())
        host.directories.add("/proc/sys/net/bridge")

    def swaps(h: FakeHost) -> Reply:
        return Reply(0, _SWAPS_HEADER + ("/swap.img file 4194300 0 -2\n" if state["swap"] else ""))

    def swapoff(h: FakeHost) -> Reply:
        state["swap"] = False
        return Reply()

    def set_hostname(h: FakeHost) -> Reply:
        state["hostname"] = name
        return Reply()

    def timedatectl(h: FakeHost) -> Reply:
        ntp = "yes" if state["ntp"] else "no"
        return Reply(0, f"NTP={ntp}\nNTPSynchronized={ntp}\n")

    def set_ntp(h: FakeHost) -> Reply:
        state["ntp"] = True
        return Reply()

    def ufw_status(h: FakeHost) -> Reply:
        rules = "".join(f"{r:<27}ALLOW       Anywhere\n" for r in state["ufw"])  # type: ignore[attr-defined]
        head = "Status: active\n\nTo                         Action      From\n--\n"
        return Reply(0, head + rules) if fresh else Reply(0, "Status: inactive\n")

    def modprobe(module: str) -> Callable[[FakeHost], Reply]:
        def answer(h: FakeHost) -> Reply:
            h.files["/proc/modules"] += f"{module} 1 0 - Live 0x0\n"
            if module == "br_netfilter":
                h.directories.add("/proc/sys/net/bridge")
                h.files["/proc/sys/net/bridge/bridge-nf-call-iptables"] = "0\n"
                h.files["/proc/sys/net/bridge/bridge-nf-call-ip6tables"] = "0\n"
            if module == "overlay":
                h.files["/proc/filesystems"] += "nodev\toverlay\n"
            return Reply()

        return answer

    def sysctl_w(key: str, value: str) -> Callable[[FakeHost], Reply]:
        def answer(h: FakeHost) -> Reply:
            path = "/proc/sys/" + key.replace(".", "/")
            if path not in h.files:
                return Reply(255, "", f"sysctl: cannot stat {path}: No such file or directory")
            h.files[path] = f"{value}\n"
            return Reply()

        return answer

    def ufw_allow(port: str) -> Callable[[FakeHost], Reply]:
        def answer(h: FakeHost) -> Reply:
            state["ufw"].append(port)  # type: ignore[attr-defined]
            return Reply()

        return answer

    def apt_install(h: FakeHost) -> Reply:
        installed.update({p: "2.0" for p in packages})
        return Reply()

    from labkit.steps.node import K3S_SYSCTLS, k3s_ports

    host.answers.update(
        {
            ("hostname",): lambda h: Reply(0, f"{state['hostname']}\n"),
            ("systemctl", "is-system-running"): Reply(0, "running\n"),
            ("nft", "list", "ruleset"): Reply(0, ""),
            ("iptables-save",): Reply(127, "", "iptables-save: not found"),
            ("hostname", name): set_hostname,
            ("cat", "/proc/swaps"): swaps,
            ("swapoff", "-a"): swapoff,
            ("dpkg-query", "-W", "-f", _DPKG_FORMAT, *packages): _dpkg(installed, list(packages)),
            (
                "env",
                "DEBIAN_FRONTEND=noninteractive",
                "apt-get",
                "install",
                "-y",
                "--no-install-recommends",
                *packages,
            ): apt_install,
            _TIMEDATECTL: timedatectl,
            ("timedatectl", "set-ntp", "true"): set_ntp,
            ("ufw", "status"): ufw_status,
            ("modprobe", "overlay"): modprobe("overlay"),
            ("modprobe", "br_netfilter"): modprobe("br_netfilter"),
            **{("sysctl", "-w", f"{k}={v}"): sysctl_w(k, v) for k, v in K3S_SYSCTLS.items()},
            **{("ufw", "allow", p): ufw_allow(p) for p in k3s_ports(False)},
            ("readlink", "/proc/self/ns/uts"): Reply(0, "uts:[4026531838]\n"),
            ("readlink", "/proc/1/ns/uts"): Reply(0, "uts:[4026531838]\n"),
            ("/usr/local/bin/k3s", "--version"): Reply(127, "", "k3s: not found"),
            ("ss", "-H", "-l", "-n", "-t", "-u", "-p"): Reply(
                0, 'tcp LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:(("sshd",pid=1,fd=3))\n'
            ),
        }
    )
    return host
