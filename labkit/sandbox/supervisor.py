"""The sandbox supervisor: up, down and status of every component, state under one directory.

Order of ``up``: secrets (generated once, mode 600, into the files the params
name), the SSH nodes, PostgreSQL primary + standby, Redis + Sentinels, then
the Shlink-compatible service. Nodes and the service come from their own
modules (``labkit.sandbox.nodes``, ``labkit.sandbox.shortener``).

One lock file per state directory serialises ``up`` and ``down`` from
several processes (a notebook and a test run, say).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from labkit.errors import ConfigError, LabkitError
from labkit.params import Lab
from labkit.sandbox import monitoring, nodes, postgres, processes, redis
from labkit.sandbox.shortener.config import service_command
from labkit.secrets import Secret, SecretRef, resolve

__all__ = ["SHORTENER", "Sandbox", "ensure_up", "state_dir_of"]

SHORTENER = "shortener"
_LOCK_TIMEOUT_S = 300.0


def state_dir_of(lab: Lab) -> Path:
    """The sandbox's state directory (resolved); a ConfigError for a lab that is no sandbox."""
    if lab.sandbox is None:
        raise ConfigError(
            f"lab {lab.name} is a {lab.kind}, not a sandbox: it has no 'sandbox' section; "
            "use params/local.yaml for the sandbox"
        )
    return lab.path(lab.sandbox.state_dir)


def _ensure_secret_file(lab: Lab, ref: SecretRef, what: str) -> Secret:
    """Resolve a secret; a file that does not exist yet is generated (mode 600) first."""
    if ref.file is not None:
        path = lab.path(ref.file)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_urlsafe(24) + "\n")
        return resolve(SecretRef(file=path))
    try:
        return resolve(ref, lab.base_dir)
    except ConfigError as exc:
        raise ConfigError(f"sandbox {what}: {exc}") from exc


class Sandbox:
    """The local lab of one params file: start, stop and describe its processes."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.state_dir = state_dir_of(lab)

    # -- locking ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with (self.state_dir / "supervisor.lock").open("a") as handle:
            deadline = time.monotonic() + _LOCK_TIMEOUT_S
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LabkitError(
                            f"sandbox {self.state_dir}: another labkit holds its lock for more "
                            f"than {_LOCK_TIMEOUT_S:.0f}s (an 'up' or 'down' in progress?)"
                        ) from None
                    time.sleep(0.1)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- components ------------------------------------------------------------------------

    def _managed(self, name: str) -> processes.Managed:
        return processes.Managed(
            name, self.state_dir / "run" / f"{name}.pid", self.state_dir / "logs" / f"{name}.log"
        )

    def _shortener(self) -> processes.Managed:
        return self._managed(SHORTENER)

    def _start_shortener(self, progress: Callable[[str], None]) -> None:
        if self._shortener().pid is None:
            progress(f"shortener: starting on {self.lab.shlink.base_url}")
            argv, env = service_command(self.lab, self.state_dir)
            processes.start(SHORTENER, argv, self.state_dir, env=env, listens=[self._listen()])
        timeout_s = self.lab.sandbox.startup_timeout_s if self.lab.sandbox else 60.0
        processes.poll_until(
            f"shortener on {self.lab.shlink.base_url}",
            self._shortener_healthy,
            timeout_s,
            self._shortener(),
            interval_s=0.2,
        )

    def _listen(self) -> tuple[str, int]:
        """Where the service listens: the host and port of ``shlink.base_url``."""
        url = urlsplit(self.lab.shlink.base_url)
        return url.hostname or "127.0.0.1", url.port or (443 if url.scheme == "https" else 80)

    def _shortener_healthy(self) -> bool:
        try:
            response = httpx.get(  # straight to loopback, never an environment proxy
                f"{self.lab.shlink.base_url}/rest/health", timeout=2.0, trust_env=False
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def _shortener_status(self) -> list[dict[str, Any]]:
        process = self._shortener()
        entry = processes.describe(
            process, "shortener", self.lab.shlink.base_url, "shlink", self._listen()
        )
        if entry["pid"] is not None:
            entry["healthy"] = self._shortener_healthy()
            entry["detail"] = "GET /rest/health 200" if entry["healthy"] else "health not 200"
        return [entry]

    # -- public API ------------------------------------------------------------------------

    def up(self, progress: Callable[[str], None] = print) -> dict[str, Any]:
        """Start every component not running yet and wait until each is ready; returns status."""
        started = time.monotonic()
        with self._locked():
            password = _ensure_secret_file(self.lab, self.lab.postgres.password, "postgres")
            _ensure_secret_file(self.lab, self.lab.shlink.api_key, "shlink api key")
            nodes.start_nodes(self.lab, self.state_dir, progress)
            postgres.start_postgres(self.lab, self.state_dir, password, progress)
            redis.start_redis(self.lab, self.state_dir, progress)
            self._start_shortener(progress)
            monitoring.start_monitoring(self.lab, self.state_dir, progress)
        progress(f"sandbox {self.lab.name}: up in {time.monotonic() - started:.1f}s")
        return self.status()

    def down(self) -> None:
        """Stop everything this sandbox started (service, Redis, PostgreSQL, nodes); keep data."""
        with self._locked():
            problems: list[str] = []
            steps: list[tuple[str, Callable[[], object]]] = [
                ("monitoring", lambda: monitoring.stop_monitoring(self.lab, self.state_dir)),
                (SHORTENER, lambda: processes.stop(self._shortener())),
                ("redis", lambda: redis.stop_redis(self.lab, self.state_dir)),
                ("postgres", lambda: postgres.stop_postgres(self.state_dir)),
                ("nodes", lambda: nodes.stop_nodes(self.lab, self.state_dir)),
            ]
            for name, step in steps:
                # Keep stopping the rest when one part fails: leave as little running as we can.
                try:
                    step()
                except (LabkitError, OSError) as exc:
                    problems.append(f"{name}: {exc}")
            if problems:
                raise LabkitError(
                    f"sandbox {self.lab.name}: down left problems: " + "; ".join(problems)
                )

    def status(self) -> dict[str, Any]:
        """JSON-ready: every component with pid, address, role, health (crashed ones included)."""
        components: list[dict[str, Any]] = [
            {"kind": "node", "role": "ssh node", **node}
            for node in nodes.nodes_status(self.lab, self.state_dir)
        ]
        components += postgres.postgres_status(self.lab, self.state_dir)
        components += redis.redis_status(self.lab, self.state_dir)
        components += self._shortener_status()
        components += monitoring.monitoring_status(self.lab, self.state_dir)
        return {
            "lab": self.lab.name,
            "state_dir": str(self.state_dir),
            "running": any(entry.get("pid") for entry in components),
            "healthy": bool(components) and all(entry.get("healthy") for entry in components),
            "components": components,
            # Optional parts not run here (a package not installed...), each with the reason.
            "skipped": monitoring.monitoring_skipped(self.lab, self.state_dir),
        }

    @property
    def running(self) -> bool:
        """True when any of the sandbox's processes is alive."""
        return bool(self.status()["running"])

    def restart_redis(self, port: int) -> None:
        """Restart the Redis data node on ``port`` (its data kept): drills and the 2.3.5 check."""
        redis.restart_redis(self.lab, self.state_dir, port)

    def stop_component(self, name: str) -> bool:
        """Stop one supervised process by its status name (e.g. ``redis-63790``): drills."""
        return processes.stop(self._managed(name), timeout_s=15.0)


