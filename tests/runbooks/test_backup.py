"""Backup and restore: a fresh database restored from a dump equals the backup; tampering shows."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pytest

from labkit import runbooks
from labkit.errors import LabkitError
from labkit.params import load_lab
from labkit.runbooks.backup import (
    backup,
    compare,
    drop_database,
    fingerprint_database,
    restore,
)
from labkit.sandbox import Sandbox
from labkit.sandbox.postgres import superuser_connection
from labkit.shlink import ShlinkClient

REPOSITORY = Path(__file__).resolve().parents[2]
ROW = (3, "abc")


@pytest.mark.parametrize(
    ("before", "after", "equal", "differing"),
    [
        ({"public.a": ROW}, {"public.a": ROW}, True, []),
        ({"public.a": ROW}, {"public.a": (2, "abc")}, False, ["public.a"]),
        ({"public.a": ROW}, {"public.a": (3, "abd")}, False, ["public.a"]),
        ({"public.a": ROW, "public.b": ROW}, {"public.a": ROW}, False, ["public.b"]),
        ({"public.a": ROW}, {"public.a": ROW, "public.c": ROW}, False, ["public.c"]),
        ({}, {}, False, []),  # nothing compared proves nothing
        ({"public.s": (5, "sequence")}, {"public.s": (7, "sequence")}, True, []),
        ({"public.s": (5, "sequence")}, {"public.s": (4, "sequence")}, False, ["public.s"]),
    ],
)
def test_compare(
    before: dict[str, tuple[int, str]],
    after: dict[str, tuple[int, str]],
    equal: bool,
    differing: list[str],
) -> None:
    result = compare(before, after)
    assert result.equal is equal
    assert result.differing == differing


def _seed(sandbox: Sandbox, count: int = 5) -> None:
    with ShlinkClient.from_lab(sandbox.lab) as client:
        for index in range(count):
            created = client.create(f"https://example.com/runbook-backup/{index}")
            client.resolve(str(created["shortCode"]))  # a visit row too


def _execute(sandbox: Sandbox, database: str, statement: str) -> None:
    with closing(superuser_connection(sandbox.lab, sandbox.state_dir, dbname=database)) as conn:
        conn.execute(statement)


@pytest.mark.sandbox
def test_runbook_restores_into_a_fresh_database_with_equal_counts_and_checksums(
    sandbox: Sandbox,
) -> None:
    _seed(sandbox)
    outcome = runbooks.backup_restore(sandbox.lab, apply=True, keep=True)
    target = f"{sandbox.lab.postgres.database}_restore_check"
    try:
        assert outcome.status == "pass", outcome.text()
        by_table = {row["table"]: row for row in outcome.measured}
        assert by_table["public.short_urls"]["rows restored"] >= 5
        assert all(row["equal"] for row in outcome.measured)
        # Independently of the runbook's own figures: the copy holds the rows.
        with closing(
            superuser_connection(sandbox.lab, sandbox.state_dir, dbname=target)
        ) as connection:
            row = connection.execute(
                "SELECT count(*) FROM short_urls WHERE long_url LIKE %s",
                ("https://example.com/runbook-backup/%",),
            ).fetchone()
        assert row is not None and row[0] >= 5
        assert [s["state"] for s in outcome.steps] == ["done", "done", "done"]
    finally:
        drop_database(sandbox.lab, target)


@pytest.mark.sandbox
@pytest.mark.parametrize(
    "tamper",
    [
        "UPDATE short_urls SET long_url = long_url || '#x' "
        "WHERE id = (SELECT min(id) FROM short_urls)",
        "DELETE FROM visits WHERE id = (SELECT max(id) FROM visits)",
    ],
    ids=["row-changed", "row-deleted"],
)
def test_a_tampered_restore_is_detected(sandbox: Sandbox, tamper: str) -> None:
    _seed(sandbox, 2)
    made = backup(sandbox.lab)
    target = "runbook_tamper_check"
    drop_database(sandbox.lab, target)
    try:
        restore(sandbox.lab, made, target)
        assert compare(made.tables, fingerprint_database(sandbox.lab, target)).equal
        _execute(sandbox, target, tamper)
        result = compare(made.tables, fingerprint_database(sandbox.lab, target))
        table = "public.short_urls" if "short_urls" in tamper.split()[1:3] else "public.visits"
        assert not result.equal
        assert result.differing == [table]
    finally:
        drop_database(sandbox.lab, target)


@pytest.mark.sandbox
def test_the_backup_is_its_snapshot_not_the_live_database(sandbox: Sandbox) -> None:
    made = backup(sandbox.lab)
    _seed(sandbox, 2)  # written after the snapshot: in the live database, not in the dump
    target = "runbook_snapshot_check"
    drop_database(sandbox.lab, target)
    try:
        restore(sandbox.lab, made, target)
        restored = fingerprint_database(sandbox.lab, target)
        assert compare(made.tables, restored).equal
        live = fingerprint_database(sandbox.lab, sandbox.lab.postgres.database)
        assert not compare(live, restored).equal
        assert made.size_bytes > 0 and len(made.sha256()) == 64
    finally:
        drop_database(sandbox.lab, target)


@pytest.mark.sandbox
def test_restore_refuses_an_existing_database(sandbox: Sandbox) -> None:
    made = backup(sandbox.lab)
    with pytest.raises(LabkitError, match="already exists"):
        restore(sandbox.lab, made, sandbox.lab.postgres.database)
    with pytest.raises(LabkitError, match="lab's own database"):
        drop_database(sandbox.lab, sandbox.lab.postgres.database)


@pytest.mark.sandbox
def test_plan_only_changes_nothing(sandbox: Sandbox) -> None:
    folder = sandbox.state_dir / "backups"
    before = sorted(folder.glob("*.dump")) if folder.exists() else []
    outcome = runbooks.backup_restore(sandbox.lab)
    assert outcome.status == "planned"
    assert {s["state"] for s in outcome.steps} == {"planned"}
    assert "pg_dump" in outcome.steps[0]["command"]
    after = sorted(folder.glob("*.dump")) if folder.exists() else []
    assert after == before


def test_on_a_cluster_lab_it_is_a_skip_with_the_pgo_annotation() -> None:
    lab = load_lab(REPOSITORY / "params" / "homelab.yaml")
    outcome = runbooks.backup_restore(lab, apply=True)  # nothing runs: every step cannot
    assert outcome.status == "skip"
    assert "postgres-operator.crunchydata.com/pgbackrest-backup" in outcome.summary
    assert "kubectl annotate" in outcome.steps[0]["command"]


@pytest.mark.sandbox
def test_writes_during_the_backup_do_not_blur_it(sandbox: Sandbox) -> None:
    """The fingerprint and the dump see one snapshot while a writer inserts all along."""
    import threading

    _execute(sandbox, "shlink", "CREATE TABLE IF NOT EXISTS runbook_busy (id serial, at text)")
    stop, writing = threading.Event(), threading.Event()

    def write() -> None:
        with closing(superuser_connection(sandbox.lab, sandbox.state_dir, dbname="shlink")) as c:
            while not stop.is_set():
                c.execute("INSERT INTO runbook_busy (at) VALUES (clock_timestamp()::text)")
                writing.set()

    writer = threading.Thread(target=write)
    writer.start()
    target = "runbook_busy_check"
    try:
        assert writing.wait(timeout=30)
        made = backup(sandbox.lab)
        stop.set()
        writer.join(timeout=10)
        drop_database(sandbox.lab, target)
        restore(sandbox.lab, made, target)
        result = compare(made.tables, fingerprint_database(sandbox.lab, target))
        assert result.equal, result.differing
        live = fingerprint_database(sandbox.lab, "shlink")["public.runbook_busy"][0]
        assert 0 < made.tables["public.runbook_busy"][0] < live  # writes went on past it
    finally:
        stop.set()
        writer.join(timeout=10)
        drop_database(sandbox.lab, target)
        _execute(sandbox, "shlink", "DROP TABLE IF EXISTS runbook_busy")
