"""Requests per CPU-second: ``labkit bench`` against ``wrk``, same local nginx, same run.

Starts its own nginx (1 worker, loopback, a free port, config in a temp dir,
returns a 302 like a short-URL redirect), then alternates:

* ``wrk -t1 -c50`` for D seconds (closed loop, as fast as it can);
* ``labkit bench --rate 10000`` (the goal: on schedule, well under one core);
* ``labkit bench --rate 30000`` (near saturation: the engine's best requests/CPU-s).

CPU is each client's own user+sys time (wrk: rusage of the child; labkit: the
worker's rusage over its run). Prints a table per round and the ratio to wrk, then
the median and range of each ratio over the rounds (a VM's neighbours move single
rounds by 10-20 %).
Stops nginx by its pid. Usage: ``.venv/bin/python benchmarks/bench_engine.py [rounds] [seconds]``.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 10000000;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{ return 302 http://example.com/target; }}
    }}
}}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pin(cpu: int) -> list[str]:
    # Client on one core, server on the other, when taskset exists and there are two cores.
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(cpu)]
    return []


def _start_nginx(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, port=port))
    process = subprocess.Popen([*_pin(1), "nginx", "-c", str(conf), "-p", str(tmp)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, port
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.05)
    process.kill()
    raise SystemExit(f"nginx did not start on 127.0.0.1:{port}; see {tmp}/error.log")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(url: str, seconds: float) -> dict[str, float]:
    """wrk closed loop: requests, its CPU seconds, requests per CPU-second."""
    before = _children_cpu()
    output = subprocess.run(
        [*_pin(0), "wrk", "-t1", "-c50", f"-d{seconds:g}s", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    cpu = _children_cpu() - before
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    return {"rps": requests / seconds, "cpu_s": cpu, "per_cpu_s": requests / cpu}


def run_labkit(url: str, rate: int, seconds: float, tmp: Path) -> dict[str, float]:
    """labkit bench at ``rate``: achieved rps, worker CPU, per CPU-second, on schedule?"""
    out = tmp / f"labkit-{rate}.json"
    subprocess.run(
        [
            *_pin(0),
            PYTHON,
            "-m",
            "labkit.cli",
            "bench",
            url,
            "--rate",
            str(rate),
            "--duration",
            f"{seconds:g}",
            "--warmup",
            "1",
            "--connections",
            "50",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 90,
        cwd=ROOT,
    )
    data = json.loads(out.read_text())["load"][0]
    cpu = data["generator"]["cpu_s"]
    cores = data["generator"]["cpu_cores"][0]
    # The worker's CPU covers warm-up + measured part: count the requests of both.
    sent = data["requests"] * (seconds + 1) / seconds
    return {
        "rps": data["achieved_rps"],
        "cpu_s": cpu,
        "cores": cores,
        "per_cpu_s": sent / cpu,
        "lag_p99_ms": data["generator"]["lag_p99_ms"],
        "limited": data["generator_limited"],
        "p99_ms": data["latency_ms"]["corrected"]["p99"],
    }


def main() -> int:
    """Run the rounds and print the table."""
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 8.0
    for tool in ("nginx", "wrk"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found; apt-get install -y nginx-light wrk")
    with tempfile.TemporaryDirectory(prefix="labkit-bench-") as name:
        tmp = Path(name)
        nginx, port = _start_nginx(tmp)
        url = f"http://127.0.0.1:{port}/"
        try:
            print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()}")
            print(
                f"{'round':<6}{'client':<22}{'rps':>10}{'cpu s':>8}{'req/cpu-s':>11}"
                f"{'ratio':>7}  notes"
            )
            ratios: dict[int, list[float]] = {}
            for round_number in range(1, rounds + 1):
                wrk = run_wrk(url, seconds)
                print(
                    f"{round_number:<6}{'wrk -t1 -c50':<22}{wrk['rps']:>10.0f}"
                    f"{wrk['cpu_s']:>8.2f}{wrk['per_cpu_s']:>11.0f}{1:>7.2f}"
                )
                for rate in (10_000, 30_000):
                    lab = run_labkit(url, rate, seconds, tmp)
                    notes = (
                        f"{lab['cores']:.2f} core, lag p99 {lab['lag_p99_ms']:.1f} ms, "
                        f"p99 {lab['p99_ms']:.1f} ms"
                        + (", GENERATOR-LIMITED" if lab["limited"] else ", on schedule")
                    )
                    ratios.setdefault(rate, []).append(lab["per_cpu_s"] / wrk["per_cpu_s"])
                    print(
                        f"{'':<6}{f'labkit --rate {rate}':<22}{lab['rps']:>10.0f}"
                        f"{lab['cpu_s']:>8.2f}{lab['per_cpu_s']:>11.0f}"
                        f"{lab['per_cpu_s'] / wrk['per_cpu_s']:>7.2f}  {notes}"
                    )
                print(f"      load average {os.getloadavg()}")
            print("ratio to wrk over the rounds: median (min-max)")
            for rate, values in ratios.items():
                print(
                    f"  labkit --rate {rate:<8}{median(values):.2f} "
                    f"({min(values):.2f}-{max(values):.2f})"
                )
        finally:
            nginx.send_signal(signal.SIGQUIT)  # our own nginx master, by its pid
            try:
                nginx.wait(timeout=10)
            except subprocess.TimeoutExpired:
                nginx.kill()
                nginx.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
