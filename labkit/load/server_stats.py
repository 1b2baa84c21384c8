"""Server-side figures beside a load run: Redis, PostgreSQL, and the lab's processes.

HTTP latency cannot show the ADR's back-end targets, so a ``ServerWatch`` runs
next to the engine:

* Redis: ``INFO stats`` keyspace hits/misses and ``INFO commandstats`` deltas
  (hit ratio, server-side µs per call), ``INFO latencystats`` percentiles of the
  cache's commands (Redis's own per-command latency: the ADR's 200-500 µs is judged
  on it; on the sandbox the stats are reset at the start of each step), plus a
  client-side probe (``PING`` round trips in an HdrHistogram: what a client on this
  loaded machine waits, kept beside it as context);
* PostgreSQL: a timed write probe (``INSERT`` + commit into a probe table of
  labkit's own, sandbox only) in an HdrHistogram (the ADR's 5-10 ms P99);
* processes: CPU seconds and memory (PSS) of the sandbox's components (with children), psutil;
* prometheus: the same kinds of figures from the lab's Prometheus over the step's window
  (``labkit.load.promql_stats``), when the lab has one.

Each source that cannot be reached is reported with why, never silently dropped.
"""

from __future__ import annotations

import threading
import time
from contextlib import suppress
from typing import Any

import psutil

from labkit.errors import LabkitError
from labkit.load.recorder import latency_histogram, percentiles_ms
from labkit.params import Lab
from labkit.stores import RedisClient, lab_postgres, lab_redis_master

__all__ = ["ServerWatch"]

_PROBE_TABLE = "labkit_write_probe"
_TIMEOUT_S = 2.0


def _redis_snapshot(client: RedisClient) -> dict[str, Any]:
    stats: dict[str, Any] = client.info("stats")
    commands: dict[str, Any] = client.info("commandstats")
    return {
        "hits": int(stats.get("keyspace_hits", 0)),
        "misses": int(stats.get("keyspace_misses", 0)),
        "commands": {
            name.removeprefix("cmdstat_"): (int(value["calls"]), float(value["usec"]))
            for name, value in commands.items()
        },
    }


_DATA_COMMANDS = ("get", "set", "del")  # what the redirect cache sends


def _latency_stats(client: RedisClient) -> dict[str, dict[str, float]]:
    """Redis's own per-command latency percentiles (``INFO latencystats``, Redis 7+), µs.

    Only the redirect cache's commands; an older Redis answers an empty section (empty).
    """
    stats: dict[str, Any] = client.info("latencystats")
    figures = {}
    for command in _DATA_COMMANDS:
        values = stats.get(f"latency_percentiles_usec_{command}")
        if isinstance(values, dict):
            figures[command] = {
                name.replace(".", "_"): float(value) for name, value in values.items()
            }
    return figures


def _process_tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _cpu_s(processes: list[psutil.Process]) -> dict[int, float]:
    times: dict[int, float] = {}
    for process in processes:
        with suppress(psutil.Error):  # a backend that exited mid-run simply stops counting
            cpu = process.cpu_times()
            times[process.pid] = cpu.user + cpu.system
    return times


