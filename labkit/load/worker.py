"""One load-generating process: pre-open the pool, wait for the common t0, keep the schedule.

The scheduler wakes at least every millisecond (the event loop's timer
resolution) and dispatches every request that is due; how late it was is the
``lag`` histogram, the generator's own delay, reported rather than hidden. Once a
second the worker hands its counts so far (``Progress``) to a ``report`` callback.
"""

from __future__ import annotations

import asyncio
import gc
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from labkit.load.client import SAMPLE_FIELDS, STATUS_SPAN, Pool, quiet_parse_errors
from labkit.load.recorder import ERROR_CATEGORIES, Recorder
from labkit.load.schedule import Schedule, Span
from labkit.load.workload import Fixed, Workload

__all__ = ["Progress", "WorkerSpec", "run_worker"]

_NS = 1_000_000_000
_TICK_S = 0.001
_PROGRESS_S = 1.0
_DRAIN_EVERY = 2048  # responses; bounds memory, and one vectorised drain stays under 1 ms
_monotonic_ns = time.monotonic_ns
_ONE_REQUEST = Schedule.constant(1, 1)
_CATEGORY = {name: index for index, name in enumerate(ERROR_CATEGORIES)}


@dataclass(frozen=True)
class WorkerSpec:
    """Everything one worker needs (picklable; travels to the process over a pipe)."""

    host: str
    port: int
    workload: Workload
    schedule: Schedule
    worker: int = 0
    workers: int = 1
    connections: int = 64
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0
    # A traced run (a drill) keeps every measured request's outcome and times, and the
    # response bodies of the ``capture`` operations (see labkit.load.trace).
    trace: bool = False
    capture: tuple[str, ...] = ()


@dataclass(frozen=True)
class Progress:
    """One worker's counts so far, warm-up included: requests sent, answered (any status),
    and ended without an answer (connect errors, timeouts, resets, not sent)."""

    sent: int
    answered: int
    unanswered: int


