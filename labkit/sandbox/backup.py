"""Backup and restore of the sandbox's database, proven by row counts and checksums.

``pg_dump`` (custom format) runs against an exported snapshot of the primary,
and the checksums of the source are computed in that very snapshot, so the
comparison is exact even while the service keeps writing. The dump is restored
with ``pg_restore`` into a fresh database; each table's row count and checksum
(md5 over its rows in a stable order) in the restored database must equal the
source's. The fresh database is dropped afterwards unless asked to keep it.
"""

from __future__ import annotations

import datetime as dt
import os
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg import sql

from labkit.errors import LabkitError
from labkit.params import Lab
from labkit.sandbox import postgres
from labkit.stores import PostgresConnection

__all__ = ["Restored", "TableFigures", "backup_and_restore", "table_figures"]


@dataclass(frozen=True)
class TableFigures:
    """One table's row count and checksum (md5 of its rows, ordered by their text)."""

    table: str
    rows: int
    checksum: str


@dataclass
class Restored:
    """A backup restored into a fresh database, and the comparison with the source."""

    dump: Path
    database: str
    dump_bytes: int
    source: list[TableFigures] = field(default_factory=list)
    restored: list[TableFigures] = field(default_factory=list)
    kept: bool = False

    @property
    def equal(self) -> bool:
        """Every table present on both sides with the same rows and checksum."""
        return bool(self.source) and self.source == self.restored

    def rows(self) -> list[dict[str, Any]]:
        """Per table: rows and checksum on both sides, and whether they match."""
        restored = {figures.table: figures for figures in self.restored}
        table = []
        for figures in self.source:
            other = restored.get(figures.table)
            table.append(
                {
                    "table": figures.table,
                    "rows (source)": figures.rows,
                    "rows (restored)": other.rows if other else None,
                    "checksum (source)": figures.checksum,
                    "checksum (restored)": other.checksum if other else None,
                    "equal": other == figures,
                }
            )
        return table


_TABLES = """
SELECT quote_ident(schemaname) || '.' || quote_ident(tablename)
FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1
"""


def table_figures(connection: PostgresConnection) -> list[TableFigures]:
    """Row count and checksum of every user table the connection's database holds."""
    tables = [row[0] for row in connection.execute(_TABLES).fetchall()]
    figures = []
    for name in tables:
        schema, _, table = name.partition(".")
        identifier = sql.Identifier(schema.strip('"'), table.strip('"'))
        row = connection.execute(
            sql.SQL(
                "SELECT count(*), coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '')"
                " FROM {} AS t"
            ).format(identifier)
        ).fetchone()
        if row is None:
            raise LabkitError(f"sandbox postgres: no answer counting {name}")
        figures.append(TableFigures(name, int(row[0]), str(row[1])))
    return figures


def _passfile(lab: Lab, state_dir: Path) -> Path:
    password = postgres._internal_secret(state_dir, "superuser")
    path = postgres._directory(state_dir) / "secrets" / "pgpass-superuser"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(f"{lab.postgres.host}:*:*:{postgres.SUPERUSER}:{password.reveal()}\n")
    return path


def _connect(lab: Lab, state_dir: Path, database: str) -> PostgresConnection:
    password = postgres._internal_secret(state_dir, "superuser")
    return postgres.connect(
        lab.postgres.host, lab.postgres.port, postgres.SUPERUSER, password, database, timeout_s=5
    )


def backup_and_restore(lab: Lab, state_dir: Path, keep: bool = False) -> Restored:
    """Dump the lab's database at one snapshot, restore it into a fresh database, compare."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
    source_db = lab.postgres.database
    fresh = f"{source_db}_restore_{stamp}"
    folder = postgres._directory(state_dir) / "backups"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    dump = folder / f"{source_db}-{stamp}.dump"
    passfile = _passfile(lab, state_dir)
    tools = postgres.binaries_dir()
    common = ["-h", lab.postgres.host, "-p", str(lab.postgres.port), "-U", postgres.SUPERUSER]
    env = {"PGPASSFILE": str(passfile)}
    result = Restored(dump, fresh, 0, kept=keep)
    with closing(_connect(lab, state_dir, source_db)) as source:
        # One snapshot for the dump and the source's checksums: writes meanwhile change neither.
        source.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        exported = source.execute("SELECT pg_export_snapshot()").fetchone()
        if exported is None:
            raise LabkitError("sandbox postgres: pg_export_snapshot() returned nothing")
        postgres._run_tool(
            "pg_dump",
            [
                str(tools / "pg_dump"),
                *common,
                "-Fc",
                f"--snapshot={exported[0]}",
                "-f",
                str(dump),
                source_db,
            ],
            env,
        )
        result.source = table_figures(source)
        source.execute("COMMIT")
    result.dump_bytes = dump.stat().st_size
    with closing(_connect(lab, state_dir, "postgres")) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(fresh), sql.Identifier(lab.postgres.user)
            )
        )
    try:
        postgres._run_tool(
            "pg_restore",
            [
                str(tools / "pg_restore"),
                *common,
                "-d",
                fresh,
                "--no-owner",
                "--exit-on-error",
                str(dump),
            ],
            env,
        )
        with closing(_connect(lab, state_dir, fresh)) as restored:
            result.restored = table_figures(restored)
    finally:
        if not keep:
            drop(lab, state_dir, fresh)
    return result


def drop(lab: Lab, state_dir: Path, database: str) -> None:
    """Drop a restored database (never the lab's own)."""
    if database == lab.postgres.database:
        raise LabkitError(f"sandbox postgres: refusing to drop the lab's own database {database}")
    with closing(_connect(lab, state_dir, "postgres")) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )
