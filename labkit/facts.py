"""Facts: read-only probes of a node over its Host; they never change anything.

Each fact runs one or a few commands (argv lists) and parses what came back
into plain data. Steps compare facts with the desired state; checks judge them.
Commands that may legitimately fail (a file that does not exist yet, a tool
that is absent) run with ``check=False`` and the fact says what it saw.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = [
    "K3S_DATA_DIR",
    "K3S_ETCD_DIR",
    "FileState",
    "FstabEntry",
    "Listener",
    "RemoteHost",
    "Result",
    "TimeSync",
    "Ufw",
    "apt_upgradable",
    "file_state",
    "fstab",
    "hostname",
    "k3s_installed",
    "k3s_service",
    "k3s_unit",
    "k3s_version",
    "listeners",
    "modules_loaded",
    "mtime",
    "packages",
    "parse_fstab",
    "parse_ss",
    "parse_ufw",
    "quote",
    "read_file",
    "settings_lines",
    "shares_namespaces",
    "swaps",
    "sysctl",
    "time_sync",
    "ufw",
    "uptime_s",
]

K3S_DATA_DIR = "/var/lib/rancher/k3s"
K3S_ETCD_DIR = f"{K3S_DATA_DIR}/server/db/etcd"


class Result(Protocol):
    """What a command run returns (labkit.hosts.CommandResult satisfies it)."""

    @property
    def exit_code(self) -> int:
        """The command's exit status."""

    @property
    def stdout(self) -> str:
        """Everything it printed on standard output."""

    @property
    def stderr(self) -> str:
        """Everything it printed on standard error."""


class RemoteHost(Protocol):
    """The part of labkit.hosts.Host that facts and steps use."""

    @property
    def name(self) -> str:
        """The node name."""

    @property
    def address(self) -> str:
        """The node address."""

    def run(
        self,
        argv: list[str],
        *,
        sudo: bool | None = None,
        timeout_s: float | None = None,
        check: bool = True,
        stdin: str | None = None,
    ) -> Result:
        """Run ``argv``; raise CommandError when ``check`` and it fails."""

    def put(self, data: bytes | Path, remote: str, mode: int = 0o644) -> None:
        """Upload ``data`` (bytes or a local Path) to ``remote``."""


def _out(host: RemoteHost, argv: list[str]) -> str:
    return host.run(argv).stdout


def hostname(host: RemoteHost) -> str:
    """The running hostname (``hostname``)."""
    return _out(host, ["hostname"]).strip()


def uptime_s(host: RemoteHost) -> float:
    """Seconds since the node's kernel booted (first field of /proc/uptime)."""
    return float(_out(host, ["cat", "/proc/uptime"]).split()[0])


@dataclass(frozen=True)
class FileState:
    """A remote file's content, or ``exists=False``."""

    path: str
    exists: bool
    content: str = ""


def settings_lines(text: str) -> list[str]:
    """The lines of a modules-load.d / sysctl.d style file that set something.

    Blank lines and comments (``#`` or ``;``, possibly indented) are left out; each line
    comes back stripped.
    """
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith(("#", ";"))]


def file_state(host: RemoteHost, path: str) -> FileState:
    """Read ``path`` (with sudo when the lab uses it); a missing file is ``exists=False``."""
    result = host.run(["cat", path], check=False)
    if result.exit_code == 0:
        return FileState(path, True, result.stdout)
    if "No such file" in result.stderr:
        return FileState(path, False)
    from labkit.errors import CommandError  # noqa: PLC0415 - only on the failure path

    raise CommandError(
        host.name, ["cat", path], result.exit_code, result.stderr, "cannot read the file"
    )


def read_file(host: RemoteHost, path: str) -> str | None:
    """The content of ``path``, or None when it does not exist."""
    state = file_state(host, path)
    return state.content if state.exists else None


def swaps(host: RemoteHost) -> list[str]:
    """Active swap devices and files (from /proc/swaps)."""
    lines = _out(host, ["cat", "/proc/swaps"]).splitlines()[1:]
    return [line.split()[0] for line in lines if line.strip()]


@dataclass(frozen=True)
class FstabEntry:
    """One line of /etc/fstab that mounts something (comments are kept as text only)."""

    line_number: int
    source: str
    mountpoint: str
    fstype: str

    @property
    def is_swap(self) -> bool:
        """True for a swap entry."""
        return self.fstype == "swap"


