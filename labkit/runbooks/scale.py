"""Scale the shortener and measure what it did to throughput.

On the sandbox the shortener is uvicorn with ``shlink.workers`` worker
processes; uvicorn's supervisor adds a worker on ``SIGTTIN`` and retires one on
``SIGTTOU`` without dropping the listening socket, the way ``kubectl scale``
changes a Deployment's replicas without a restart. The runbook measures a short
open-loop redirect load before and after, and by default scales back to what
params say (params are the lasting desired state: the supervisor starts
``shlink.workers`` on the next ``sandbox up``). A worker counts once it holds
its PostgreSQL connection (its start-up opened the pool). On a cluster the
change is the Deployment's ``replicas`` through the cluster layer (skip here).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import psutil

from labkit.errors import LabkitError, WaitTimeout
from labkit.params import Lab
from labkit.runbooks.base import Action, Runbook

__all__ = ["Scale", "scale_workers", "workers"]

_WAIT_S = 30.0
_CLUSTER_REASON = (
    "scaling the Deployment's replicas goes through labkit's cluster layer "
    "(labkit/cluster/), which has no scale step yet"
)


def _master(lab: Lab) -> psutil.Process:
    from labkit.sandbox import processes, state_dir_of  # noqa: PLC0415 - sandbox only
    from labkit.sandbox.supervisor import SHORTENER  # noqa: PLC0415

    state = state_dir_of(lab)
    process = processes.Managed(
        SHORTENER, state / "run" / f"{SHORTENER}.pid", state / "logs" / f"{SHORTENER}.log"
    )
    pid = process.pid
    if pid is None:
        raise LabkitError(
            f"sandbox {lab.name}: the shortener is not running ({process.pidfile}); "
            "run `labkit sandbox up`"
        )
    return psutil.Process(pid)


def workers(lab: Lab) -> tuple[int, int]:
    """(worker processes, of which ready: holding a PostgreSQL connection) of the shortener."""
    children = [
        child
        for child in _master(lab).children()
        if any("spawn_main" in part for part in _cmdline(child))
    ]
    ready = 0
    for child in children:
        try:
            connections = child.net_connections(kind="tcp")
        except psutil.Error:
            continue
        if any(
            c.status == psutil.CONN_ESTABLISHED and c.raddr and c.raddr.port == lab.postgres.port
            for c in connections
        ):
            ready += 1
    return len(children), ready


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def _wait_for(lab: Lab, wanted: int) -> tuple[int, int]:
    deadline = time.monotonic() + _WAIT_S
    seen = workers(lab)
    while seen != (wanted, wanted):
        if time.monotonic() > deadline:
            raise WaitTimeout(
                f"shortener of {lab.name}: {seen[0]} worker(s), {seen[1]} ready, after "
                f"{_WAIT_S:.0f}s; wanted {wanted}; see its log under the sandbox's logs/"
            )
        time.sleep(0.2)
        seen = workers(lab)
    return seen


def scale_workers(lab: Lab, wanted: int) -> tuple[int, int]:
    """Signal the shortener one worker at a time until ``wanted`` serve; returns (from, to)."""
    if wanted < 1:
        raise LabkitError(f"scale to {wanted} workers: the shortener needs at least 1")
    start, _ = workers(lab)
    current = start
    while current != wanted:
        # One signal, then wait for it to land: repeated signals may arrive as one.
        os.kill(_master(lab).pid, signal.SIGTTIN if wanted > current else signal.SIGTTOU)
        current += 1 if wanted > current else -1
        _wait_for(lab, current)
    _wait_for(lab, wanted)
    return start, wanted


class Scale(Runbook):
    """Measure, scale the shortener to ``replicas`` workers, measure, scale back to params."""

    name = "scale"
    title = "Scale Shlink"
    doc = "docs/runbooks/scale-shlink.md"

    def __init__(
        self,
        lab: Lab,
        replicas: int,
        rate: float = 300.0,
        duration_s: float = 3.0,
        restore: bool = True,
    ) -> None:
        super().__init__(lab.name)
        self.lab, self.replicas, self.rate = lab, replicas, rate
        self.duration_s, self.restore = duration_s, restore
        self.loads: dict[str, dict[str, Any]] = {}

    @property
    def configured(self) -> int:
        """What params ask for (workers on the sandbox, replicas on a cluster)."""
        return self.lab.shlink.workers if self.lab.kind == "sandbox" else self.lab.shlink.replicas

    def actions(self) -> list[Action]:
        """Load, scale, load again, scale back."""
        lab = self.lab
        if lab.kind != "sandbox":
            return [
                Action(
                    f"scale the Deployment to {self.replicas} replicas",
                    f"kubectl -n {lab.shlink.namespace} scale deployment/shlink "
                    f"--replicas={self.replicas}",
                    cannot=_CLUSTER_REASON,
                )
            ]
        bench = (
            f"labkit bench --params <lab> --scenario redirect-hit --rate {self.rate:g} "
            f"# {self.duration_s:g}s"
        )
        signal_name = "TTIN" if self.replicas >= self.configured else "TTOU"
        actions = [
            Action(
                f"measure at {self.configured} worker(s)", bench, lambda: self._measure("before")
            ),
            Action(
                f"scale the shortener to {self.replicas} worker(s)",
                f"kill -{signal_name} $(cat run/shortener.pid)  # per worker, one at a time",
                lambda: self._scale(self.replicas),
            ),
            Action(f"measure at {self.replicas} worker(s)", bench, lambda: self._measure("after")),
        ]
        if self.restore:
            actions.append(
                Action(
                    f"scale back to params' {self.configured} worker(s)",
                    "kill -TTIN/-TTOU $(cat run/shortener.pid)  # back to shlink.workers",
                    lambda: self._scale(self.configured),
                    always=True,
                )
            )
        return actions

    def _scale(self, wanted: int) -> str:
        before, after = scale_workers(self.lab, wanted)
        return f"{before} -> {after} worker(s), each holding its PostgreSQL connection"

    def _measure(self, label: str) -> str:
        from labkit.load.scenarios import run_scenario  # noqa: PLC0415

        count, _ = workers(self.lab)
        outcome = run_scenario(
            self.lab,
            "redirect-hit",
            rates=[self.rate],
            duration_s=self.duration_s,
            warmup_s=1.0,
            progress=lambda message: None,
        )
        result = outcome.steps[0].result
        self.loads[label] = {
            "workers": count,
            "target_rps": self.rate,
            "achieved_rps": round(result.achieved_rps, 1),
            "p99_ms": result.latency()["p99"],
            "errors": sum(result.recorder.errors().values()),
            "generator_limited": result.generator_limited,
        }
        load = self.loads[label]
        return (
            f"{count} worker(s): {load['achieved_rps']}/s of {self.rate:g}, "
            f"p99 {load['p99_ms']} ms, {load['errors']} errors"
        )

    def judge(self) -> tuple[bool, str]:
        """The worker count converged each way and both loads ran; the effect is reported."""
        self.measured = [{"when": label, **load} for label, load in self.loads.items()]
        before, after = self.loads.get("before"), self.loads.get("after")
        if before is None or after is None:
            return False, "a measurement is missing"
        if after["workers"] != self.replicas:
            return False, f"measured at {after['workers']} worker(s), not {self.replicas}"
        change = after["achieved_rps"] - before["achieved_rps"]
        share = change / before["achieved_rps"] if before["achieved_rps"] else 0.0
        limited = " (generator-limited: read with care)" if after["generator_limited"] else ""
        return True, (
            f"{before['workers']} -> {after['workers']} worker(s): throughput "
            f"{before['achieved_rps']} -> {after['achieved_rps']}/s ({share:+.0%}), p99 "
            f"{before['p99_ms']} -> {after['p99_ms']} ms at {self.rate:g}/s offered{limited}"
        )
