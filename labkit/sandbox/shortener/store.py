"""PostgreSQL storage of short URLs and visits (psycopg 3, async pool): Shlink's tables, small."""

from __future__ import annotations

import datetime as dt
import secrets
import string
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from labkit.sandbox.shortener.model import Problem, ShortUrlFields

__all__ = ["ORDERABLE", "Store", "Target", "conninfo"]

_ALPHABET = string.digits + string.ascii_letters  # Shlink's strict-mode alphabet
_SCHEMA_LOCK = 0x5348_4C4B  # advisory lock id: two workers start together and both migrate
_SLOTS = 100  # Shlink spreads each URL's visit counter over slots to avoid row contention

_SCHEMA = """
CREATE TABLE IF NOT EXISTS short_urls (
    id bigserial PRIMARY KEY,
    short_code text NOT NULL UNIQUE,
    long_url text NOT NULL,
    date_created timestamptz NOT NULL DEFAULT now(),
    valid_since timestamptz,
    valid_until timestamptz,
    max_visits integer,
    title text,
    crawlable boolean NOT NULL DEFAULT false,
    forward_query boolean NOT NULL DEFAULT true,
    tags text[] NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS short_urls_long_url_hash ON short_urls (md5(long_url));
CREATE TABLE IF NOT EXISTS visits (
    id bigserial PRIMARY KEY,
    short_url_id bigint REFERENCES short_urls (id) ON DELETE CASCADE,
    date timestamptz NOT NULL DEFAULT now(),
    referer text NOT NULL DEFAULT '',
    user_agent text NOT NULL DEFAULT '',
    potential_bot boolean NOT NULL DEFAULT false,
    visited_url text,
    redirect_url text,
    type text NOT NULL
);
CREATE INDEX IF NOT EXISTS visits_short_url_date ON visits (short_url_id, date);
CREATE TABLE IF NOT EXISTS short_url_visits_counts (
    short_url_id bigint NOT NULL REFERENCES short_urls (id) ON DELETE CASCADE,
    potential_bot boolean NOT NULL,
    slot_id integer NOT NULL,
    count bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (short_url_id, potential_bot, slot_id)
);
"""

_SELECT = """
SELECT s.*, coalesce(c.total, 0) AS visits_total, coalesce(c.bots, 0) AS visits_bots
FROM short_urls s
LEFT JOIN LATERAL (
    SELECT sum(count) AS total, sum(count) FILTER (WHERE potential_bot) AS bots
    FROM short_url_visits_counts WHERE short_url_id = s.id
) c ON true
"""

# orderBy values Shlink accepts, mapped to SQL (visits orders by the summed counter).
ORDERABLE = {
    "longUrl": "s.long_url",
    "shortCode": "s.short_code",
    "dateCreated": "s.date_created",
    "title": "s.title",
    "visits": "visits_total",
    "nonBotVisits": "(coalesce(c.total, 0) - coalesce(c.bots, 0))",
}


@dataclass(frozen=True)
class Target:
    """What a redirect needs to know about a short URL."""

    id: int
    long_url: str
    forward_query: bool
    valid_since: dt.datetime | None
    valid_until: dt.datetime | None
    max_visits: int | None

    def enabled(self, visits: int, now: dt.datetime) -> bool:
        """False once expired, before its start, or when its visit budget is spent."""
        if self.valid_since is not None and now < self.valid_since:
            return False
        if self.valid_until is not None and now > self.valid_until:
            return False
        return self.max_visits is None or visits < self.max_visits

    def to_cache(self) -> dict[str, Any]:
        """JSON-ready form for the redirect cache."""
        return {
            "id": self.id,
            "long_url": self.long_url,
            "forward_query": self.forward_query,
            "valid_since": self.valid_since.isoformat() if self.valid_since else None,
            "valid_until": self.valid_until.isoformat() if self.valid_until else None,
            "max_visits": self.max_visits,
        }

    @classmethod
    def from_cache(cls, data: dict[str, Any]) -> Target:
        """Inverse of ``to_cache``."""
        since, until = data["valid_since"], data["valid_until"]
        return cls(
            id=int(data["id"]),
            long_url=str(data["long_url"]),
            forward_query=bool(data["forward_query"]),
            valid_since=dt.datetime.fromisoformat(since) if since else None,
            valid_until=dt.datetime.fromisoformat(until) if until else None,
            max_visits=data["max_visits"],
        )


