"""Shlink's data shapes: request validation, problem+json errors, and the JSON the API returns."""

from __future__ import annotations

import datetime as dt
import math
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "BOT_MARKERS",
    "EARLIEST",
    "LATEST",
    "MAX_INTEGER",
    "MAX_LONG_URL",
    "MAX_SHORT_CODE",
    "MAX_TAG",
    "MAX_TAGS",
    "MIN_SHORT_CODE_LENGTH",
    "Problem",
    "ShortUrlFields",
    "format_date",
    "is_bot",
    "pagination",
    "parse_creation",
    "parse_edition",
    "short_url_json",
    "storable_problem",
    "visit_json",
]

_ERROR_BASE = "https://shlink.io/api/error/"
_LONG_URL = re.compile(r"^(.+):(.+)$", re.S)  # Shlink only insists on a scheme-like prefix
_SLUG_FORBIDDEN = set(":?#[]@")
# Bounds of what the service stores, so that everything stored can be read back and served.
MAX_LONG_URL = 2048  # characters: the de-facto URL limit of browsers and the sitemaps protocol
MAX_SHORT_CODE = 255  # characters of pathPrefix + code: Shlink's short_code is varchar(255)
MIN_SHORT_CODE_LENGTH = 4  # Shlink's documented minimum for shortCodeLength
MAX_TAG = 255  # characters of one tag: Shlink's tags.name is varchar(255)
MAX_TAGS = 100  # tags per short URL (bounds the work of one request)
MAX_TITLE = 512  # Shlink truncates longer titles
MAX_INTEGER = 2**31 - 1  # PostgreSQL integer (max_visits) and the page numbers of a listing
# timestamptz values psycopg can read back into Python in any session time zone: a day inside
# datetime's years 1..9999 (9999-12-31T23:59:59-12:00 is year 10000 in UTC, and is refused).
EARLIEST = dt.datetime(1, 1, 2, tzinfo=dt.UTC)
LATEST = dt.datetime(9999, 12, 30, 23, 59, 59, tzinfo=dt.UTC)
_RESERVED_CODES = {".", "..", "metrics"}  # unreachable as a path segment, or another route
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
    def invalid_data(cls, elements: list[str], reasons: list[str] | None = None) -> Problem:
        """400 invalid-data naming the bad fields (and, when known, why and the bound)."""
        detail = "Provided data is not valid"
        if reasons:
            detail += ": " + "; ".join(dict.fromkeys(reasons))
        return cls(
            400, "invalid-data", "Invalid data", detail, invalidElements=sorted(set(elements))
        )

    @classmethod
    def http(cls, status: int, title: str, detail: str, **extra: Any) -> Problem:
        """A problem Shlink has no type of its own for: mezzio-problem-details' default type."""
        problem = cls(status, "", title, detail, **extra)
        problem.body["type"] = f"https://httpstatus.es/{status}"
        return problem

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


class _Invalid:
    """The bad fields of one request and, where there is one, the reason each is refused."""

    def __init__(self) -> None:
        self.elements: list[str] = []
        self.reasons: list[str] = []

    def add(self, element: str, reason: str | None = None) -> None:
        self.elements.append(element)
        if reason:
            self.reasons.append(reason)

    def raise_any(self) -> None:
        if self.elements:
            raise Problem.invalid_data(self.elements, self.reasons)


def storable_problem(text: str) -> str | None:
    """Why PostgreSQL cannot store ``text`` (a NUL, an unpaired surrogate), or None."""
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired surrogate"
    return None


def _control(text: str) -> bool:
    return any(unicodedata.category(char) == "Cc" for char in text)


