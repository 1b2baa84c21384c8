"""Run a load plan over N worker processes and merge their histograms into one LoadResult.

Each worker takes every N-th request of one global schedule. They pre-open their
connections, report ready, and start together at a common t0 on the shared
monotonic clock. The run is flagged **generator-limited** when a worker's
scheduler lag p99 or its CPU use shows it could not keep the schedule.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from labkit.errors import ConfigError, LabkitError, WaitTimeout
from labkit.load.child import read_frame, write_frame
from labkit.load.recorder import Recorder, percentiles_ms
from labkit.load.result import LoadResult
from labkit.load.schedule import Schedule
from labkit.load.target import Target
from labkit.load.trace import Trace
from labkit.load.worker import Progress, WorkerSpec
from labkit.load.workload import Workload

__all__ = [
    "MAX_CONNECTIONS",
    "MAX_TIMEOUT_S",
    "Limits",
    "LoadProgress",
    "max_processes",
    "progress_lines",
    "run_load",
]

_START_MARGIN_NS = 100_000_000  # t0 is this far after every worker said ready
_READY_TIMEOUT_S = 60.0
# Bounds of a run. Connections: far beyond what one target needs at MAX_RATE with
# millisecond answers, and each is a file descriptor of a worker (see _check_bounds).
MAX_CONNECTIONS = 10_000
MAX_TIMEOUT_S = 600.0  # a connect or read timeout longer than ten minutes waits for nothing
_PROCESSES_PER_CORE = 4  # more workers than that only compete for the same cores
_SPARE_FDS = 64  # a worker's own descriptors besides its connections (pipes, loop, logs)


def max_processes() -> int:
    """The most worker processes a run may have on this machine (4 per CPU core)."""
    return _PROCESSES_PER_CORE * (os.cpu_count() or 1)


def _check_bounds(
    processes: int, connections: int, connect_timeout_s: float, read_timeout_s: float
) -> None:
    """A ConfigError unless the run's sizes and timeouts are within their bounds."""
    if not 1 <= processes <= max_processes():
        raise ConfigError(
            f"load: {processes} process(es); give 1 to {max_processes()} "
            f"({_PROCESSES_PER_CORE} per CPU core of this machine)"
        )
    if not processes <= connections <= MAX_CONNECTIONS:
        raise ConfigError(
            f"load: {connections} connection(s) for {processes} process(es); give at least one "
            f"per process and at most {MAX_CONNECTIONS:,}"
        )
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    share = math.ceil(connections / processes)
    if soft != resource.RLIM_INFINITY and share + _SPARE_FDS > soft:
        raise ConfigError(
            f"load: {share} connections per process do not fit the open-file limit {soft} "
            f"(ulimit -n); give at most {max(soft - _SPARE_FDS, 0) * processes} connections, "
            "more processes, or raise the limit"
        )
    for name, value in (("connect", connect_timeout_s), ("read", read_timeout_s)):
        if not 0 < value <= MAX_TIMEOUT_S:  # NaN fails both comparisons
            raise ConfigError(
                f"load: a {name} timeout of {value:g}s; give above 0 and at most "
                f"{MAX_TIMEOUT_S:g} seconds"
            )


@dataclass(frozen=True)
class Limits:
    """When a run counts as generator-limited."""

    lag_p99_ms: float = 5.0  # wrk2 documents ±1 ms; five ticks late is not keeping schedule
    cpu_cores: float = 0.85  # a worker near a full core cannot absorb a burst
    late_finish_s: float = 0.5  # finished sending this long after the plan ended


@dataclass(frozen=True)
class LoadProgress:
    """A running load, all workers together (warm-up included), about once a second."""

    elapsed_s: float  # since t0
    planned_s: float  # the whole plan, warm-up included
    sent: int
    planned: int  # requests in the whole plan
    answered: int  # with any status: 4xx/5xx are counted in the result, not here
    unanswered: int  # connect errors, timeouts, resets, not sent

    def line(self) -> str:
        """One progress line for a terminal or a notebook."""
        return (
            f"  {self.elapsed_s:4.0f}/{self.planned_s:g}s  sent {self.sent:,} of {self.planned:,}"
            f"  answered {self.answered:,}  no answer {self.unanswered:,}"
            f"  ({self.answered / max(self.elapsed_s, 0.001):,.0f} answered/s)"
        )


