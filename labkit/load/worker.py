"""One load-generating process: pre-open the pool, wait for the common t0, keep the schedule.

The scheduler wakes at least every millisecond (the event loop's timer
resolution) and dispatches every request that is due; how late it was is the
``lag`` histogram, the generator's own delay, reported rather than hidden.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from labkit.load.client import Pending, Pool
from labkit.load.recorder import Recorder
from labkit.load.schedule import Schedule
from labkit.load.workload import Workload

__all__ = ["WorkerSpec", "run_worker"]

_NS = 1_000_000_000
_TICK_S = 0.001


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


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Run:
    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.recorder = Recorder()
        self.measure_from = spec.schedule.warmup_requests
        self.measure_start_ns = 0
        self.pool = Pool(
            spec.host,
            spec.port,
            spec.connections,
            self.done,
            spec.connect_timeout_s,
            spec.read_timeout_s,
        )
        self.sent = 0
        self.last_done_ns = 0

    def done(self, pending: Pending, status: int, category: str, now_ns: int) -> None:
        if not pending.measured:
            return
        second = (now_ns - self.measure_start_ns) // _NS
        self.last_done_ns = now_ns
        lag_us = (pending.dispatched_ns - pending.intended_ns) // 1000
        if status:
            self.recorder.response(
                pending.operation,
                status,
                (now_ns - pending.intended_ns) // 1000,
                (now_ns - pending.written_ns) // 1000,
                lag_us,
                second,
            )
        else:
            self.recorder.error(pending.operation, category, lag_us, second)

    async def schedule(self, t0_ns: int) -> None:
        spec = self.spec
        request = spec.workload.request
        submit = self.pool.submit
        monotonic_ns = time.monotonic_ns
        sleep = asyncio.sleep
        measure_from = self.measure_from
        for index, offset_ns in spec.schedule.offsets_ns(spec.worker, spec.workers):
            intended = t0_ns + offset_ns
            now = monotonic_ns()
            if intended > now:
                await sleep(max((intended - now) / _NS, _TICK_S))
                now = monotonic_ns()
            operation, raw = request(index)
            submit(Pending(operation, raw, intended, now, index >= measure_from))
            self.sent += 1

    async def watchdog(self) -> None:
        interval = min(0.1, self.spec.read_timeout_s / 10)
        while True:
            await asyncio.sleep(interval)
            self.pool.expire(time.monotonic_ns())

    async def run(self, wait_for_t0: Callable[[], int]) -> dict[str, Any]:
        opened = await self.pool.prewarm()
        t0_ns = wait_for_t0()
        self.measure_start_ns = t0_ns + int(self.spec.schedule.warmup_s * _NS)
        cpu_start = _cpu_s()
        wall_start = time.monotonic_ns()
        watchdog = asyncio.get_running_loop().create_task(self.watchdog())
        await self.schedule(t0_ns)
        sent_all_ns = time.monotonic_ns()
        # Drain: wait for answers up to the read timeout, then charge what is left.
        deadline = sent_all_ns + int(self.spec.read_timeout_s * _NS)
        while self.pool.outstanding and time.monotonic_ns() < deadline:
            await asyncio.sleep(0.005)
        watchdog.cancel()
        self.pool.abandon(time.monotonic_ns())
        wall_s = (time.monotonic_ns() - wall_start) / _NS
        planned_end_ns = t0_ns + int(self.spec.schedule.duration_s * _NS)
        return {
            "worker": self.spec.worker,
            "loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
            "recorder": self.recorder.to_wire(),
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


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop  # noqa: PLC0415 - optional: stock asyncio works, at a lower ceiling
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def run_worker(spec: WorkerSpec, wait_for_t0: Callable[[], int]) -> dict[str, Any]:
    """Run one worker to the end of its schedule; returns its wire-form result.

    ``wait_for_t0`` is called once the pool is open and returns the common start
    time (``time.monotonic_ns()`` clock, shared by every process on Linux).
    """
    with asyncio.Runner(loop_factory=_new_loop) as runner:
        return runner.run(_Run(spec).run(wait_for_t0))
