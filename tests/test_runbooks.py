"""Runbooks that run: backup and restore into a fresh database, proven by counts and checksums."""

from __future__ import annotations

from contextlib import closing

import pytest

from labkit.params import Lab
from labkit.runbooks import backup_restore
from labkit.sandbox import Sandbox
from labkit.sandbox.backup import _connect, backup_and_restore, drop, table_figures
from labkit.shlink import ShlinkClient

pytestmark = pytest.mark.sandbox


def _seed(lab: Lab) -> None:
    with ShlinkClient.from_lab(lab) as client:
        for index in range(5):
            client.create(f"https://example.com/labkit-runbook/{index}", find_if_exists=True)


def test_backup_restores_into_a_new_database_with_equal_counts_and_checksums(
    sandbox: Sandbox, sandbox_lab: Lab
) -> None:
    _seed(sandbox_lab)
    result = backup_and_restore(sandbox_lab, sandbox.state_dir)
    tables = {figures.table: figures for figures in result.source}
    assert "public.short_urls" in tables and tables["public.short_urls"].rows >= 5
    assert result.equal, result.rows()
    assert all(row["equal"] for row in result.rows())
    assert result.dump.stat().st_size == result.dump_bytes > 0
    # Dropped afterwards: the lab keeps only its own database.
    with closing(_connect(sandbox_lab, sandbox.state_dir, "postgres")) as admin:
        names = [row[0] for row in admin.execute("SELECT datname FROM pg_database").fetchall()]
    assert result.database not in names


def test_a_restored_database_that_lost_a_row_is_caught(sandbox: Sandbox, sandbox_lab: Lab) -> None:
    _seed(sandbox_lab)
    result = backup_and_restore(sandbox_lab, sandbox.state_dir, keep=True)
    try:
        with closing(_connect(sandbox_lab, sandbox.state_dir, result.database)) as restored:
            restored.execute("DELETE FROM short_urls WHERE id = (SELECT max(id) FROM short_urls)")
            result.restored = table_figures(restored)
        assert not result.equal
        bad = [row for row in result.rows() if not row["equal"]]
        assert [row["table"] for row in bad] == ["public.short_urls"]
        assert bad[0]["rows (restored)"] == bad[0]["rows (source)"] - 1
    finally:
        drop(sandbox_lab, sandbox.state_dir, result.database)


def test_the_runbook_plans_without_apply_and_refuses_to_drop_the_lab_database(
    sandbox_lab: Lab,
) -> None:
    plan = backup_restore(sandbox_lab)
    assert list(plan["step"]) == [1, 2, 3, 4]
    with pytest.raises(Exception, match="refusing to drop"):
        drop(sandbox_lab, sandbox_lab.path(sandbox_lab.sandbox.state_dir), "shlink")  # type: ignore[union-attr]