def _date(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(value)
    parsed = dt.datetime.fromisoformat(value)
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    if not EARLIEST <= parsed <= LATEST:
        raise OverflowError(value)
    return parsed


def _tags(value: Any, invalid: _Invalid) -> list[str] | None:
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        invalid.add("tags")
        return None
    if len(value) > MAX_TAGS:
        invalid.add("tags", f"at most {MAX_TAGS} tags")
        return None
    for tag in value:
        if problem := storable_problem(tag):
            invalid.add("tags", f"a tag {problem}")
            return None
    normalised = [re.sub(r"\s+", "-", re.sub(r"<[^>]*>", "", tag).strip().lower()) for tag in value]
    if any(len(tag) > MAX_TAG for tag in normalised):
        invalid.add("tags", f"a tag has at most {MAX_TAG} characters")
        return None
    return list(dict.fromkeys(tag for tag in normalised if tag))


def _long_url(value: Any, invalid: _Invalid) -> str | None:
    """A long URL that can be stored and sent in a Location header (Shlink: ``(.+):(.+)``)."""
    if not isinstance(value, str):
        invalid.add("longUrl")
        return None
    url = value.strip()
    if len(url) > MAX_LONG_URL:
        invalid.add("longUrl", f"longUrl has at most {MAX_LONG_URL} characters")
    elif not _LONG_URL.match(url):
        invalid.add("longUrl", "longUrl needs a scheme, as in https://example.com")
    elif problem := storable_problem(url):
        invalid.add("longUrl", f"longUrl {problem}")
    elif _control(url):
        invalid.add("longUrl", "longUrl contains control characters (CR, LF, ...)")
    else:
        try:
            urlsplit(url)
        except ValueError as exc:
            invalid.add("longUrl", f"longUrl is not a URL ({exc})")
        else:
            return url
    return None


def _common(body: dict[str, Any], fields: ShortUrlFields, invalid: _Invalid) -> None:
    """Fields shared by creation and edition (Shlink's ShortUrlEdition)."""
    for name, attribute in (("validSince", "valid_since"), ("validUntil", "valid_until")):
        if name in body:
            try:
                setattr(fields, attribute, _date(body[name]))
            except OverflowError:
                invalid.add(
                    name,
                    f"{name} is between {EARLIEST.isoformat()} and {LATEST.isoformat()}",
                )
            except ValueError:
                invalid.add(name, f"{name} is an ISO-8601 date")
    if "maxVisits" in body:
        value = body["maxVisits"]
        if value is None:
            fields.max_visits = None
        elif (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 1 <= value <= MAX_INTEGER
            or not float(value).is_integer()
        ):
            invalid.add("maxVisits", f"maxVisits is an integer from 1 to {MAX_INTEGER}")
        else:
            fields.max_visits = int(value)
    if "tags" in body:
        tags = _tags(body["tags"], invalid)
        if tags is not None:
            fields.tags = tags
    if "title" in body:
        title = body["title"]
        if title is not None and not isinstance(title, str):
            invalid.add("title")
        elif title is not None and (problem := storable_problem(title)):
            invalid.add("title", f"title {problem}")
        else:
            fields.title = title[:MAX_TITLE] if title else title
    for name, attribute in (("crawlable", "crawlable"), ("forwardQuery", "forward_query")):
        if name in body:
            if isinstance(body[name], bool):
                setattr(fields, attribute, body[name])
            else:
                invalid.add(name)
    if "longUrl" in body:
        fields.long_url = _long_url(body["longUrl"], invalid)
    fields.present = set(body)


def _path_part(name: str, value: str, invalid: _Invalid) -> str | None:
    """A customSlug or pathPrefix: no reserved URL characters, nothing PostgreSQL refuses."""
    if _SLUG_FORBIDDEN & set(value):
        invalid.add(name, f"{name} contains one of {''.join(sorted(_SLUG_FORBIDDEN))}")
    elif problem := storable_problem(value):
        invalid.add(name, f"{name} {problem}")
    elif _control(value):
        invalid.add(name, f"{name} contains control characters")
    else:
        return value.strip().replace("/", "-")
    return None


def _short_code(fields: ShortUrlFields, invalid: _Invalid, length: int | None) -> None:
    """The slug (or generated code) with its prefix fits the column and is reachable."""
    if fields.custom_slug is not None:
        code = fields.path_prefix + fields.custom_slug
        if len(code) > MAX_SHORT_CODE:
            reason = f"pathPrefix + customSlug has at most {MAX_SHORT_CODE} characters"
            invalid.add("customSlug", reason)
            if fields.path_prefix:
                invalid.add("pathPrefix", reason)
        elif code in _RESERVED_CODES:
            invalid.add("customSlug", f"{code!r} cannot be a short code here")
    elif length is not None and len(fields.path_prefix) + length > MAX_SHORT_CODE:
        reason = f"pathPrefix + shortCodeLength is at most {MAX_SHORT_CODE}"
        invalid.add("pathPrefix", reason)
        invalid.add("shortCodeLength", reason)


def parse_creation(body: Any, default_domain: str) -> ShortUrlFields:
    """Validate a create request the way Shlink does; Problem(invalid-data) lists bad fields."""
    if not isinstance(body, dict):
        raise Problem.invalid_data(["longUrl"])
    fields = ShortUrlFields()
    invalid = _Invalid()
    _common(body, fields, invalid)
    if "longUrl" not in body:
        invalid.add("longUrl")
    slug = body.get("customSlug")
    if slug is not None:
        if not isinstance(slug, str) or not slug.strip():
            invalid.add("customSlug")
        else:
            fields.custom_slug = _path_part("customSlug", slug, invalid)
    prefix = body.get("pathPrefix")
    if prefix is not None:
        if not isinstance(prefix, str):
            invalid.add("pathPrefix")
        else:
            fields.path_prefix = _path_part("pathPrefix", prefix, invalid) or ""
    if "findIfExists" in body:
        if isinstance(body["findIfExists"], bool):
            fields.find_if_exists = body["findIfExists"]
        else:
            invalid.add("findIfExists")
    length = body.get("shortCodeLength", 5)
    if (
        isinstance(length, bool)
        or not isinstance(length, int)
        or not MIN_SHORT_CODE_LENGTH <= length <= MAX_SHORT_CODE
    ):
        invalid.add(
            "shortCodeLength",
            f"shortCodeLength is an integer between {MIN_SHORT_CODE_LENGTH} and {MAX_SHORT_CODE}",
        )
        length = None
    else:
        fields.short_code_length = length
    _short_code(fields, invalid, length)
    domain = body.get("domain")
    # Only the default domain exists in the sandbox; Shlink drops it to null the same way.
    if domain not in (None, "", default_domain):
        invalid.add("domain")
    invalid.raise_any()
    return fields


def parse_edition(body: Any) -> ShortUrlFields:
    """Validate a PATCH body; only the keys present will change."""
    if not isinstance(body, dict):
        raise Problem.invalid_data(["longUrl"])
    fields = ShortUrlFields()
    invalid = _Invalid()
    _common(body, fields, invalid)
    invalid.raise_any()
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