Report = Callable[[Progress], None]


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Run:
    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.recorder = Recorder()
        self.operations = list(spec.workload.operations)
        # Operation keys (code * STATUS_SPAN): a response's status is added to its key.
        self.keys = {name: code * STATUS_SPAN for code, name in enumerate(self.operations)}
        self.measure_start_ns = 0
        self.pool = Pool(
            spec.host,
            spec.port,
            spec.connections,
            self.error,
            spec.connect_timeout_s,
            spec.read_timeout_s,
            capture=frozenset(self.keys[name] for name in spec.capture if name in self.keys),
        )
        # A traced run's record (labkit.load.trace): answered rows, failures without answer.
        self.trace_rows: list[npt.NDArray[np.int64]] = []
        self.trace_errors: list[tuple[int, int, int, int]] = []
        self.sent = 0
        self.answered = 0  # responses drained from the pool's samples, warm-up included
        self.unanswered = 0  # requests ended without an HTTP answer, warm-up included
        self.last_done_ns = 0
        # Cyclic workloads are a table indexed by request index (no call per send).
        self.table = tuple((self.keys[name], raw) for name, raw in spec.workload.cycle() or ())
        self.t0_ns = 0
        self.spans: list[Span] = []  # the plan still ahead, after the current span
        self.span = (0, 0, 0, 0, 0.0)  # the current one: next index, end, first, base, interval
        self.next_intended = 0
        self.finished: asyncio.Future[None] | None = None
        self.call_later: Callable[..., object] = _no_loop_yet

    def error(
        self, operation: int, category: str, intended: int, dispatched: int, now: int
    ) -> None:
        self.unanswered += 1
        # Requests due before the end of the warm-up are sent but not measured; the plan puts
        # exactly the warm-up's indices before ``measure_start_ns``.
        if intended < self.measure_start_ns:
            return
        if self.spec.trace:
            self.trace_errors.append((operation, _CATEGORY[category], intended, now))
        # last_done_ns stays the last *answer*: a read timeout charged seconds later (or
        # "not_sent" at the end) must not stretch the run that achieved_rps divides by.
        self.recorder.error(
            self.operations[operation],
            category,
            (dispatched - intended) // 1000,
            (now - self.measure_start_ns) // _NS,
        )

    def drain(self) -> None:
        """Turn the pool's raw samples into histogram counts (vectorised, in one go)."""
        samples = self.pool.samples
        if not samples:
            return
        rows = np.fromiter(samples, dtype=np.int64, count=len(samples))
        rows = rows.reshape(-1, SAMPLE_FIELDS)
        samples.clear()
        self.answered += len(rows)
        if int(rows[:, 1].min()) < self.measure_start_ns:
            rows = rows[rows[:, 1] >= self.measure_start_ns]  # warm-up: sent, not measured
            if not len(rows):
                return
        if self.spec.trace:
            self.trace_rows.append(rows[:, (0, 1, 4)].copy())
        key, intended, dispatched, written, done = rows.T
        self.last_done_ns = max(self.last_done_ns, int(done.max()))
        corrected = (done - intended) // 1000
        uncorrected = (done - written) // 1000
        lag = (dispatched - intended) // 1000
        seconds = (done - self.measure_start_ns) // _NS
        if len(self.operations) == 1:  # operation code 0: the key is the status itself
            self.recorder.responses_batch(
                self.operations[0], key, corrected, uncorrected, lag, seconds
            )
            return
        operation, status = np.divmod(key, STATUS_SPAN)
        for code in np.unique(operation).tolist():
            mine = operation == code
            self.recorder.responses_batch(
                self.operations[code],
                status[mine],
                corrected[mine],
                uncorrected[mine],
                lag[mine],
                seconds[mine],
            )

    def tick(self) -> None:
        """Dispatch every request that is due, then come back when the next one is."""
        intended = self.next_intended
        now = _monotonic_ns()
        if intended <= now:
            index, end, first, base, interval = self.span
            workers = self.spec.workers
            table = self.table
            cycle = len(table)
            request = self.spec.workload.request
            keys = self.keys
            pool = self.pool
            idle = pool.idle
            sent = self.sent
            while intended <= now:
                if cycle:
                    key, raw = table[index % cycle]
                else:
                    operation, raw = request(index)
                    key = keys[operation]
                if idle:
                    # _Connection.send, inlined: the one Python call per request it saves
                    # is a measurable share of the hot path.
                    connection = idle.pop()
                    connection.operation = key
                    connection.intended = intended
                    connection.dispatched = now
                    connection.written = now
                    connection.write(raw)
                else:
                    pool.queue(key, raw, intended, now)
                sent += 1
                index += workers
                if index >= end:
                    if not self.spans:
                        self.sent = sent
                        if self.finished is not None and not self.finished.done():
                            self.finished.set_result(None)
                        return
                    index, end, first, base, interval = self._next_span()
                intended = base + int((index - first) * interval)
                now = _monotonic_ns()
            self.sent = sent
            self.span = (index, end, first, base, interval)
            self.next_intended = intended
            if len(pool.samples) >= _DRAIN_EVERY * SAMPLE_FIELDS:
                self.drain()
                now = _monotonic_ns()
        # Never sooner than the loop's timer resolution; sends due meanwhile go out together.
        self.call_later(max((intended - now) / _NS, _TICK_S), self.tick)

    def _next_span(self) -> tuple[int, int, int, int, float]:
        """The next span of the plan, its start made absolute (t0 added)."""
        span = self.spans.pop(0)
        return span.begin, span.end, span.first, self.t0_ns + span.start_ns, span.interval_ns

    async def schedule(self, t0_ns: int) -> None:
        spec = self.spec
        self.t0_ns = t0_ns
        self.spans = spec.schedule.spans(spec.worker, spec.workers)
        if not self.spans:
            return
        self.span = self._next_span()
        index, _, first, base, interval = self.span
        self.next_intended = base + int((index - first) * interval)
        loop = asyncio.get_running_loop()
        self.call_later = loop.call_later  # once: get_running_loop() costs a getpid() per call
        self.finished = loop.create_future()
        self.tick()
        await self.finished

    async def watchdog(self) -> None:
        interval = min(0.1, self.spec.read_timeout_s / 10)
        while True:
            await asyncio.sleep(interval)
            self.pool.expire(time.monotonic_ns())

    def progress(self) -> Progress:
        """Counts so far; responses still in the pool's raw samples count as answered."""
        pending = len(self.pool.samples) // SAMPLE_FIELDS
        return Progress(self.sent, self.answered + pending, self.unanswered)

    async def reporter(self, report: Report) -> None:
        while True:
            await asyncio.sleep(_PROGRESS_S)
            report(self.progress())

    async def run(self, wait_for_t0: Callable[[], int], report: Report) -> dict[str, Any]:
        quiet_parse_errors(asyncio.get_running_loop())
        opened = await self.pool.prewarm()
        _warm_up_drain()
        t0_ns = wait_for_t0()
        self.measure_start_ns = t0_ns + int(self.spec.schedule.warmup_s * _NS)
        # Everything alive now (modules, the pool) never becomes garbage: keep the
        # collector's passes to the run's own short-lived objects.
        gc.freeze()
        cpu_start = _cpu_s()
        wall_start = time.monotonic_ns()
        loop = asyncio.get_running_loop()
        background = [loop.create_task(self.watchdog()), loop.create_task(self.reporter(report))]
        await self.schedule(t0_ns)
        sent_all_ns = time.monotonic_ns()
        # Drain: wait for answers up to the read timeout, then charge what is left.
        deadline = sent_all_ns + int(self.spec.read_timeout_s * _NS)
        while self.pool.outstanding and time.monotonic_ns() < deadline:
            await asyncio.sleep(0.005)
        for task in background:
            task.cancel()
        self.drain()
        self.pool.abandon(time.monotonic_ns())
        wire = self.recorder.to_wire()
        trace = None
        if self.spec.trace:
            trace = {
                "rows": np.concatenate(self.trace_rows)
                if self.trace_rows
                else np.zeros((0, 3), dtype=np.int64),
                "errors": self.trace_errors,
                "bodies": self.pool.bodies,
            }
        wall_s = (time.monotonic_ns() - wall_start) / _NS
        planned_end_ns = t0_ns + int(self.spec.schedule.duration_s * _NS)
        return {
            "worker": self.spec.worker,
            "loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
            "recorder": wire,
            "trace": trace,
            "cpu_s": _cpu_s() - cpu_start,
            "wall_s": wall_s,
            "sent": self.sent,
            "prewarmed": opened,
            "connects": self.pool.connects,
            "late_finish_s": max(0.0, (sent_all_ns - planned_end_ns) / _NS),
            "measured_wall_s": max(
                (max(self.last_done_ns, sent_all_ns) - self.measure_start_ns) / _NS, 1e-9
            ),
        }


def _no_loop_yet(*args: object) -> object:
    raise RuntimeError("labkit load: the scheduler ticked before its event loop was known")


def _warm_up_drain() -> None:
    """One throwaway drain before t0: numpy's first calls are slow, and would stall the plan."""
    run = _Run(WorkerSpec(host="", port=0, workload=Fixed(host=""), schedule=_ONE_REQUEST))
    run.pool.samples.extend((200, 0, 0, 0, 1000) * 2)
    run.drain()


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop  # noqa: PLC0415 - optional: stock asyncio works, at a lower ceiling
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def _no_report(progress: Progress) -> None:
    return None


def run_worker(
    spec: WorkerSpec, wait_for_t0: Callable[[], int], report: Report = _no_report
) -> dict[str, Any]:
    """Run one worker to the end of its schedule; returns its wire-form result.

    ``wait_for_t0`` is called once the pool is open and returns the common start
    time (``time.monotonic_ns()`` clock, shared by every process on Linux);
    ``report`` gets the counts so far once a second from t0 on.
    """
    with asyncio.Runner(loop_factory=_new_loop) as runner:
        return runner.run(_Run(spec).run(wait_for_t0, report))
