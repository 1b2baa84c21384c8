"""Fixtures of the sandbox service's tests: a stack of their own (PostgreSQL, Redis, the service).

``own_stack`` is module-scoped: a module whose tests break things (kill the Redis
master, stop PostgreSQL) or fill the database with hostile requests gets a stack
nobody else shares, on free loopback ports.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from labkit.params import Lab, load_lab
from labkit.sandbox import postgres, processes
from labkit.sandbox import redis as sandbox_redis
from labkit.sandbox.shortener import service_command
from labkit.secrets import SecretRef, resolve
from tests.conftest import write_sandbox_params


def _write_secret(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_urlsafe(24) + "\n")


def _healthy(lab: Lab) -> bool:
    try:
        return httpx.get(f"{lab.shlink.base_url}/rest/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """PostgreSQL (no standby), Redis master + 2 replicas + 3 Sentinels, and the service."""
    directory = tmp_path_factory.mktemp("shortener-stack")
    base = write_sandbox_params(directory, name="shortener-stack")
    own = directory / "own.yaml"
    own.write_text(yaml.safe_dump({"extends": str(base), "postgres": {"standby_port": None}}))
    lab = load_lab(own)
    assert lab.sandbox is not None
    state = lab.path(lab.sandbox.state_dir)
    for ref in (lab.postgres.password, lab.shlink.api_key):
        assert ref.file is not None
        _write_secret(lab.path(ref.file))
    pg_file = lab.postgres.password.file
    assert pg_file is not None
    quiet = lambda message: None  # noqa: E731
    service = processes.Managed("shortener", state / "run" / "s.pid", state / "logs" / "s.log")
    try:
        postgres.start_postgres(lab, state, resolve(SecretRef(file=lab.path(pg_file))), quiet)
        sandbox_redis.start_redis(lab, state, quiet)
        argv, env = service_command(lab, state)
        service = processes.start("shortener", argv, state, env=env)
        processes.poll_until("shortener", lambda: _healthy(lab), 60, service, interval_s=0.2)
        yield lab
    finally:
        processes.stop(service)
        sandbox_redis.stop_redis(lab, state)
        postgres.stop_postgres(state)
