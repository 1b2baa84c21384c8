"""Run a load plan over N worker processes and merge their histograms into one LoadResult.

Each worker takes every N-th request of one global schedule. They pre-open their
connections, report ready, and start together at a common t0 on the shared
monotonic clock. The run is flagged **generator-limited** when a worker's
scheduler lag p99 or its CPU use shows it could not keep the schedule.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from typing import Any

from labkit.errors import LabkitError, WaitTimeout
from labkit.load.child import read_frame, write_frame
from labkit.load.recorder import Recorder, percentiles_ms
from labkit.load.result import LoadResult
from labkit.load.schedule import Schedule
from labkit.load.target import Target
from labkit.load.worker import WorkerSpec
from labkit.load.workload import Workload

__all__ = ["Limits", "run_load"]

_START_MARGIN_NS = 100_000_000  # t0 is this far after every worker said ready
_READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Limits:
    """When a run counts as generator-limited."""

    lag_p99_ms: float = 5.0  # wrk2 documents ±1 ms; five ticks late is not keeping schedule
    cpu_cores: float = 0.85  # a worker near a full core cannot absorb a burst
    late_finish_s: float = 0.5  # finished sending this long after the plan ended


class _Worker:
    """A worker subprocess we started, talked to over its stdin/stdout."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "labkit.load.child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.stdin, self.stdout = self.process.stdin, self.process.stdout
        write_frame(self.stdin, spec)

    def send(self, value: Any) -> None:
        write_frame(self.stdin, value)

    def receive(self, timeout_s: float, what: str) -> Any:
        ready, _, _ = select.select([self.stdout], [], [], timeout_s)
        if not ready:
            raise WaitTimeout(
                f"load worker pid {self.process.pid} did not {what} within {timeout_s:.0f}s"
            )
        try:
            kind, payload = read_frame(self.stdout)
        except EOFError:
            self.process.wait(timeout=5)
            raise LabkitError(
                f"load worker pid {self.process.pid} exited {self.process.returncode} before it "
                f"could {what}: {self.stderr_tail()}"
            ) from None
        if kind == "error":
            raise LabkitError(f"load worker pid {self.process.pid} failed: {payload}")
        return payload

    def stderr_tail(self) -> str:
        self.log.seek(0)
        lines = self.log.read().decode(errors="replace").strip().splitlines()
        return " | ".join(lines[-3:]) or "(no output)"

    def close(self) -> None:
        for stream in (self.stdin, self.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()  # our own child, by its handle
            self.process.wait(timeout=5)
        self.log.close()


def _judge(workers: list[dict[str, Any]], recorder: Recorder, limits: Limits) -> str:
    reasons = []
    lag_p99 = percentiles_ms(recorder.total("lag"))["p99"]
    if lag_p99 > limits.lag_p99_ms:
        reasons.append(f"scheduler lag p99 {lag_p99:.1f} ms > {limits.lag_p99_ms:g} ms")
    for worker in workers:
        cores = worker["cpu_s"] / max(worker["wall_s"], 1e-9)
        if cores > limits.cpu_cores:
            reasons.append(
                f"worker {worker['worker']} used {cores:.2f} of a core (> {limits.cpu_cores:g})"
            )
        if worker["late_finish_s"] > limits.late_finish_s:
            reasons.append(
                f"worker {worker['worker']} finished sending {worker['late_finish_s']:.2f}s late"
            )
    return "; ".join(reasons)


def run_load(
    target: Target,
    workload: Workload,
    schedule: Schedule,
    *,
    name: str = "bench",
    processes: int = 1,
    connections: int = 64,
    connect_timeout_s: float = 5.0,
    read_timeout_s: float = 10.0,
    limits: Limits = Limits(),
) -> LoadResult:
    """Send ``workload`` to an already-checked ``target`` on ``schedule``; merged result."""
    if processes < 1 or connections < processes:
        raise LabkitError(
            f"load: {processes} process(es) with {connections} connections; need at least one "
            "process and one connection per process"
        )
    base = WorkerSpec(
        host=target.address,
        port=target.port,
        workload=workload,
        schedule=schedule,
        workers=processes,
        connect_timeout_s=connect_timeout_s,
        read_timeout_s=read_timeout_s,
    )
    load_avg = os.getloadavg()[0]
    children: list[_Worker] = []
    try:
        for worker in range(processes):
            share = connections // processes + (1 if worker < connections % processes else 0)
            children.append(_Worker(replace(base, worker=worker, connections=share)))
        for child in children:
            child.receive(_READY_TIMEOUT_S, "open its connections")
        t0 = time.monotonic_ns() + _START_MARGIN_NS
        for child in children:
            child.send(t0)
        budget = schedule.duration_s + read_timeout_s + _READY_TIMEOUT_S
        workers = [child.receive(budget, "finish its schedule") for child in children]
    finally:
        for child in children:
            child.close()
    recorder = Recorder()
    for worker in workers:
        recorder.merge(worker["recorder"])
    reason = _judge(workers, recorder, limits)
    return LoadResult(
        name=name,
        url=target.url,
        target_rps=schedule.measured_rate,
        duration_s=schedule.measured_s,
        warmup_s=schedule.warmup_s,
        processes=processes,
        connections=connections,
        recorder=recorder,
        workers=workers,
        generator_limited=bool(reason),
        generator_reason=reason,
        load_avg_1m=load_avg,
        cores=os.cpu_count() or 1,
    )