class Store:
    """Short URLs and visits in PostgreSQL, through a connection pool shared by one worker."""

    def __init__(self, conninfo: str, pool_size: int = 8) -> None:
        self.pool: AsyncConnectionPool[AsyncConnection[dict[str, Any]]] = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=pool_size,
            open=False,
            timeout=5.0,
            kwargs={"row_factory": dict_row, "autocommit": False},
            connection_class=AsyncConnection[dict[str, Any]],
        )

    async def open(self) -> None:
        """Open the pool (without waiting: PostgreSQL may come up after us) and migrate."""
        await self.pool.open(wait=False)
        await self.migrate()

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.pool.close()

    async def migrate(self) -> None:
        """Create the tables when missing; safe to run from every worker at once."""
        async with self.pool.connection() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for statement in filter(str.strip, _SCHEMA.split(";")):
                await connection.execute(sql.SQL(statement))

    async def healthy(self) -> bool:
        """True when ``SELECT 1`` answers (Shlink's health probe checks only the database)."""
        try:
            async with self.pool.connection(timeout=2.0) as connection:
                await connection.execute("SELECT 1")
        except (psycopg.Error, OSError):  # unhealthy is an answer, reported with 503
            return False
        return True

    async def create(self, fields: ShortUrlFields) -> dict[str, Any]:
        """Insert a short URL (generated code unless a slug is given); the row with visit counts."""
        async with self.pool.connection() as connection:
            for _ in range(10):
                code = fields.path_prefix + (
                    fields.custom_slug
                    or "".join(secrets.choice(_ALPHABET) for _ in range(fields.short_code_length))
                )
                cursor = await connection.execute(
                    """INSERT INTO short_urls (short_code, long_url, valid_since, valid_until,
                           max_visits, title, crawlable, forward_query, tags)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
                       ON CONFLICT (short_code) DO NOTHING RETURNING id""",
                    (
                        code,
                        fields.long_url,
                        fields.valid_since,
                        fields.valid_until,
                        fields.max_visits,
                        fields.title,
                        fields.crawlable,
                        fields.forward_query,
                        fields.tags,
                    ),
                )
                inserted = await cursor.fetchone()
                await connection.commit()
                row = inserted and await self._one(connection, "s.id = %s", inserted["id"])
                if row:
                    return row
                if fields.custom_slug:
                    raise Problem.slug_taken(fields.custom_slug)
        raise Problem(
            500,
            "internal-server-error",
            "Internal server error",
            "could not find a free short code after 10 tries",
        )

    async def find_existing(self, fields: ShortUrlFields) -> dict[str, Any] | None:
        """The newest short URL matching every given field (Shlink's ``findIfExists``)."""
        conditions = ["md5(s.long_url) = md5(%s)", "s.long_url = %s"]
        values: list[Any] = [fields.long_url, fields.long_url]
        if fields.custom_slug:
            conditions.append("s.short_code = %s")
            values.append(fields.path_prefix + fields.custom_slug)
        if "tags" in fields.present:
            conditions.append("s.tags @> %s AND s.tags <@ %s")
            values += [fields.tags, fields.tags]
        for name, column in (
            ("validSince", "valid_since"),
            ("validUntil", "valid_until"),
            ("maxVisits", "max_visits"),
        ):
            if name in fields.present:
                conditions.append(f"s.{column} IS NOT DISTINCT FROM %s")
                values.append(getattr(fields, column))
        where = " AND ".join(conditions) + " ORDER BY s.date_created DESC, s.id DESC"
        async with self.pool.connection() as connection:
            return await self._one(connection, where, *values)

    async def get(self, code: str) -> dict[str, Any]:
        """The short URL ``code``; Problem(short-url-not-found) when there is none."""
        async with self.pool.connection() as connection:
            row = await self._one(connection, "s.short_code = %s", code)
        if row is None:
            raise Problem.not_found(code)
        return row

    async def edit(self, code: str, fields: ShortUrlFields) -> dict[str, Any]:
        """Change the fields present in the request; the updated row."""
        columns = {
            "longUrl": "long_url",
            "validSince": "valid_since",
            "validUntil": "valid_until",
            "maxVisits": "max_visits",
            "tags": "tags",
            "title": "title",
            "crawlable": "crawlable",
            "forwardQuery": "forward_query",
        }
        changes = [
            (column, getattr(fields, column))
            for key, column in columns.items()
            if key in fields.present
        ]
        async with self.pool.connection() as connection:
            if changes:
                assignments = sql.SQL(", ").join(
                    sql.SQL("{} = %s").format(sql.Identifier(column)) for column, _ in changes
                )
                query = sql.SQL("UPDATE short_urls SET {} WHERE short_code = %s").format(
                    assignments
                )
                await connection.execute(query, [value for _, value in changes] + [code])
                await connection.commit()
            row = await self._one(connection, "s.short_code = %s", code)
        if row is None:
            raise Problem.not_found(code)
        return row

    async def delete(self, code: str) -> None:
        """Delete ``code`` and its visits; Problem(short-url-not-found) when there is none."""
        async with self.pool.connection() as connection:
            cursor = await connection.execute(
                "DELETE FROM short_urls WHERE short_code = %s RETURNING id", (code,)
            )
            gone = await cursor.fetchone()
            await connection.commit()
        if gone is None:
            raise Problem.not_found(code)

    async def page(
        self,
        page: int,
        per_page: int,
        search: str | None = None,
        tags: list[str] | None = None,
        order: tuple[str, str] = ("s.date_created", "DESC"),
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of short URLs (newest first by default) and the total count."""
        conditions = ["true"]
        values: list[Any] = []
        if search:
            conditions.append("(s.long_url ILIKE %s OR s.short_code ILIKE %s OR s.title ILIKE %s)")
            values += [f"%{search}%"] * 3
        if tags:
            conditions.append("s.tags && %s")
            values.append(tags)
        where = " AND ".join(conditions)
        limit = (
            "" if per_page < 1 else f" LIMIT {int(per_page)} OFFSET {int((page - 1) * per_page)}"
        )
        column, direction = order
        async with self.pool.connection() as connection:
            cursor = await connection.execute(
                f"{_SELECT} WHERE {where} ORDER BY {column} {direction}, s.id DESC{limit}",
                values,
            )
            rows = await cursor.fetchall()
            cursor = await connection.execute(
                f"SELECT count(*) AS n FROM short_urls s WHERE {where}",
                values,
            )
            total = await cursor.fetchone()
            await connection.rollback()
        return rows, int(total["n"]) if total else 0

    async def visits(self, code: str, page: int, per_page: int) -> tuple[list[dict[str, Any]], int]:
        """One page of ``code``'s visits, newest first, and their total."""
        row = await self.get(code)
        limit = (
            "" if per_page < 1 else f" LIMIT {int(per_page)} OFFSET {int((page - 1) * per_page)}"
        )
        async with self.pool.connection() as connection:
            cursor = await connection.execute(
                f"SELECT * FROM visits WHERE short_url_id = %s ORDER BY date DESC, id DESC{limit}",
                (row["id"],),
            )
            rows = await cursor.fetchall()
            cursor = await connection.execute(
                "SELECT count(*) AS n FROM visits WHERE short_url_id = %s", (row["id"],)
            )
            total = await cursor.fetchone()
            await connection.rollback()
        return rows, int(total["n"]) if total else 0

    async def target(self, code: str) -> Target | None:
        """The redirect target of ``code`` read from the database (None when unknown)."""
        async with self.pool.connection() as connection:
            cursor = await connection.execute(
                """SELECT id, long_url, forward_query, valid_since, valid_until, max_visits
                   FROM short_urls WHERE short_code = %s""",
                (code,),
            )
            row = await cursor.fetchone()
            await connection.rollback()
        return Target(**row) if row else None

    async def visit_total(self, short_url_id: int) -> int:
        """Visits recorded so far (only needed for URLs with a visit limit)."""
        async with self.pool.connection() as connection:
            cursor = await connection.execute(
                "SELECT coalesce(sum(count), 0) AS n FROM short_url_visits_counts "
                "WHERE short_url_id = %s",
                (short_url_id,),
            )
            row = await cursor.fetchone()
            await connection.rollback()
        return int(row["n"]) if row else 0

    async def record_visit(
        self,
        short_url_id: int | None,
        *,
        user_agent: str,
        referer: str,
        bot: bool,
        visited_url: str,
        redirect_url: str | None,
    ) -> None:
        """Insert a visit and bump the slotted counter in one transaction, as Shlink does."""
        kind = "valid_short_url" if short_url_id is not None else "invalid_short_url"
        async with self.pool.connection() as connection, connection.transaction():
            await connection.execute(
                """INSERT INTO visits (short_url_id, referer, user_agent, potential_bot,
                       visited_url, redirect_url, type) VALUES (%s, %s, %s, %s, %s, %s, %s)""",
                (short_url_id, referer, user_agent, bot, visited_url, redirect_url, kind),
            )
            if short_url_id is not None:
                await connection.execute(
                    """INSERT INTO short_url_visits_counts (short_url_id, potential_bot, slot_id)
                       VALUES (%s, %s, %s) ON CONFLICT (short_url_id, potential_bot, slot_id)
                       DO UPDATE SET count = short_url_visits_counts.count + 1""",
                    (short_url_id, bot, secrets.randbelow(_SLOTS)),
                )

    @staticmethod
    async def _one(
        connection: AsyncConnection[dict[str, Any]], where: str, *values: Any
    ) -> dict[str, Any] | None:
        cursor = await connection.execute(f"{_SELECT} WHERE {where} LIMIT 1", values)
        row = await cursor.fetchone()
        await connection.rollback()
        return row


def conninfo(
    host: str,
    port: int,
    database: str,
    user: str,
    password: str,
    standby_port: int | None = None,
) -> str:
    """A libpq connection string (the password stays inside this process).

    With a ``standby_port`` libpq tries both servers and keeps the one that accepts
    writes (``target_session_attrs=read-write``), so after a failover the service
    follows the promoted standby, as a client of a Kubernetes primary Service would.
    """
    from psycopg.conninfo import make_conninfo  # noqa: PLC0415

    if standby_port is None:
        return make_conninfo(
            host=host,
            port=port,
            dbname=database,
            user=user,
            password=password,
            connect_timeout=5,
            application_name="labkit-shortener",
        )
    return make_conninfo(
        host=f"{host},{host}",
        port=f"{port},{standby_port}",
        dbname=database,
        user=user,
        password=password,
        connect_timeout=5,
        application_name="labkit-shortener",
        target_session_attrs="read-write",
    )
