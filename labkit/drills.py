"""Failure drills under load: break one part of the lab on purpose, measure, put it back.

A drill runs the mixed scenario (100 redirects to 1 create) open-loop at
``drills.rate_rps`` with the engine's per-request trace on, injects its fault
``drills.fault_at_s`` into the measured part, and measures from the load's own
record: the error window (first to last failed request after the fault), the time
to the first success and to a P99 back under the target, failures by category,
throughput/errors/P99 per half second, and, for writes, every short URL the
service acknowledged, read back afterwards (lost ones listed). The failover is
also timed from the components themselves (Sentinel's ``+switch-master`` on its
pub/sub channel; PostgreSQL's timeline in ``pg_control_checkpoint()``). Then the
lab's topology is restored and the phase 2 checks prove it.

On the sandbox faults are real process and link actions. On a cluster they would
go through the cluster layer (pod delete, cordon) behind ``apply`` and a typed
confirmation naming the lab; that layer is not there yet, so a cluster drill is a
``skip`` that says so.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labkit import stores
from labkit.errors import ConfigError, ConnectError, LabkitError
from labkit.load.engine import run_load
from labkit.load.result import LoadResult
from labkit.load.scenarios import build_workload
from labkit.load.schedule import Schedule
from labkit.load.target import resolve_target
from labkit.load.trace import Trace
from labkit.params import Lab
from labkit.results import record

__all__ = ["SCENARIOS", "DrillOutcome", "measure", "plan", "run", "run_drill", "table"]

SCENARIOS = {
    "redis-master": "SIGKILL the Redis master; the Sentinels promote a replica",
    "postgres-primary": "SIGKILL the PostgreSQL primary; a supervisor step promotes the standby",
    "shortener-worker": "SIGKILL one shortener worker process; its supervisor starts another",
    "node-cut": "a node's network link down (its namespace cut off), then up again",
}
_NS = 1_000_000_000
_BUCKET_S = 0.5
_WRITE = "create"
_SETTLE_S = 30.0  # how long a failover may take before the drill says it did not happen
_READ_ATTEMPTS = 3  # a read-back answered 5xx is asked again (a pool connection to the old server)
_SATURATED = 10  # P99 before the fault above this many times the target: the lab was queueing


@dataclass
class DrillOutcome:
    """One drill: the fault, what the load saw, the failover's own timing, the restoration."""

    scenario: str
    lab: str
    status: str = "done"  # done | skip | failed (the drill itself could not be completed)
    reason: str = ""
    rate_rps: float = 0.0
    duration_s: float = 0.0
    fault: dict[str, Any] = field(default_factory=dict)
    measured: dict[str, Any] = field(default_factory=dict)
    timeline: list[dict[str, float]] = field(default_factory=list)
    writes: dict[str, Any] = field(default_factory=dict)
    failover: dict[str, Any] = field(default_factory=dict)
    restored: dict[str, Any] = field(default_factory=dict)
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    load: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The results.json ``drills`` entry."""
        return {
            "kind": "drill",
            "scenario": self.scenario,
            "what": SCENARIOS.get(self.scenario, ""),
            "lab": self.lab,
            "status": self.status,
            "reason": self.reason,
            "rate_rps": self.rate_rps,
            "duration_s": self.duration_s,
            "fault": self.fault,
            "measured": self.measured,
            "timeline": self.timeline,
            "writes": self.writes,
            "failover": self.failover,
            "restored": self.restored,
            "verdicts": self.verdicts,
            "load": self.load,
        }

    @property
    def ok(self) -> bool:
        """The drill ran, every verdict held and the lab was restored."""
        return (
            self.status == "done"
            and all(verdict["ok"] for verdict in self.verdicts)
            and bool(self.restored.get("ok"))
        )

    def summary(self) -> str:
        """What broke, for how long, what was lost, and whether the lab is whole again."""
        if self.status != "done":
            return f"drill {self.scenario} on {self.lab}: {self.status.upper()}: {self.reason}"
        m, w, f = self.measured, self.writes, self.failover
        lines = [
            f"drill {self.scenario} on {self.lab}: {self.fault.get('action', '')}",
            f"  load: mixed at {self.rate_rps:g} req/s for {self.duration_s:g}s, fault at "
            f"{self.fault.get('at_s', 0):.2f}s; {m.get('requests', 0)} requests, "
            f"{m.get('failed', 0)} failed after the fault {m.get('failed_by_category') or ''}",
            f"  error window {_seconds(m.get('error_window_s'))}; first success after the fault "
            f"{_seconds(m.get('first_success_s'))}; P99 back under {m.get('p99_target_ms')} ms "
            f"after {_seconds(m.get('p99_recovered_s'))} (P99 before the fault "
            f"{m.get('p99_before_ms')} ms)",
            *(
                [
                    f"  NOTE: the lab was saturated before the fault (P99 {m.get('p99_before_ms')} "
                    f"ms at {self.rate_rps:g} req/s): the figures after it mix the fault with "
                    "the backlog; a lower drills.rate_rps separates them"
                ]
                if m.get("saturated_before_fault")
                else []
            ),
            f"  writes: {w.get('acknowledged', 0)} acknowledged, {w.get('lost', 0)} lost "
            f"{w.get('lost_codes') or ''}",
            f"  failover: {f.get('summary', 'none')}",
            f"  restored: {'yes' if self.restored.get('ok') else 'NO'} "
            f"({'; '.join(self.restored.get('actions', [])) or 'nothing to do'}); "
            f"phase 2 checks {self.restored.get('checks', {})}",
        ]
        lines += [
            f"  {'PASS' if v['ok'] else 'FAIL'}  {v['what']}: {v['measured']} "
            f"(expected {v['expected']})"
            for v in self.verdicts
        ]
        return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "never (not within the drill)" if value is None else f"{value:.2f}s"


# -- measuring ------------------------------------------------------------------------------


def _p99_ms(latency_us: np.ndarray[Any, Any]) -> float:
    if not len(latency_us):
        return 0.0
    return round(float(np.percentile(latency_us, 99)) / 1000, 3)


def measure(trace: Trace, fault_ns: int, target_ms: float) -> dict[str, Any]:
    """The drill's figures from a trace and the fault's time (ns from t0, as the trace's)."""
    failed = trace.failed
    after = trace.done_ns >= fault_ns
    failures = np.flatnonzero(failed & after)
    latency_us = (trace.done_ns - trace.intended_ns) // 1000
    before = ~after & ~failed
    result: dict[str, Any] = {
        "requests": len(trace),
        "failed": len(failures),
        "failed_before_fault": int(np.count_nonzero(failed & ~after)),
        "failed_by_category": trace.failure_categories(fault_ns),
        "p99_target_ms": target_ms,
        "p99_before_ms": _p99_ms(latency_us[before]),
        "p99_after_ms": _p99_ms(latency_us[after & ~failed]),
        "error_window_s": 0.0,
        "first_failure_s": None,
        "last_failure_s": None,
    }
    if len(failures):
        first, last = trace.done_ns[failures[0]], trace.done_ns[failures[-1]]
        result["error_window_s"] = round((last - first) / _NS, 3)
        result["first_failure_s"] = round((first - fault_ns) / _NS, 3)
        result["last_failure_s"] = round((last - fault_ns) / _NS, 3)
    # The first success sent once requests had begun to fail (or after the fault, if none did).
    start = int(trace.intended_ns[failures].min()) if len(failures) else fault_ns
    sent_after = np.flatnonzero((trace.intended_ns >= max(start, fault_ns)) & ~failed)
    result["first_success_s"] = (
        round((int(trace.done_ns[sent_after].min()) - fault_ns) / _NS, 3)
        if len(sent_after)
        else None
    )
    result["p99_recovered_s"] = _recovered(trace.per_second(_BUCKET_S), fault_ns, target_ms)
    # A lab already queueing before the fault mixes its backlog into every figure after it.
    result["saturated_before_fault"] = result["p99_before_ms"] > _SATURATED * target_ms
    return result


def _recovered(rows: list[dict[str, float]], fault_ns: int, target_ms: float) -> float | None:
    """Seconds from the fault to the end of the last bucket with failures or P99 over target
    (0 when none after the fault was bad; None when the last bucket of the run still was)."""
    fault_s = fault_ns / _NS
    late = [row for row in rows if row["t_s"] + _BUCKET_S > fault_s]
    bad = [row for row in late if row["failed"] or row["p99_ms"] > target_ms]
    if not bad:
        return 0.0
    if late and bad[-1] is late[-1]:
        return None
    return round(bad[-1]["t_s"] + _BUCKET_S - fault_s, 3)


# -- faults ---------------------------------------------------------------------------------


class _Fault:
    """A fault on the sandbox: prepare, inject, follow the failover, restore."""

    def __init__(self, lab: Lab, state_dir: Path, progress: Callable[[str], None]) -> None:
        self.lab, self.state_dir, self.progress = lab, state_dir, progress
        self.injected_ns = 0

    def prepare(self) -> None:
        """Read what the fault needs before the load starts."""

    def inject(self) -> str:
        """Break it now; returns what was done."""
        raise NotImplementedError

    def follow(self) -> None:
        """While the load still runs: whatever the lab's own failover step is."""

    def failover(self) -> dict[str, Any]:
        """The failover as the components report it (times in s from the fault)."""
        return {"summary": "no failover: nothing to promote"}

    def restore(self) -> list[str]:
        """The lab's topology back as params describe it; returns what was done."""
        return []

    def close(self) -> None:
        """Stop anything the fault started (listeners)."""


class _SentinelListener(threading.Thread):
    """Records when a Sentinel announces ``+sdown``, ``+odown`` and ``+switch-master``."""

    CHANNELS = ("+sdown", "+odown", "+switch-master")

    def __init__(self, lab: Lab, port: int) -> None:
        super().__init__(daemon=True, name="sentinel-listener")
        client = stores.lab_redis(lab, stores.Endpoint(lab.redis.host, port), sentinel=True)
        self.subscription = stores.Subscription(client, self.CHANNELS)
        self.events: list[tuple[int, str, str]] = []
        self.problem = ""
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                message = self.subscription.next(timeout_s=0.2)
            except ConnectError as exc:
                self.problem = str(exc)
                return
            if message is not None:
                self.events.append((time.monotonic_ns(), *message))

    def close(self) -> None:
        self.stop.set()
        self.join(timeout=2)
        self.subscription.close()


class _RedisMaster(_Fault):
    def prepare(self) -> None:
        from labkit.sandbox import redis as sandbox_redis  # noqa: PLC0415

        if not self.lab.redis.sentinel_ports:
            raise ConfigError(f"lab {self.lab.name}: redis.sentinel_ports is empty; no failover")
        named = sandbox_redis.sentinel_master(self.lab, self.lab.redis.sentinel_ports[0])
        if named is None:
            raise LabkitError("redis-master drill: the Sentinels name no master; is Redis up?")
        self.port = named[1]
        self.listener = _SentinelListener(self.lab, self.lab.redis.sentinel_ports[0])
        self.listener.start()

    def inject(self) -> str:
        from labkit.sandbox import processes  # noqa: PLC0415
        from labkit.sandbox import redis as sandbox_redis  # noqa: PLC0415

        process = sandbox_redis.managed(self.state_dir, f"redis-{self.port}")
        pid = process.pid
        if pid is None:
            raise LabkitError(f"redis-master drill: redis-{self.port} is not running")
        processes.kill(process, pid)
        return f"SIGKILL redis-{self.port} (pid {pid}), the master the Sentinels named"

    def follow(self) -> None:
        deadline = time.monotonic() + _SETTLE_S
        while time.monotonic() < deadline and not self._switch():
            time.sleep(0.05)

    def _switch(self) -> tuple[int, str, str] | None:
        return next((e for e in self.listener.events if e[1] == "+switch-master"), None)

    def failover(self) -> dict[str, Any]:
        def at(channel: str) -> float | None:
            event = next((e for e in self.listener.events if e[1] == channel), None)
            return round((event[0] - self.injected_ns) / _NS, 3) if event else None

        switch = self._switch()
        figures = {
            "source": f"Sentinel pub/sub on port {self.lab.redis.sentinel_ports[0]}",
            "down_after_ms": self.lab.redis.down_after_ms,
            "sdown_s": at("+sdown"),
            "odown_s": at("+odown"),
            "promoted_s": at("+switch-master"),
            "evidence": switch[2] if switch else "",
        }
        figures["summary"] = (
            f"+switch-master {figures['promoted_s']}s after the kill ({switch[2]})"
            if switch
            else f"no +switch-master within {_SETTLE_S:.0f}s"
            + (f" (listener: {self.listener.problem})" if self.listener.problem else "")
        )
        return figures

    def restore(self) -> list[str]:
        from labkit.sandbox import redis as sandbox_redis  # noqa: PLC0415

        master = sandbox_redis.rejoin(self.lab, self.state_dir, self.port)
        return [f"redis-{self.port} restarted, now a replica of {master}"]

    def close(self) -> None:
        if hasattr(self, "listener"):
            self.listener.close()


class _PostgresPrimary(_Fault):
    def prepare(self) -> None:
        from labkit.sandbox import postgres  # noqa: PLC0415

        if self.lab.postgres.standby_port is None:
            raise ConfigError(f"lab {self.lab.name}: postgres.standby_port is not set; no standby")
        if postgres.in_recovery(self.lab, self.state_dir, "primary") is not False:
            raise LabkitError(
                f"postgres-primary drill: the server on {self.lab.postgres.port} is not the "
                "primary; restore the sandbox first (`labkit sandbox down` then `up`)"
            )
        self.timeline_before = postgres.timeline(self.lab, self.state_dir, "standby")
        self.detected_ns = self.promoted_ns = 0
        self.timeline_after = 0

    def inject(self) -> str:
        from labkit.sandbox import postgres  # noqa: PLC0415

        pid = postgres.kill(self.state_dir, "primary")
        return (
            f"SIGKILL postgres-primary (pid {pid}, port {self.lab.postgres.port}) and its backends"
        )

    def follow(self) -> None:
        from labkit.sandbox import postgres  # noqa: PLC0415

        self.detected_ns, self.promoted_ns = postgres.failover(self.lab, self.state_dir)
        self.timeline_after = postgres.timeline(
            self.lab, self.state_dir, "standby", checkpoint=True
        )

    def failover(self) -> dict[str, Any]:
        detected = round((self.detected_ns - self.injected_ns) / _NS, 3)
        promoted = round((self.promoted_ns - self.injected_ns) / _NS, 3)
        return {
            "source": "sandbox supervisor step (pg_promote) and pg_control_checkpoint()",
            "detected_s": detected,
            "promoted_s": promoted,
            "timeline_before": self.timeline_before,
            "timeline_after": self.timeline_after,
            "summary": (
                f"primary seen lost {detected}s after the kill, standby promoted at {promoted}s, "
                f"timeline {self.timeline_before} -> {self.timeline_after}"
            ),
        }

    def restore(self) -> list[str]:
        from labkit.sandbox import postgres  # noqa: PLC0415

        return postgres.restore_topology(self.lab, self.state_dir, self.progress)


def _children(pid: int) -> set[int]:
    """The worker processes of ``pid`` (uvicorn's, spawned by multiprocessing; its resource
    tracker, another child, is no worker)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[-1].split()[1]) != pid:
            continue
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in command:
            found.add(int(entry.name))
    return found


class _ShortenerWorker(_Fault):
    def prepare(self) -> None:
        from labkit.sandbox import processes  # noqa: PLC0415
        from labkit.sandbox.supervisor import SHORTENER  # noqa: PLC0415

        process = processes.Managed(
            SHORTENER,
            self.state_dir / "run" / f"{SHORTENER}.pid",
            self.state_dir / "logs" / f"{SHORTENER}.log",
        )
        pid = process.pid
        if pid is None:
            raise LabkitError("shortener-worker drill: the shortener is not running")
        self.parent = pid
        self.workers = _children(pid)
        if len(self.workers) < 2:
            raise LabkitError(
                f"shortener-worker drill: the shortener runs {len(self.workers)} worker "
                "process(es); with fewer than 2 killing one is an outage, not this drill "
                "(set shlink.workers >= 2)"
            )
        self.replaced_ns = 0

    def inject(self) -> str:
        self.victim = min(self.workers)
        os.kill(self.victim, 9)
        return f"SIGKILL shortener worker pid {self.victim} (1 of {len(self.workers)})"

    def follow(self) -> None:
        deadline = time.monotonic() + _SETTLE_S
        while time.monotonic() < deadline:
            now = _children(self.parent)
            if len(now - self.workers) >= 1 and len(now) >= len(self.workers):
                self.replaced_ns = time.monotonic_ns()
                return
            time.sleep(0.05)

    def failover(self) -> dict[str, Any]:
        if not self.replaced_ns:
            return {"summary": f"no replacement worker within {_SETTLE_S:.0f}s"}
        replaced = round((self.replaced_ns - self.injected_ns) / _NS, 3)
        return {
            "source": "the shortener's process tree (uvicorn's supervisor)",
            "replaced_s": replaced,
            "summary": f"a replacement worker process {replaced}s after the kill",
        }

    def restore(self) -> list[str]:
        now = _children(self.parent)
        if len(now) < len(self.workers):
            raise LabkitError(
                f"shortener-worker drill: {len(now)} of {len(self.workers)} workers running; "
                "`labkit sandbox down` then `up` restarts the service"
            )
        return [f"{len(now)} worker processes running again"]


class _NodeCut(_Fault):
    def prepare(self) -> None:
        from labkit.sandbox import nodes  # noqa: PLC0415

        if os.geteuid() != 0:
            raise _Skip("node-cut needs root: without it the sandbox's nodes share loopback")
        self.node = self.lab.nodes[-1]
        self.link = nodes.veth_name(self.lab, self.node)
        self.unreachable_ns = self.reachable_ns = 0

    def _ip(self, state: str) -> None:
        import subprocess  # noqa: PLC0415

        completed = subprocess.run(
            ["ip", "link", "set", self.link, state],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if completed.returncode != 0:
            raise LabkitError(
                f"node-cut drill: 'ip link set {self.link} {state}' exited "
                f"{completed.returncode} ({completed.stderr.strip()})"
            )

    def _reachable(self) -> bool:
        with (
            contextlib.suppress(OSError),
            socket.create_connection((self.node.address, self.node.ssh_port), timeout=0.3),
        ):
            return True
        return False

    def inject(self) -> str:
        self._ip("down")
        return f"link {self.link} of {self.node.name} ({self.node.address}) down"

    def follow(self) -> None:
        if not self._reachable():
            self.unreachable_ns = time.monotonic_ns()
        time.sleep(self.lab.drills.cut_s)
        self._ip("up")
        deadline = time.monotonic() + _SETTLE_S
        while time.monotonic() < deadline:
            if self._reachable():
                self.reachable_ns = time.monotonic_ns()
                return
            time.sleep(0.1)

    def failover(self) -> dict[str, Any]:
        back = round((self.reachable_ns - self.injected_ns) / _NS, 3) if self.reachable_ns else None
        return {
            "source": f"TCP connects to {self.node.address}:{self.node.ssh_port} (sshd)",
            "unreachable_confirmed": bool(self.unreachable_ns),
            "cut_s": self.lab.drills.cut_s,
            "reachable_again_s": back,
            "summary": (
                f"{self.node.name} unreachable while cut, reachable again {back}s after the cut "
                "(no data-path component runs on a sandbox node, so the load should not notice)"
            ),
        }

    def restore(self) -> list[str]:
        if not self.reachable_ns:
            self._ip("up")
            raise LabkitError(f"node-cut drill: {self.node.name} not reachable after link up")
        return [f"link {self.link} up, {self.node.name} answering on ssh again"]


class _Skip(Exception):
    """The drill cannot run here (the reason is its message)."""


_FAULTS: dict[str, type[_Fault]] = {
    "redis-master": _RedisMaster,
    "postgres-primary": _PostgresPrimary,
    "shortener-worker": _ShortenerWorker,
    "node-cut": _NodeCut,
}


# -- the drill ------------------------------------------------------------------------------


def plan(lab: Lab, scenarios: list[str] | None = None) -> Any:
    """What ``run_drill`` would do per scenario (a DataFrame): fault, load, when, restore."""
    import pandas as pd  # noqa: PLC0415

    settings = lab.drills
    rows = [
        {
            "scenario": name,
            "fault": SCENARIOS[name],
            "load": f"mixed at {settings.rate_rps:g} req/s for {settings.duration_s:g}s "
            f"(+{settings.warmup_s:g}s warm-up)",
            "fault at s": settings.fault_at_s,
            "runs on": "sandbox processes" if lab.kind == "sandbox" else "skip: no cluster layer",
        }
        for name in scenarios or list(SCENARIOS)
    ]
    return pd.DataFrame(rows)


def _read_back(lab: Lab, codes: list[str]) -> tuple[list[str], str]:
    """Codes the service no longer knows (404), and what went wrong reading ("" if nothing)."""
    from labkit.shlink import ShlinkClient, ShlinkError  # noqa: PLC0415

    lost = []
    try:
        with ShlinkClient.from_lab(lab) as client:
            for code in codes:
                for attempt in range(_READ_ATTEMPTS):
                    try:
                        client.get(code)
                    except ShlinkError as exc:
                        if exc.status == 404:
                            lost.append(code)
                        elif exc.status < 500 or attempt == _READ_ATTEMPTS - 1:
                            raise
                        else:  # a pool connection to the old server failing once: ask again
                            time.sleep(0.2)
                            continue
                    break
    except LabkitError as exc:
        return lost, str(exc)
    return lost, ""


def _settle(lab: Lab, wanted: int = 40, timeout_s: float = _SETTLE_S) -> str:
    """Probe the service's health until ``wanted`` answers in a row are 200.

    After a failover each worker's pool still holds connections to the old server;
    each fails once (a 503) and is replaced, so a run of successes means they are gone.
    Every probe opens a new connection, so the probes reach every worker.
    """
    import httpx  # noqa: PLC0415

    deadline = time.monotonic() + timeout_s
    streak = probes = 0
    with httpx.Client(base_url=lab.shlink.base_url, timeout=2.0, trust_env=False) as client:
        while streak < wanted:
            if time.monotonic() >= deadline:
                raise LabkitError(
                    f"drill: {lab.shlink.base_url}/rest/health not 200 {wanted} times in a row "
                    f"within {timeout_s:.0f}s ({probes} probes); see the shortener's log in the "
                    "sandbox's logs/ folder"
                )
            probes += 1
            try:
                response = client.get("/rest/health", headers={"Connection": "close"})
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            streak = streak + 1 if ok else 0
            if not ok:
                time.sleep(0.05)
    return f"service healthy {wanted} probes in a row ({probes} probes)"


def _phase2(lab: Lab) -> dict[str, Any]:
    from labkit.checks import run_checks  # noqa: PLC0415

    results = run_checks(lab, phase=2).to_list()
    counts: dict[str, int] = {}
    for row in results:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    bad = [
        f"{row['id']} {row['status']}: {row['observed']}"
        for row in results
        if row["status"] in ("fail", "error")
    ]
    return {"counts": counts, "problems": bad}


def _verdicts(outcome: DrillOutcome, lab: Lab) -> list[dict[str, Any]]:
    verdicts = []
    measured, writes = outcome.measured, outcome.writes
    if outcome.scenario == "redis-master":
        limit = lab.redis.down_after_ms / 1000 + 2
        verdicts.append(
            {
                "what": "error window",
                "expected": f"<= down-after-milliseconds + 2 s = {limit:g}s",
                "measured": f"{measured['error_window_s']}s",
                "ok": measured["error_window_s"] <= limit,
            }
        )
        verdicts.append(
            {
                "what": "acknowledged creates lost",
                "expected": "0",
                "measured": str(writes.get("lost", "unread")),
                "ok": writes.get("lost") == 0 and not writes.get("problem"),
            }
        )
    verdicts.append(
        {
            "what": "lab restored (phase 2 checks)",
            "expected": "no check fails",
            "measured": ", ".join(
                f"{n} {s}" for s, n in outcome.restored.get("checks", {}).items()
            ),
            "ok": bool(outcome.restored.get("ok")),
        }
    )
    return verdicts


def run_drill(
    lab: Lab,
    scenario: str,
    *,
    apply: bool = False,
    confirm: str = "",
    progress: Callable[[str], None] = print,
) -> DrillOutcome:
    """Run one drill: load, fault, measure, restore, check; recorded under ``drills``.

    On the sandbox it runs by default (it breaks and restores the local lab only). On
    any other lab it needs ``apply`` and ``confirm`` equal to the lab's name, and then
    says ``skip``: the cluster layer its faults need is not there yet.
    """
    if scenario not in SCENARIOS:
        raise ConfigError(f"unknown drill {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    outcome = DrillOutcome(scenario, lab.name)
    if lab.kind != "sandbox":
        if not apply or confirm != lab.name:
            outcome.status, outcome.reason = (
                "skip",
                (
                    f"a drill breaks lab {lab.name} on purpose: it needs apply and the typed "
                    f"confirmation {lab.name!r}"
                ),
            )
        else:
            outcome.status, outcome.reason = (
                "skip",
                (
                    "a cluster drill goes through the cluster layer (pod delete, cordon), which "
                    "labkit does not have yet"
                ),
            )
        record("drills", [outcome.to_dict()])
        return outcome
    try:
        _drill(lab, outcome, progress)
    except _Skip as exc:
        outcome.status, outcome.reason = "skip", str(exc)
    except LabkitError as exc:
        # Recorded, then raised: the lab may be left broken, and a run must not go on as if not.
        outcome.status, outcome.reason = "failed", str(exc)
        record("drills", [outcome.to_dict()])
        raise
    record("drills", [outcome.to_dict()])
    return outcome


def _drill(lab: Lab, outcome: DrillOutcome, progress: Callable[[str], None]) -> None:
    from labkit.sandbox import Sandbox  # noqa: PLC0415

    sandbox = Sandbox(lab)
    status = sandbox.status()
    if not status["healthy"]:
        sick = [c["name"] for c in status["components"] if not c.get("healthy")]
        raise LabkitError(
            f"drill {outcome.scenario}: sandbox {lab.name} is not healthy ({', '.join(sick)}); "
            "run `labkit sandbox up` (a drill starts from a whole lab)"
        )
    settings = lab.drills
    fault = _FAULTS[outcome.scenario](lab, sandbox.state_dir, progress)
    target = resolve_target(lab.shlink.base_url, lab.allow_list)
    workload = build_workload(lab, "mixed", target, progress)
    outcome.rate_rps, outcome.duration_s = settings.rate_rps, settings.duration_s
    try:
        fault.prepare()
        result = _load_with_fault(lab, fault, target, workload, outcome, progress)
    finally:
        fault.close()
    trace = result.trace
    assert trace is not None  # a traced run always has one
    fault_ns = fault.injected_ns - trace.t0_ns
    outcome.fault["at_s"] = round(fault_ns / _NS, 3)
    outcome.measured = measure(trace, fault_ns, lab.targets.redirect_p99_ms)
    outcome.timeline = trace.per_second(_BUCKET_S)
    outcome.failover = fault.failover()
    load = result.to_dict()
    outcome.load = {
        key: load[key]
        for key in ("achieved_rps", "requests", "errors", "generator_limited", "generator_reason")
    }
    settled = _settle(lab)
    codes = [code for _, code in trace.acknowledged.get(_WRITE, [])]
    progress(f"reading back {len(codes)} acknowledged creates")
    lost, problem = _read_back(lab, codes)
    progress("restoring the lab's topology")
    actions = fault.restore()
    actions.append(_settle(lab))
    lost_after, problem_after = _read_back(lab, codes)
    outcome.writes = {
        "acknowledged": len(codes),
        "lost": len(lost),
        "lost_codes": lost,
        "lost_after_restore": len(lost_after),
        "lost_after_restore_codes": lost_after,
        "problem": problem or problem_after,
        "read_after": settled,
    }
    progress("phase 2 checks")
    checks = _phase2(lab)
    outcome.restored = {
        "ok": not checks["problems"],
        "actions": actions,
        "checks": checks["counts"],
        "problems": checks["problems"],
    }
    outcome.verdicts = _verdicts(outcome, lab)


def _load_with_fault(
    lab: Lab,
    fault: _Fault,
    target: Any,
    workload: Any,
    outcome: DrillOutcome,
    progress: Callable[[str], None],
) -> LoadResult:
    """The traced load in a thread; the fault injected on time, its failover followed."""
    settings = lab.drills
    started = threading.Event()
    t0: list[int] = []
    results: list[LoadResult] = []
    errors: list[BaseException] = []

    def on_start(at_ns: int) -> None:
        t0.append(at_ns)
        started.set()

    def load() -> None:
        try:
            results.append(
                run_load(
                    target,
                    workload,
                    Schedule.constant(settings.rate_rps, settings.duration_s, settings.warmup_s),
                    name=f"drill-{outcome.scenario}",
                    trace=True,
                    capture=(_WRITE,),
                    on_start=on_start,
                )
            )
        except BaseException as exc:  # handed to the caller's thread below
            errors.append(exc)
            started.set()

    progress(
        f"drill {outcome.scenario}: mixed load at {settings.rate_rps:g} req/s, fault at "
        f"{settings.fault_at_s:g}s of {settings.duration_s:g}s"
    )
    thread = threading.Thread(target=load, name="drill-load", daemon=True)
    thread.start()
    if not started.wait(timeout=120) or errors:
        thread.join(timeout=30)
        raise LabkitError(
            f"drill {outcome.scenario}: the load did not start: {errors or 'timeout'}"
        )
    due_ns = t0[0] + int((settings.warmup_s + settings.fault_at_s) * _NS)
    time.sleep(max(0.0, (due_ns - time.monotonic_ns()) / _NS))
    fault.injected_ns = time.monotonic_ns()
    outcome.fault = {"action": fault.inject()}
    progress(f"fault: {outcome.fault['action']}")
    fault.follow()
    thread.join(timeout=settings.warmup_s + settings.duration_s + 120)
    if errors:
        raise LabkitError(f"drill {outcome.scenario}: the load broke: {errors[0]}") from errors[0]
    if not results:
        raise LabkitError(f"drill {outcome.scenario}: the load did not finish in time")
    return results[0]


# -- notebooks: one call per cell --------------------------------------------------------------


def run(
    lab: Lab,
    scenarios: list[str] | None = None,
    apply: bool = False,
    confirm: str = "",
) -> list[DrillOutcome]:
    """Each drill in turn, its summary printed and its timeline charted (for the report too)."""
    from labkit.report import drill_timeline_figure, show_figure  # noqa: PLC0415

    outcomes = []
    for scenario in scenarios or list(SCENARIOS):
        outcome = run_drill(
            lab, scenario, apply=apply, confirm=confirm, progress=lambda message: None
        )
        outcomes.append(outcome)
        print(outcome.summary(), "\n")
        if outcome.status == "done":
            show_figure(drill_timeline_figure(outcome.to_dict()), f"drill-{scenario}")
    return outcomes


def table(outcomes: list[DrillOutcome]) -> Any:
    """One row per drill: error window, recovery, writes lost, failover, restored (DataFrame)."""
    import pandas as pd  # noqa: PLC0415

    rows = []
    for outcome in outcomes:
        measured, writes = outcome.measured, outcome.writes
        rows.append(
            {
                "drill": outcome.scenario,
                "status": outcome.status
                if outcome.status != "done"
                else ("held" if outcome.ok else "FAILED"),
                "failed requests": measured.get("failed"),
                "error window s": measured.get("error_window_s"),
                "first success s": measured.get("first_success_s"),
                "P99 back under target s": measured.get("p99_recovered_s"),
                "writes acknowledged": writes.get("acknowledged"),
                "writes lost": writes.get("lost"),
                "failover": outcome.failover.get("summary", outcome.reason),
                "restored": outcome.restored.get("ok"),
            }
        )
    return pd.DataFrame(rows)