class ServerWatch:
    """Context manager: snapshot before, probe during, deltas after (``.figures``)."""

    def __init__(self, lab: Lab, redis_probe_hz: float = 50.0, postgres_probe_hz: float = 10.0):
        self.lab = lab
        self.redis_probe_hz = redis_probe_hz
        self.postgres_probe_hz = postgres_probe_hz
        self.figures: dict[str, Any] = {}
        self.problems: dict[str, str] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._redis_probe = latency_histogram()
        self._postgres_probe = latency_histogram()
        self._redis_before: dict[str, Any] | None = None
        self._components: dict[str, list[psutil.Process]] = {}
        self._cpu_before: dict[str, dict[int, float]] = {}
        self._started = 0.0
        self._started_wall = 0.0

    # --- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> ServerWatch:
        self._started = time.monotonic()
        self._started_wall = time.time()  # the PromQL window's start
        try:
            with lab_redis_master(self.lab) as client:
                if self.lab.kind == "sandbox":
                    # INFO latencystats is cumulative since the last reset: start the step's
                    # own (the hit/miss and commandstats deltas below start from zero then).
                    client.config_resetstat()
                self._redis_before = _redis_snapshot(client)
        except LabkitError as exc:
            self.problems["redis"] = f"{type(exc).__name__}: {exc}"
        self._find_components()
        self._cpu_before = {name: _cpu_s(tree) for name, tree in self._components.items()}
        for target in (self._probe_redis, self._probe_postgres):
            thread = threading.Thread(target=target, daemon=True, name=target.__name__)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2 * _TIMEOUT_S + 1)
        wall = max(time.monotonic() - self._started, 1e-9)
        self.figures = {
            "wall_s": round(wall, 3),
            "redis": self._redis_figures(),
            "postgres": self._postgres_figures(),
            "processes": self._process_figures(wall),
            "problems": dict(self.problems),
        }
        # The same figures from the lab's Prometheus when it has one (the processes above
        # stay as the cross-check); a lab without one says why.
        from labkit.load.promql_stats import window_figures  # noqa: PLC0415

        self.figures["prometheus"] = window_figures(self.lab, self._started_wall, time.time())

    # --- Redis -----------------------------------------------------------------------------
    def _probe_redis(self) -> None:
        if self.redis_probe_hz <= 0:
            return
        try:
            client = lab_redis_master(self.lab)
            client.ping()
        except LabkitError as exc:
            self.problems.setdefault("redis_probe", f"{type(exc).__name__}: {exc}")
            return
        with client:
            while not self._stop.wait(1 / self.redis_probe_hz):
                started = time.perf_counter_ns()
                try:
                    client.ping()
                except LabkitError as exc:
                    self.problems["redis_probe"] = f"{type(exc).__name__}: {exc}"
                    continue
                self._redis_probe.record_value(max(1, (time.perf_counter_ns() - started) // 1000))

    def _redis_figures(self) -> dict[str, Any]:
        figures: dict[str, Any] = {"probe_us": _us(self._redis_probe)}
        if self._redis_before is None:
            return figures
        try:
            with lab_redis_master(self.lab) as client:
                after = _redis_snapshot(client)
                latency = _latency_stats(client)
        except LabkitError as exc:
            self.problems["redis"] = f"{type(exc).__name__}: {exc}"
            return figures
        if self.lab.kind == "sandbox":
            figures["server_latency_us"] = latency
        else:
            figures["server_latency_us"] = {}
            self.problems["redis_latencystats"] = (
                "INFO latencystats is cumulative since the server's last reset; labkit resets "
                "it only on the sandbox (on a cluster the exporter's figures are the source)"
            )
        before = self._redis_before
        hits, misses = after["hits"] - before["hits"], after["misses"] - before["misses"]
        commands = {}
        for name, (calls, usec) in after["commands"].items():
            calls_before, usec_before = before["commands"].get(name, (0, 0.0))
            if calls > calls_before:
                delta = calls - calls_before
                commands[name] = {
                    "calls": delta,
                    "usec_per_call": round((usec - usec_before) / delta, 2),
                }
        figures.update(
            {
                "keyspace_hits": hits,
                "keyspace_misses": misses,
                "hit_ratio": round(hits / (hits + misses), 4) if hits + misses else None,
                "commands": commands,
            }
        )
        return figures

    # --- PostgreSQL ------------------------------------------------------------------------
    def _probe_postgres(self) -> None:
        if self.postgres_probe_hz <= 0:
            return
        if self.lab.kind != "sandbox":
            # A probe table would be a change to the real lab's database; not without a plan.
            self.problems["postgres_probe"] = "write probe runs only on the sandbox"
            return
        try:
            connection = lab_postgres(self.lab, timeout_s=_TIMEOUT_S)
            connection.execute(
                f"CREATE TABLE IF NOT EXISTS {_PROBE_TABLE} "
                "(id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"
            )
        except LabkitError as exc:
            self.problems["postgres_probe"] = f"{type(exc).__name__}: {exc}".strip()
            return
        with connection:
            while not self._stop.wait(1 / self.postgres_probe_hz):
                started = time.perf_counter_ns()
                try:
                    # autocommit: one INSERT is one transaction, committed (and fsynced) here.
                    connection.execute(f"INSERT INTO {_PROBE_TABLE} DEFAULT VALUES")
                except LabkitError as exc:
                    self.problems["postgres_probe"] = f"{type(exc).__name__}: {exc}".strip()
                    continue
                self._postgres_probe.record_value(
                    max(1, (time.perf_counter_ns() - started) // 1000)
                )
            with suppress(LabkitError):
                connection.execute(f"TRUNCATE {_PROBE_TABLE}")  # keep the probe table empty

    def _postgres_figures(self) -> dict[str, Any]:
        return {
            "probe_ms": percentiles_ms(self._postgres_probe)
            | {"count": self._count(self._postgres_probe)}
        }

    # --- processes -------------------------------------------------------------------------
    def _find_components(self) -> None:
        if self.lab.kind != "sandbox":
            self.problems["processes"] = (
                "process figures come from the sandbox (cluster: Prometheus)"
            )
            return
        try:
            from labkit.sandbox import Sandbox  # noqa: PLC0415 - only sandbox labs need it

            status = Sandbox(self.lab).status()
        except (LabkitError, OSError, RuntimeError, ValueError) as exc:
            self.problems["processes"] = f"{type(exc).__name__}: {exc}"
            return
        for entry in status.get("components", []):
            pid = entry.get("pid")
            if pid and entry.get("kind") != "node":
                self._components[str(entry.get("name", pid))] = _process_tree(int(pid))

    def _process_figures(self, wall: float) -> list[dict[str, Any]]:
        rows = []
        for name, tree in self._components.items():
            before = self._cpu_before.get(name, {})
            after = _cpu_s(tree)
            cpu = sum(after[pid] - before.get(pid, after[pid]) for pid in after)
            memory = 0
            for process in tree:
                with suppress(psutil.Error):
                    memory += _proportional_memory(process)
            rows.append(
                {
                    "component": name,
                    "processes": len(after),
                    "cpu_s": round(cpu, 3),
                    "cpu_cores": round(cpu / wall, 3),
                    "memory_mb": round(memory / 2**20, 1),
                }
            )
        return sorted(rows, key=lambda row: -row["cpu_s"])

    @staticmethod
    def _count(histogram: Any) -> int:
        return int(histogram.get_total_count())


def _proportional_memory(process: psutil.Process) -> int:
    """PSS: shared pages (PostgreSQL's shared buffers) split between the processes sharing them,
    so a component's processes add up instead of counting shared memory once per backend."""
    try:
        return int(process.memory_full_info().pss)
    except (psutil.AccessDenied, AttributeError):
        return int(process.memory_info().rss)


def _us(histogram: Any) -> dict[str, float]:
    values = percentiles_ms(histogram)
    figures = {name: round(value * 1000, 1) for name, value in values.items()}
    figures["count"] = int(histogram.get_total_count())
    return figures
