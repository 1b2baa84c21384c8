"""Open-loop load engine: intended-time latency (no coordinated omission), merged HdrHistograms."""

from labkit.load.engine import Limits, LoadProgress, run_load
from labkit.load.recorder import Recorder
from labkit.load.result import LoadResult
from labkit.load.schedule import Schedule, Segment
from labkit.load.target import LOOPBACK, Target, resolve_target
from labkit.load.workload import Creates, Fixed, Mixed, Redirects, Workload

__all__ = [
    "LOOPBACK",
    "Creates",
    "Fixed",
    "Limits",
    "LoadProgress",
    "LoadResult",
    "Mixed",
    "Recorder",
    "Redirects",
    "Schedule",
    "Segment",
    "Target",
    "Workload",
    "resolve_target",
    "run_load",
]
