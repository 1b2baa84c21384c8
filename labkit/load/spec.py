"""What one load-generating process is given: picklable, it travels to the worker over a pipe.

Kept apart from ``worker``, which may be compiled (mypyc), so that it stays a plain
frozen dataclass that pickles the same way in both.
"""

from __future__ import annotations

from dataclasses import dataclass

from labkit.load.schedule import Schedule
from labkit.load.workload import Workload

__all__ = ["WorkerSpec"]


@dataclass(frozen=True)
class WorkerSpec:
    """Everything one worker needs."""

    host: str
    port: int
    workload: Workload
    schedule: Schedule
    worker: int = 0
    workers: int = 1
    connections: int = 64
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0
