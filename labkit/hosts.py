"""SSH to the lab's nodes: run argv (optionally with sudo), put/get files, many hosts in parallel.

The only module that imports paramiko. Host keys are verified against the
known_hosts file named in params; an unknown key is recorded only when the
params allow trust-on-first-use, and a changed key always refuses the
connection. Addresses outside the lab's allow-list are refused before a socket
is opened, and so is a sandbox address while the sandbox's bridge does not carry
it (``SandboxDown``: with the sandbox down it would leave by the default route).
Every paramiko or socket failure becomes a ``ConnectError`` naming the node, and
every error message goes through ``redact``.
"""

from __future__ import annotations

import logging
import posixpath
import secrets as random_names
import select
import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import paramiko

from labkit.errors import (
    CommandError,
    ConfigError,
    ConnectError,
    LabkitError,
    SandboxDown,
    WaitTimeout,
)
from labkit.known_hosts import known_hosts_name
from labkit.params import Lab, Node, Ssh
from labkit.secrets import redact

__all__ = [
    "SSH_CONFIG",
    "CommandResult",
    "CommandTimeout",
    "Group",
    "GroupConnectError",
    "GroupError",
    "Host",
    "attempt_each",
    "known_hosts_name",
    "known_key_types",
    "open_hosts",
]

SSH_CONFIG = Path("~/.ssh/config")
_log = logging.getLogger(__name__)
_known_hosts_lock = threading.Lock()  # TOFU appends from parallel hosts must not interleave
T = TypeVar("T")


@dataclass(frozen=True)
class CommandResult:
    """What a command did on one host: exit code, output and how long it took."""

    host: str
    argv: list[str]
    exit_code: int
    stdout: str
    stderr: str
    duration_s: float

    @property
    def ok(self) -> bool:
        """True when the command exited 0."""
        return self.exit_code == 0


class CommandTimeout(CommandError, WaitTimeout):
    """A command did not finish before its deadline; it was abandoned (channel closed)."""


class GroupError(CommandError):
    """Several hosts ran the same thing and at least one failed; names every failed node."""

    def __init__(self, argv: list[str], failures: dict[str, LabkitError]) -> None:
        self.failures = failures
        self.host = ", ".join(failures)
        self.argv = argv
        first = next(iter(failures.values()))
        # The first failure's remote status, when it was a command that ran (None: it never did).
        self.remote_status = first.remote_status if isinstance(first, CommandError) else None
        self.stderr = "\n".join(
            failure.stderr for failure in failures.values() if isinstance(failure, CommandError)
        )
        lines = "".join(f"\n  - {failure}" for failure in failures.values())
        LabkitError.__init__(self, f"{len(failures)} node(s) failed ({self.host}):{lines}")


class GroupConnectError(GroupError, ConnectError):
    """Every failing node of a group failed to connect (unreachable, refused, bad key)."""