def parse_fstab(text: str) -> list[FstabEntry]:
    """Active (uncommented) entries of an fstab text."""
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if len(fields) >= 3 and not fields[0].startswith("#"):
            entries.append(FstabEntry(number, fields[0], fields[1], fields[2]))
    return entries


def fstab(host: RemoteHost) -> tuple[str, list[FstabEntry]]:
    """/etc/fstab's text and its active entries (empty when the file is absent)."""
    text = read_file(host, "/etc/fstab") or ""
    return text, parse_fstab(text)


# Where a module shows itself when it is active but built into the kernel (no /proc/modules entry).
_MODULE_SIGNS = {"br_netfilter": "/proc/sys/net/bridge", "overlay": "/sys/module/overlay"}


def modules_loaded(host: RemoteHost, names: Sequence[str]) -> dict[str, bool]:
    """For each module: loaded as a module, or built in and active (its sysfs/procfs sign)."""
    loaded_text = host.run(["cat", "/proc/modules"], check=False).stdout
    loaded = {line.split()[0] for line in loaded_text.splitlines() if line.strip()}
    filesystems = host.run(["cat", "/proc/filesystems"], check=False).stdout.split()
    answer = {}
    for name in names:
        if name in loaded or (name == "overlay" and "overlay" in filesystems):
            answer[name] = True
            continue
        sign = _MODULE_SIGNS.get(name, f"/sys/module/{name}")
        answer[name] = host.run(["test", "-e", sign], check=False).exit_code == 0
    return answer


def sysctl(host: RemoteHost, key: str) -> str | None:
    """The running value of a sysctl key, or None when the kernel does not offer it."""
    path = "/proc/sys/" + key.replace(".", "/")
    result = host.run(["cat", path], check=False)
    return result.stdout.strip() if result.exit_code == 0 else None


def packages(host: RemoteHost, names: Sequence[str]) -> dict[str, str | None]:
    """Installed version of each package, or None when it is not installed (dpkg)."""
    result = host.run(
        ["dpkg-query", "-W", "-f", "${Package}\t${db:Status-Abbrev}\t${Version}\n", *names],
        check=False,
    )
    found: dict[str, str | None] = dict.fromkeys(names)
    for line in result.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[1].startswith("ii"):
            found[parts[0].split(":")[0]] = parts[2]
    return found


def apt_upgradable(host: RemoteHost) -> list[str]:
    """Packages a simulated ``apt-get upgrade`` would upgrade, as of the node's package lists."""
    out = _out(host, ["apt-get", "--simulate", "-o", "Debug::NoLocking=1", "upgrade"])
    return [line.split()[1] for line in out.splitlines() if line.startswith("Inst ")]


@dataclass(frozen=True)
class TimeSync:
    """What the node says about its clock synchronisation."""

    service: str  # "timedatectl", "chrony" or "" when no time service answers
    enabled: bool
    synchronized: bool
    detail: str


def time_sync(host: RemoteHost) -> TimeSync:
    """Ask timedatectl (systemd-timesyncd) then chrony whether the clock is synchronised."""
    shown = host.run(
        ["timedatectl", "show", "--property=NTP", "--property=NTPSynchronized"], check=False
    )
    if shown.exit_code == 0:
        values = dict(line.split("=", 1) for line in shown.stdout.splitlines() if "=" in line)
        return TimeSync(
            "timedatectl",
            values.get("NTP") == "yes",
            values.get("NTPSynchronized") == "yes",
            shown.stdout.strip(),
        )
    chrony = host.run(["chronyc", "-n", "tracking"], check=False)
    if chrony.exit_code == 0:
        status = re.search(r"^Leap status\s*:\s*(.+)$", chrony.stdout, re.M)
        leap = status.group(1).strip() if status else "unknown"
        return TimeSync("chrony", True, leap == "Normal", f"Leap status: {leap}")
    first = (shown.stderr.strip().splitlines() or ["timedatectl failed"])[0]
    other = (chrony.stderr.strip().splitlines() or [f"exit {chrony.exit_code}"])[-1]
    detail = f"timedatectl: {first}; chronyc: {other}"
    return TimeSync("", False, False, detail)


@dataclass(frozen=True)
class Ufw:
    """ufw's state: installed, active, and the rules it lists (e.g. '6443/tcp')."""

    installed: bool
    active: bool
    allowed: frozenset[str]
    raw: str