def progress_lines(
    sink: Callable[[str], None], every_s: float = 5.0
) -> Callable[[LoadProgress], None]:
    """A ``run_load`` progress callback handing ``sink`` one line every ``every_s`` seconds."""
    next_at = every_s

    def show(progress: LoadProgress) -> None:
        nonlocal next_at
        if progress.elapsed_s + 0.5 >= next_at:  # reports come about once a second
            sink(progress.line())
            next_at += every_s

    return show


class _Worker:
    """A worker subprocess we started, talked to over its stdin/stdout."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "labkit.load.child"],
            bufsize=0,  # unbuffered: select() on stdout sees every frame not yet read
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
        """The payload of the next ``ready`` or ``result`` frame (``progress`` frames skipped)."""
        return _gather([self], timeout_s, what)[0]

    def read(self, what: str) -> tuple[str, Any]:
        """The next frame (the caller knows one is waiting); a failed worker raises."""
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
        return kind, payload

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


def _gather(
    children: list[_Worker],
    timeout_s: float,
    what: str,
    on_progress: Callable[[int, Progress], None] | None = None,
) -> list[Any]:
    """Every child's next ``ready``/``result`` payload, reading all of them as frames arrive.

    ``progress`` frames go to ``on_progress(worker index, progress)`` on the way: read
    from every pipe at once, so no worker ever blocks on a full pipe while we wait for
    another. A WaitTimeout names the first worker still silent after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    results: dict[int, Any] = {}
    streams = {child.stdout: index for index, child in enumerate(children)}
    while len(results) < len(children):
        waiting = [stream for stream, index in streams.items() if index not in results]
        ready, _, _ = select.select(waiting, [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            late = children[streams[waiting[0]]]
            raise WaitTimeout(
                f"load worker pid {late.process.pid} did not {what} within {timeout_s:.0f}s"
            )
        for stream in ready:
            index = streams[stream]
            kind, payload = children[index].read(what)
            if kind == "progress":
                if on_progress is not None:
                    on_progress(index, payload)
            else:
                results[index] = payload
    return [results[index] for index in range(len(children))]


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
    progress: Callable[[LoadProgress], None] | None = None,
    trace: bool = False,
    capture: tuple[str, ...] = (),
    on_start: Callable[[int], None] | None = None,
) -> LoadResult:
    """Send ``workload`` to an already-checked ``target`` on ``schedule``; merged result.

    ``progress`` (if given) gets the counts so far about once a second. ``trace`` keeps
    every measured request's outcome (``LoadResult.trace``), and the short codes the
    ``capture`` operations' answers name; ``on_start`` gets t0 (``time.monotonic_ns``
    clock) once every worker is ready, so a caller can time something against the plan.
    """
    _check_bounds(processes, connections, connect_timeout_s, read_timeout_s)
    schedule.validated()  # a Schedule made without its constructors is checked too
    base = WorkerSpec(
        host=target.address,
        port=target.port,
        workload=workload,
        schedule=schedule,
        workers=processes,
        connect_timeout_s=connect_timeout_s,
        read_timeout_s=read_timeout_s,
        trace=trace,
        capture=capture,
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
        if on_start is not None:
            on_start(t0)
        latest = [Progress(0, 0, 0)] * processes
        reports = [0] * processes
        shown = 0

        def on_progress(index: int, counts: Progress) -> None:
            nonlocal shown
            latest[index] = counts
            reports[index] += 1
            if progress is not None and min(reports) > shown:  # every worker's n-th report in
                shown = min(reports)
                progress(
                    LoadProgress(
                        elapsed_s=(time.monotonic_ns() - t0) / 1e9,
                        planned_s=schedule.duration_s,
                        sent=sum(worker.sent for worker in latest),
                        planned=schedule.total_requests,
                        answered=sum(worker.answered for worker in latest),
                        unanswered=sum(worker.unanswered for worker in latest),
                    )
                )

        budget = schedule.duration_s + read_timeout_s + _READY_TIMEOUT_S
        workers = _gather(children, budget, "finish its schedule", on_progress)
    finally:
        for child in children:
            child.close()
    recorder = Recorder()
    for worker in workers:
        recorder.merge(worker["recorder"])
    reason = _judge(workers, recorder, limits)
    traced = (
        Trace.merge(t0, workload.operations, [worker.pop("trace") for worker in workers])
        if trace
        else None
    )
    for worker in workers:
        worker.pop("trace", None)
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
        trace=traced,
    )
