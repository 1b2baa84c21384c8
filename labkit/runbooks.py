"""Runbooks that run (roadmap 7.2): each step of ``docs/runbooks/`` backed by one labkit call.

So far: backup and restore of PostgreSQL (``backup_restore``). Plan first: without
``apply`` it says what it would do; with it, on the sandbox, it dumps the lab's
database at one snapshot, restores it into a fresh database and proves equal row
counts and checksums per table. On a cluster the backup is PGO's pgBackRest
(an annotation on the PostgresCluster), which needs the cluster layer labkit does
not have yet: it says ``skip`` and why.
"""

from __future__ import annotations

from typing import Any

from labkit.params import Lab

__all__ = ["backup_restore"]


def backup_restore(lab: Lab, apply: bool = False, keep: bool = False) -> Any:
    """The backup/restore runbook: its plan, or (``apply``) its run with the comparison table."""
    import pandas as pd  # noqa: PLC0415

    if lab.kind != "sandbox":
        print(
            f"skip: on lab {lab.name} the backup is PGO's pgBackRest (annotation "
            "postgres-operator.crunchydata.com/pgbackrest-backup on the PostgresCluster), which "
            "needs the cluster layer labkit does not have yet"
        )
        return None
    if not apply:
        print("plan (apply = True runs it; the lab's own database is only read):")
        return pd.DataFrame(
            [
                {
                    "step": 1,
                    "does": f"pg_dump -Fc of {lab.postgres.database} at an exported "
                    "snapshot of the primary, and the source's row counts and checksums in it",
                },
                {
                    "step": 2,
                    "does": f"CREATE DATABASE {lab.postgres.database}_restore_<time>; "
                    "pg_restore the dump into it",
                },
                {"step": 3, "does": "row count and md5 checksum of every table, both sides"},
                {"step": 4, "does": "DROP the restored database" + (" (kept)" if keep else "")},
            ]
        )
    from labkit.sandbox.backup import backup_and_restore  # noqa: PLC0415
    from labkit.sandbox.supervisor import state_dir_of  # noqa: PLC0415

    result = backup_and_restore(lab, state_dir_of(lab), keep=keep)
    print(
        f"dump {result.dump} ({result.dump_bytes:,} bytes) restored into {result.database}"
        f"{' (kept)' if keep else ' (dropped afterwards)'}: "
        + ("every table equal" if result.equal else "NOT EQUAL")
    )
    return pd.DataFrame(result.rows())
