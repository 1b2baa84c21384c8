"""Test helper: a `labkit` command in a child bounded in memory, CPU and wall time, so a
regression in input handling fails the test instead of hanging it or taking the machine."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent


def run_labkit(
    *argv: str, memory_bytes: int, cpu_s: int = 20, wall_s: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m labkit.cli ARGV`` from the repository, under RLIMIT_AS, RLIMIT_CPU, a timeout."""

    def limited() -> None:  # in the child, before exec
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))

    return subprocess.run(
        [sys.executable, "-m", "labkit.cli", *argv],
        capture_output=True,
        text=True,
        timeout=wall_s,
        preexec_fn=limited,
        check=False,
        cwd=REPOSITORY,
    )