class _HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Unknown key: record it when TOFU is allowed, else refuse with what to do."""

    def __init__(self, node_name: str, known_hosts: Path, trust_on_first_use: bool) -> None:
        self.node_name = node_name
        self.known_hosts = known_hosts
        self.trust_on_first_use = trust_on_first_use

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        """Called by paramiko when ``hostname`` has no key in known_hosts."""
        fingerprint = key.fingerprint
        if not self.trust_on_first_use:
            raise ConnectError(
                f"{self.node_name} ({hostname}): host key {key.get_name()} {fingerprint} is not "
                f"in {self.known_hosts}; verify it and add it (ssh-keyscan), or set "
                "ssh.trust_on_first_use: true to record it on first connection"
            )
        with _known_hosts_lock:
            self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
            with self.known_hosts.open("a", encoding="utf-8") as file:
                file.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
            self.known_hosts.chmod(0o600)
        client.get_host_keys().add(hostname, key.get_name(), key)
        _log.warning(
            "%s: trusted new host key %s %s on first use (recorded in %s)",
            self.node_name,
            key.get_name(),
            fingerprint,
            self.known_hosts,
        )


@dataclass(frozen=True)
class _Endpoint:
    """Where and as whom to connect, after params and ~/.ssh/config are combined."""

    address: str
    port: int
    user: str
    key: Path | None


def known_key_types(known_hosts: Path, address: str, port: int = 22) -> list[str]:
    """The key types ``known_hosts`` holds for ``address`` (port 22) or ``[address]:port``.

    Hashed entries (``HashKnownHosts``) are matched too; an unreadable file raises
    ConfigError naming it.
    """
    keys = paramiko.HostKeys()
    try:
        keys.load(str(known_hosts))
    except (OSError, UnicodeDecodeError, paramiko.SSHException) as exc:
        raise ConfigError(f"known_hosts {known_hosts} unreadable: {exc}") from None
    found = keys.lookup(known_hosts_name(address, port))
    return sorted(found.keys()) if found is not None else []


class Host:
    """One node reached over SSH; connects lazily, reuses one connection, thread-safe."""

    def __init__(
        self,
        node: Node,
        ssh: Ssh,
        lab: Lab | None = None,
        *,
        ssh_config: Path | None = SSH_CONFIG,
    ) -> None:
        self.node = node
        self.ssh = ssh
        self.lab = lab
        self._lock = threading.Lock()
        self._client: paramiko.SSHClient | None = None
        self._endpoint = self._resolve_endpoint(ssh_config if ssh.use_ssh_config else None)
        self._require_allowed()  # before any socket exists

    @property
    def name(self) -> str:
        """The node's name from params."""
        return self.node.name

    @property
    def address(self) -> str:
        """The address labkit connects to."""
        return self._endpoint.address

    @property
    def user(self) -> str:
        """The SSH login user."""
        return self._endpoint.user

    def __repr__(self) -> str:
        return f"Host({self.name} {self.user}@{self.address}:{self._endpoint.port})"

    def _path(self, value: Path) -> Path:
        return self.lab.path(value) if self.lab is not None else value.expanduser()

    def _resolve_endpoint(self, config_path: Path | None) -> _Endpoint:
        # Params win where they were written explicitly; ~/.ssh/config fills the rest,
        # matched by node name first (the usual `Host k3s-node-01` entry), then by address.
        found: dict[str, object] = {}
        if config_path is not None and config_path.expanduser().is_file():
            config = paramiko.SSHConfig.from_path(str(config_path.expanduser()))
            for pattern in (self.node.address, self.node.name):
                found.update(config.lookup(pattern))
        explicit = self.node.model_fields_set
        port = self.node.ssh_port
        if "ssh_port" not in explicit and "port" in found:
            port = int(str(found["port"]))
        key = self._path(self.node.ssh_key) if self.node.ssh_key is not None else None
        identities = found.get("identityfile")
        if key is None and isinstance(identities, list) and identities:
            key = Path(str(identities[0])).expanduser()
        # HostName from the config is ignored on purpose: params name the address the
        # allow-list vouches for, and a config alias must not redirect labkit elsewhere.
        return _Endpoint(self.node.address, port, self.node.ssh_user, key)

    def _where(self) -> str:
        return f"{self.name} ({self._endpoint.user}@{self._endpoint.address}:{self._endpoint.port})"

    def _require_allowed(self) -> None:
        if self.lab is None:
            return
        try:
            self.lab.require_allowed(self._endpoint.address)
        except SandboxDown as exc:
            raise SandboxDown(f"{self.name}: {exc}") from None

    def connect(self) -> None:
        """Open the SSH connection now (otherwise the first command does it)."""
        self._connected()

    def _connected(self) -> paramiko.SSHClient:
        with self._lock:
            if self._client is not None:
                transport = self._client.get_transport()
                if transport is not None and transport.is_active():
                    return self._client
                self._client.close()
                self._client = None
            self._client = self._open()
            return self._client

    def _open(self) -> paramiko.SSHClient:
        endpoint = self._endpoint
        self._require_allowed()  # again: the sandbox may have gone down since
        known_hosts = self._path(self.ssh.known_hosts)
        client = paramiko.SSHClient()
        if known_hosts.is_file():
            try:
                client.load_host_keys(str(known_hosts))
            except (OSError, paramiko.SSHException) as exc:
                raise ConfigError(
                    f"{self.name}: known_hosts {known_hosts} unreadable: {exc}"
                ) from exc
        client.set_missing_host_key_policy(
            _HostKeyPolicy(self.name, known_hosts, self.ssh.trust_on_first_use)
        )
        if endpoint.key is not None and not endpoint.key.is_file():
            raise ConnectError(
                f"{self._where()}: SSH key {endpoint.key} does not exist; create it "
                "(ssh-keygen) or fix nodes[].ssh_key in params"
            )
        timeout = self.ssh.connect_timeout_s
        try:
            client.connect(
                endpoint.address,
                port=endpoint.port,
                username=endpoint.user,
                key_filename=str(endpoint.key) if endpoint.key else None,
                allow_agent=endpoint.key is None,
                look_for_keys=False,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
                channel_timeout=timeout,
            )
        except ConnectError:
            client.close()
            raise
        except (paramiko.SSHException, OSError, EOFError) as exc:
            client.close()
            raise self._connect_error(exc, known_hosts) from None
        _log.debug("%s: connected", self._where())
        return client

    def _connect_error(self, exc: Exception, known_hosts: Path) -> ConnectError:
        where = self._where()
        timeout = self.ssh.connect_timeout_s
        if isinstance(exc, paramiko.BadHostKeyException):
            return ConnectError(
                f"{where}: host key CHANGED: known_hosts {known_hosts} has "
                f"{exc.expected_key.get_name()} {exc.expected_key.fingerprint} but the server "
                f"offered {exc.key.fingerprint}; refusing to connect. If the node was "
                "reinstalled, verify the new key and replace its line in known_hosts"
            )
        if isinstance(exc, paramiko.PasswordRequiredException):
            return ConnectError(
                f"{where}: key {self._endpoint.key} is encrypted; load it into ssh-agent "
                "(ssh-add) and remove ssh_key from params to use the agent"
            )
        if isinstance(exc, paramiko.AuthenticationException):
            how = f"key {self._endpoint.key}" if self._endpoint.key else "the ssh-agent's keys"
            return ConnectError(
                f"{where}: authentication refused with {how} ({exc}); check that its public "
                f"key is in ~{self._endpoint.user}/.ssh/authorized_keys on the node"
            )
        if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError | ConnectionRefusedError):
            return ConnectError(
                f"{where}: connection refused; is sshd running and listening on port "
                f"{self._endpoint.port}?"
            )
        if isinstance(exc, socket.timeout | TimeoutError):
            return ConnectError(
                f"{where}: no answer within {timeout:g}s; is the node up and the address right? "
                "(ssh.connect_timeout_s sets the limit)"
            )
        if isinstance(exc, OSError):
            return ConnectError(
                f"{where}: unreachable ({exc.strerror or exc}); check the address and route"
            )
        if isinstance(exc, paramiko.SSHException | EOFError):
            return ConnectError(f"{where}: SSH handshake failed ({exc or type(exc).__name__})")
        return ConnectError(f"{where}: cannot connect ({type(exc).__name__}: {exc})")

    def _wrap(self, argv: Sequence[str], sudo: bool | None) -> str:
        use_sudo = self.ssh.sudo if sudo is None else sudo
        if use_sudo and self._endpoint.user != "root":
            argv = ["sudo", "-n", "--", *argv]  # -n: fail instead of waiting for a password
        return shlex.join(argv)

    def run(
        self,
        argv: list[str],
        *,
        sudo: bool | None = None,
        timeout_s: float | None = None,
        check: bool = True,
        stdin: str | None = None,
    ) -> CommandResult:
        """Run ``argv`` on the node; CommandError when ``check`` and it exits non-zero."""
        stdout, stderr, code, duration = self._execute(
            list(argv), sudo=sudo, timeout_s=timeout_s, stdin=stdin.encode() if stdin else None
        )
        result = CommandResult(
            self.name,
            list(argv),
            code,
            stdout.decode("utf-8", errors="replace"),
            stderr.decode("utf-8", errors="replace"),
            duration,
        )
        _log.debug("%s: %s -> %d in %.2fs", self.name, redact(shlex.join(argv)), code, duration)
        if check and not result.ok:
            raise CommandError(self.name, redact(list(argv)), code, redact(result.stderr))
        return result

    def _execute(
        self,
        argv: list[str],
        *,
        sudo: bool | None,
        timeout_s: float | None,
        stdin: bytes | None,
    ) -> tuple[bytes, bytes, int, float]:
        if not argv:
            raise ValueError("argv must name a command")
        timeout = self.ssh.command_timeout_s if timeout_s is None else timeout_s
        client = self._connected()
        started = time.monotonic()
        deadline = started + timeout
        transport = client.get_transport()
        if transport is None:
            raise ConnectError(f"{self._where()}: connection lost before running a command")
        try:
            channel = transport.open_session(timeout=self.ssh.connect_timeout_s)
            channel.exec_command(self._wrap(argv, sudo))
            if stdin is not None:
                channel.sendall(stdin)
            channel.shutdown_write()
            out, err = bytearray(), bytearray()
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    channel.close()
                    raise CommandTimeout(
                        self.name,
                        redact(argv),
                        -1,
                        redact(err.decode("utf-8", errors="replace")),
                        f"no exit after {timeout:g}s; pass a larger timeout_s or raise "
                        "ssh.command_timeout_s",
                    )
                select.select([channel], [], [], min(remaining, 1.0))
                while channel.recv_ready():
                    out += channel.recv(65536)
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                # The exit status can arrive before the last of stderr: stop only once the
                # remote side has also closed its streams (EOF) and nothing is left to read.
                if (
                    channel.exit_status_ready()
                    and (channel.eof_received or channel.closed)
                    and not (channel.recv_ready() or channel.recv_stderr_ready())
                ):
                    break
            code = channel.recv_exit_status()
            channel.close()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ConnectError(
                f"{self._where()}: connection failed while running "
                f"{redact(shlex.join(argv))!r} ({exc or type(exc).__name__})"
            ) from None
        return bytes(out), bytes(err), code, time.monotonic() - started

    def _sftp(self) -> paramiko.SFTPClient:
        try:
            sftp = self._connected().open_sftp()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ConnectError(f"{self._where()}: SFTP unavailable ({exc})") from None
        channel = sftp.get_channel()
        if channel is not None:
            channel.settimeout(self.ssh.command_timeout_s)  # a stalled transfer fails, not hangs
        return sftp

    def _needs_sudo(self) -> bool:
        return self.ssh.sudo and self._endpoint.user != "root"

    def put(self, data: bytes | Path, remote: str, mode: int = 0o644) -> None:
        """Write ``data`` (bytes, or a local file's content) to ``remote`` with ``mode``."""
        content = data.read_bytes() if isinstance(data, Path) else data
        if self._needs_sudo():
            # SFTP runs as the login user; stage in /tmp, then install as root.
            staged = f"/tmp/labkit-{random_names.token_hex(8)}"
            self._sftp_write(content, staged, 0o600)
            try:
                self.run(["install", "-m", f"{mode:o}", staged, remote], sudo=True)
            finally:
                self.run(["rm", "-f", staged], sudo=True, check=False)
            return
        partial = f"{remote}.labkit-partial"
        self._sftp_write(content, partial, mode)
        try:
            with self._sftp() as sftp:
                sftp.posix_rename(partial, remote)
        except OSError as exc:
            raise CommandError(self.name, ["sftp-rename", partial, remote], 1, str(exc)) from None

    def _sftp_write(self, content: bytes, remote: str, mode: int) -> None:
        try:
            with self._sftp() as sftp, sftp.open(remote, "wb") as file:
                file.write(content)
                file.chmod(mode)
        except OSError as exc:
            raise CommandError(
                self.name,
                ["sftp-put", remote],
                1,
                exc.strerror or str(exc),
                f"does {posixpath.dirname(remote) or '/'} exist and is it writable?",
            ) from None

    def get(self, remote: str) -> bytes:
        """The content of the node's file ``remote``."""
        if self._needs_sudo():
            stdout, stderr, code, _ = self._execute(
                ["cat", "--", remote], sudo=True, timeout_s=None, stdin=None
            )
            if code != 0:
                raise CommandError(
                    self.name, ["cat", remote], code, stderr.decode(errors="replace")
                )
            return stdout
        try:
            with self._sftp() as sftp, sftp.open(remote, "rb") as file:
                return bytes(file.read())
        except OSError as exc:
            raise CommandError(
                self.name, ["sftp-get", remote], 1, exc.strerror or str(exc)
            ) from None

    def close(self) -> None:
        """Close the connection (a later command reconnects)."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def __enter__(self) -> Host:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def attempt_each(names: Sequence[str], function: Callable[[str], T]) -> dict[str, T | LabkitError]:
    """Call ``function`` for every node name in parallel; each value is a result or its error.

    A ``LabkitError`` is the node's value; anything else is a bug and propagates.
    """
    if not names:
        return {}

    def one(name: str) -> T | LabkitError:
        try:
            return function(name)
        except LabkitError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        outcomes = list(pool.map(one, names))
    return dict(zip(names, outcomes, strict=True))


class Group:
    """Several hosts: run the same thing on all in parallel, then one error for all failures."""

    def __init__(self, hosts: Sequence[Host]) -> None:
        self.hosts = list(hosts)

    @classmethod
    def from_lab(cls, lab: Lab, names: Sequence[str] | None = None) -> Group:
        """Hosts for the lab's nodes (all, or those named); refuses non-allowed addresses."""
        nodes = [lab.node(name) for name in names] if names is not None else lab.nodes
        return cls([Host(node, lab.ssh, lab) for node in nodes])

    @property
    def names(self) -> list[str]:
        """Node names in order."""
        return [host.name for host in self.hosts]

    def __iter__(self) -> Iterator[Host]:
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)

    def __getitem__(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise ConfigError(f"no host {name!r} in this group; hosts: {self.names}")

    def attempt(self, function: Callable[[Host], T]) -> dict[str, T | LabkitError]:
        """Call ``function`` on every host in parallel; each value is a result or its error."""
        by_name = {host.name: host for host in self.hosts}
        return attempt_each(self.names, lambda name: function(by_name[name]))

    def map(self, function: Callable[[Host], T], argv: list[str] | None = None) -> dict[str, T]:
        """Call ``function`` on every host in parallel; one GroupError names every failure."""
        outcomes = self.attempt(function)
        failures = {name: v for name, v in outcomes.items() if isinstance(v, LabkitError)}
        if failures:
            kind = (
                GroupConnectError
                if all(isinstance(v, ConnectError) for v in failures.values())
                else GroupError
            )
            raise kind(argv or [], failures)
        return {name: v for name, v in outcomes.items() if not isinstance(v, LabkitError)}

    def run(
        self,
        argv: list[str],
        *,
        sudo: bool | None = None,
        timeout_s: float | None = None,
        check: bool = True,
        stdin: str | None = None,
    ) -> dict[str, CommandResult]:
        """``Host.run`` on every host in parallel; results by node name."""
        return self.map(
            lambda host: host.run(argv, sudo=sudo, timeout_s=timeout_s, check=check, stdin=stdin),
            redact(list(argv)),
        )

    def close(self) -> None:
        """Close every host's connection."""
        for host in self.hosts:
            host.close()

    def __enter__(self) -> Group:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


@contextmanager
def open_hosts(lab: Lab) -> Iterator[dict[str, Host]]:
    """SSH hosts for every node of ``lab`` by name (closed on exit); connections open lazily.

    On the sandbox, each node is reached where its sshd really listens (the sandbox's records).
    """
    reach = lab
    if lab.kind == "sandbox" and lab.sandbox is not None:
        from labkit.sandbox.nodes import nodes_lab  # noqa: PLC0415 - sandbox labs only

        reach = nodes_lab(lab, lab.path(lab.sandbox.state_dir))
    group = Group.from_lab(reach)
    try:
        yield {host.name: host for host in group}
    finally:
        group.close()