_BROUGHT_UP = ".brought-up-by-a-run"  # marker: a run, not the user, started this sandbox
_RELEASED = "released"  # the marker's run ended and left the sandbox to the runs still in it


def _holder(pid: int) -> str:
    """How a lease or the marker names a process: its pid and start time (pids are reused)."""
    return f"{pid} {processes.start_time(pid)}"


def _holder_alive(path: Path) -> bool | None:
    """Whether the process ``path`` names still runs; None when the file is gone."""
    try:
        pid_text, _, start_text = path.read_text().partition(" ")
    except FileNotFoundError:
        return None
    pid = int(pid_text) if pid_text.isdigit() else 0
    return bool(pid) and processes.alive(pid) and _holder(pid) == f"{pid} {start_text.strip()}"


def _live_leases(folder: Path) -> list[str]:
    """Leases whose holder is still running (stale ones, left by a crash, are removed)."""
    live = []
    for lease in folder.glob("*.lease"):
        holder = _holder_alive(lease)
        if holder:
            live.append(lease.stem)
        elif holder is False:
            lease.unlink(missing_ok=True)
    return live


def _brought_up_by_a_run(marker: Path) -> bool:
    """True when a run that is still going brought the sandbox up, or released it to others.

    A marker whose run is gone without releasing it was left by a killed run: whoever
    uses the sandbox now (the user, by hand) did not ask a run to take it down.
    """
    try:
        if marker.read_text().strip() == _RELEASED:
            return True
    except FileNotFoundError:
        return False
    return bool(_holder_alive(marker))


@contextlib.contextmanager
def ensure_up(lab: Lab, progress: Callable[[str], None] = print) -> Iterator[Sandbox]:
    """The sandbox up for the block; afterwards left as the user had it.

    Each holder takes a lease under ``<state>/leases``. The sandbox is taken down when
    the last holder leaves and a run (not the user) had brought it up, so overlapping
    runs never pull it away from each other. The marker saying so names the run that
    brought it up (pid and start time); a run that ends while others still hold leases
    releases it to them, and a marker whose run was killed is ignored and removed.
    """
    sandbox = Sandbox(lab)
    folder = sandbox.state_dir / "leases"
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / _BROUGHT_UP
    me = _holder(os.getpid())
    lease = folder / f"{os.getpid()}-{secrets.token_hex(4)}.lease"
    lease.write_text(me + "\n")
    try:
        if not sandbox.running:
            marker.write_text(me + "\n")
        elif not _brought_up_by_a_run(marker):
            marker.unlink(missing_ok=True)  # left by a killed run: not a run's to take down
        sandbox.up(progress)  # inside the try: a failed start-up is taken down again too
        yield sandbox
    finally:
        lease.unlink(missing_ok=True)
        others = _live_leases(folder)
        if others:
            with contextlib.suppress(FileNotFoundError):
                if marker.read_text().strip() == me:  # ours: the last run out takes it down
                    marker.write_text(_RELEASED + "\n")
            progress(f"sandbox {lab.name}: left up, still used by {len(others)} other run(s)")
        elif _brought_up_by_a_run(marker):
            sandbox.down()
            marker.unlink(missing_ok=True)
        else:
            marker.unlink(missing_ok=True)
