"""Shlink's data shapes: request validation, problem+json errors, and the JSON the API returns."""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BOT_MARKERS",
    "Problem",
    "ShortUrlFields",
    "format_date",
    "is_bot",
    "pagination",
    "parse_creation",
    "parse_edition",
    "short_url_json",
    "visit_json",
]

_ERROR_BASE = "https://shlink.io/api/error/"
_LONG_URL = re.compile(r"^(.+):(.+)$", re.S)  # Shlink only insists on a scheme-like prefix
_SLUG_FORBIDDEN = set(":?#[]@")
# User-agent fragments Shlink's crawler list (jaybizzle/crawler-detect) counts as bots.
BOT_MARKERS = (
    "bot",
    "crawler",
    "spider",
    "python-requests",
    "python-httpx",
    "aiohttp",
    "curl",
    "wget",
    "go-http-client",
    "okhttp",
    "axios/",
    "apachebench",
)


class Problem(Exception):
    """An RFC 7807 problem Shlink would answer with; ``kind`` is the tail of its ``type`` URI."""

    def __init__(self, status: int, kind: str, title: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.body: dict[str, Any] = {
            "type": _ERROR_BASE + kind,
            "title": title,
            "detail": detail,
            "status": status,
            **extra,
        }

    @classmethod
    def invalid_data(cls, elements: list[str]) -> Problem:
        """400 invalid-data naming the bad fields."""
        return cls(
            400,
            "invalid-data",
            "Invalid data",
            "Provided data is not valid",
            invalidElements=sorted(set(elements)),
        )

    @classmethod
    def not_found(cls, short_code: str) -> Problem:
        """404 short-url-not-found."""
        return cls(
            404,
            "short-url-not-found",
            "Short URL not found",
            f'No URL found with short code "{short_code}"',
            shortCode=short_code,
        )

    @classmethod
    def slug_taken(cls, slug: str) -> Problem:
        """400 non-unique-slug."""
        return cls(
            400,
            "non-unique-slug",
            "Invalid custom slug",
            f'Provided slug "{slug}" is already in use.',
            customSlug=slug,
        )


@dataclass
class ShortUrlFields:
    """Validated fields of a create or edit request (edit: only ``present`` ones change)."""

    long_url: str | None = None
    custom_slug: str | None = None
    path_prefix: str = ""
    find_if_exists: bool = False
    short_code_length: int = 5
    valid_since: dt.datetime | None = None
    valid_until: dt.datetime | None = None
    max_visits: int | None = None
    tags: list[str] = field(default_factory=list)
    title: str | None = None
    crawlable: bool = False
    forward_query: bool = True
    present: set[str] = field(default_factory=set)


def _date(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(value)
    parsed = dt.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _tags(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        raise ValueError(value)
    normalised = [re.sub(r"\s+", "-", re.sub(r"<[^>]*>", "", tag).strip().lower()) for tag in value]
    return list(dict.fromkeys(tag for tag in normalised if tag))


def _common(body: dict[str, Any], fields: ShortUrlFields, bad: list[str]) -> None:
    """Fields shared by creation and edition (Shlink's ShortUrlEdition)."""
    for name, attribute in (("validSince", "valid_since"), ("validUntil", "valid_until")):
        if name in body:
            try:
                setattr(fields, attribute, _date(body[name]))
            except ValueError:
                bad.append(name)
    if "maxVisits" in body:
        value = body["maxVisits"]
        if value is None:
            fields.max_visits = None
        elif isinstance(value, bool) or not isinstance(value, int | float) or value < 1:
            bad.append("maxVisits")
        elif float(value).is_integer():
            fields.max_visits = int(value)
        else:
            bad.append("maxVisits")
    if "tags" in body:
        try:
            fields.tags = _tags(body["tags"])
        except ValueError:
            bad.append("tags")
    if "title" in body:
        title = body["title"]
        if title is not None and not isinstance(title, str):
            bad.append("title")
        else:
            fields.title = title[:512] if title else title
    for name, attribute in (("crawlable", "crawlable"), ("forwardQuery", "forward_query")):
        if name in body:
            if isinstance(body[name], bool):
                setattr(fields, attribute, body[name])
            else:
                bad.append(name)
    if "longUrl" in body:
        long_url = body["longUrl"]
        if not isinstance(long_url, str) or not _LONG_URL.match(long_url.strip()):
            bad.append("longUrl")
        else:
            fields.long_url = long_url.strip()
    fields.present = set(body)


def parse_creation(body: Any, default_domain: str) -> ShortUrlFields:
    """Validate a create request the way Shlink does; Problem(invalid-data) lists bad fields."""
    if not isinstance(body, dict):
        raise Problem.invalid_data(["longUrl"])
    fields = ShortUrlFields()
    bad: list[str] = []
    _common(body, fields, bad)
    if "longUrl" not in body:
        bad.append("longUrl")
    slug = body.get("customSlug")
    if slug is not None:
        if not isinstance(slug, str) or not slug.strip() or _SLUG_FORBIDDEN & set(slug):
            bad.append("customSlug")
        else:
            fields.custom_slug = slug.strip().replace("/", "-")
    prefix = body.get("pathPrefix")
    if prefix is not None:
        if not isinstance(prefix, str) or _SLUG_FORBIDDEN & set(prefix):
            bad.append("pathPrefix")
        else:
            fields.path_prefix = prefix.strip().replace("/", "-")
    if "findIfExists" in body:
        if isinstance(body["findIfExists"], bool):
            fields.find_if_exists = body["findIfExists"]
        else:
            bad.append("findIfExists")
    length = body.get("shortCodeLength", 5)
    if isinstance(length, bool) or not isinstance(length, int) or length < 4:
        bad.append("shortCodeLength")
    else:
        fields.short_code_length = length
    domain = body.get("domain")
    # Only the default domain exists in the sandbox; Shlink drops it to null the same way.
    if domain not in (None, "", default_domain):
        bad.append("domain")
    if bad:
        raise Problem.invalid_data(bad)
    return fields


def parse_edition(body: Any) -> ShortUrlFields:
    """Validate a PATCH body; only the keys present will change."""
    if not isinstance(body, dict):
        raise Problem.invalid_data(["longUrl"])
    fields = ShortUrlFields()
    bad: list[str] = []
    _common(body, fields, bad)
    if bad:
        raise Problem.invalid_data(bad)
    return fields


def format_date(value: dt.datetime | None) -> str | None:
    """ISO-8601 with offset and no fractional seconds, in UTC (as Shlink's toAtomString)."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).replace(microsecond=0).isoformat()


def short_url_json(row: dict[str, Any], default_domain: str) -> dict[str, Any]:
    """The ShortUrl object Shlink returns, from a database row."""
    total = int(row.get("visits_total") or 0)
    bots = int(row.get("visits_bots") or 0)
    return {
        "shortCode": row["short_code"],
        "shortUrl": f"https://{default_domain}/{row['short_code']}",
        "longUrl": row["long_url"],
        "dateCreated": format_date(row["date_created"]),
        "visitsSummary": {"total": total, "nonBots": total - bots, "bots": bots},
        "tags": list(row["tags"]),
        "meta": {
            "validSince": format_date(row["valid_since"]),
            "validUntil": format_date(row["valid_until"]),
            "maxVisits": row["max_visits"],
        },
        "domain": None,
        "title": row["title"],
        "crawlable": row["crawlable"],
        "forwardQuery": row["forward_query"],
        "hasRedirectRules": False,
    }


def visit_json(row: dict[str, Any]) -> dict[str, Any]:
    """A Visit object; ``visitLocation`` is ``{}`` (unlocated), as the published schema allows."""
    return {
        "referer": row["referer"],
        "date": format_date(row["date"]),
        "userAgent": row["user_agent"],
        "visitLocation": {},
        "potentialBot": row["potential_bot"],
        "visitedUrl": row["visited_url"],
        "redirectUrl": row["redirect_url"],
    }


def pagination(page: int, per_page: int, total: int, in_page: int) -> dict[str, int]:
    """Shlink's pagination object (``per_page`` -1 means everything on one page)."""
    pages = 1 if per_page < 1 else max(1, math.ceil(total / per_page))
    return {
        "currentPage": page,
        "pagesCount": pages,
        "itemsPerPage": per_page if per_page > 0 else total,
        "itemsInCurrentPage": in_page,
        "totalItems": total,
    }


def is_bot(user_agent: str) -> bool:
    """True when the user agent looks like a crawler or a scripted client (empty counts)."""
    lowered = user_agent.lower()
    return not lowered or any(marker in lowered for marker in BOT_MARKERS)