def parse_ufw(text: str) -> tuple[bool, frozenset[str]]:
    """Parse ``ufw status`` output into (active, allowed port specs)."""
    active = bool(re.search(r"^Status:\s*active", text, re.M))
    allowed = set()
    for line in text.splitlines():
        match = re.match(r"^(\d+(?::\d+)?/(?:tcp|udp))\s+(?:\(v6\)\s+)?ALLOW", line)
        if match:
            allowed.add(match.group(1))
    return active, frozenset(allowed)


def ufw(host: RemoteHost) -> Ufw:
    """Whether ufw is installed and active, and which port rules allow traffic."""
    result = host.run(["ufw", "status"], check=False)
    if result.exit_code == 127 or "not found" in result.stderr:
        return Ufw(False, False, frozenset(), result.stderr.strip())
    if result.exit_code != 0:
        from labkit.errors import CommandError  # noqa: PLC0415

        raise CommandError(host.name, ["ufw", "status"], result.exit_code, result.stderr)
    active, allowed = parse_ufw(result.stdout)
    return Ufw(True, active, allowed, result.stdout.strip())


@dataclass(frozen=True)
class Listener:
    """A listening socket: protocol, local address, port and owning process (when known)."""

    protocol: str
    address: str
    port: int
    process: str


def parse_ss(text: str) -> list[Listener]:
    """Parse ``ss -H -l -n -t -u -p`` output."""
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        local = fields[4]
        address, _, port = local.rpartition(":")
        if not port.isdigit():
            continue
        process = re.search(r'users:\(\("([^"]+)"', line)
        found.append(
            Listener(fields[0], address.strip("[]"), int(port), process.group(1) if process else "")
        )
    return found


def listeners(host: RemoteHost) -> list[Listener]:
    """Listening TCP and UDP sockets in the node's network namespace."""
    return parse_ss(_out(host, ["ss", "-H", "-l", "-n", "-t", "-u", "-p"]))


def k3s_version(host: RemoteHost) -> str | None:
    """The installed K3s version (``k3s --version``), or None when K3s is not installed."""
    result = host.run(["/usr/local/bin/k3s", "--version"], check=False)
    if result.exit_code != 0:
        return None
    match = re.search(r"k3s version (\S+)", result.stdout)
    return match.group(1) if match else None


def k3s_installed(host: RemoteHost) -> tuple[str | None, bool]:
    """(installed version or None, etcd data present): together they mean 'already joined'."""
    etcd = host.run(["test", "-d", K3S_ETCD_DIR], check=False).exit_code == 0
    return k3s_version(host), etcd


def k3s_unit(role: str) -> str:
    """The systemd unit K3s runs as on a ``role`` node: ``k3s`` on servers, else ``k3s-agent``."""
    return "k3s" if role == "server" else "k3s-agent"


def k3s_service(host: RemoteHost, unit: str) -> tuple[str, int | None]:
    """``unit``'s ActiveState and its main process start (epoch seconds) when running."""
    shown = host.run(
        ["systemctl", "show", unit, "--property=ActiveState", "--property=MainPID"], check=False
    )
    values = dict(line.split("=", 1) for line in shown.stdout.splitlines() if "=" in line)
    state = values.get("ActiveState", "unknown" if shown.exit_code else "inactive")
    pid = values.get("MainPID", "0")
    if state != "active" or not pid.isdigit() or pid == "0":
        return state, None
    # Now minus the process's age: /proc/PID's own mtime is when the kernel made that
    # inode (first looked at), not when the process started.
    now = host.run(["date", "+%s"], check=False).stdout.strip()
    age = host.run(["ps", "-o", "etimes=", "-p", pid], check=False).stdout.strip()
    if not (now.isdigit() and age.isdigit()):
        return state, None
    return state, int(now) - int(age)


def mtime(host: RemoteHost, path: str) -> int | None:
    """A remote file's modification time (epoch seconds), or None when absent."""
    result = host.run(["stat", "-c", "%Y", path], check=False)
    return int(result.stdout.strip()) if result.exit_code == 0 else None


def shares_namespaces(host: RemoteHost, kinds: Sequence[str] = ("uts", "net")) -> dict[str, bool]:
    """For each namespace kind: True when the login shell shares it with the machine's pid 1."""
    shared = {}
    for kind in kinds:
        own = host.run(["readlink", f"/proc/self/ns/{kind}"], check=False).stdout.strip()
        first = host.run(["readlink", f"/proc/1/ns/{kind}"], check=False).stdout.strip()
        shared[kind] = bool(own) and own == first
    return shared


def quote(argv: Sequence[str]) -> str:
    """A command as a person would type it (for evidence only; never executed)."""
    return shlex.join(argv)
