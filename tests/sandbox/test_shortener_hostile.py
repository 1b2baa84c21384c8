"""Hostile input against the sandbox service's REST API: refused at the edge, nothing stored.

The promise (issue 15): every answer is 2xx with a short URL that can be read
back and served, or a 4xx problem+json with nothing stored; the health check,
listing and the redirect of a known-good URL keep working throughout. The
cases the probe found are tables; the property tests generate the rest. All of
it runs against a stack of this module's own (real PostgreSQL 18 and Redis).
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time
from collections.abc import Iterator
from contextlib import closing
from typing import Any
from urllib.parse import quote, unquote

import httpx
import psycopg
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from labkit.params import Lab
from labkit.secrets import SecretRef, resolve
from labkit.stores import lab_postgres

pytestmark = pytest.mark.slow

PROBLEM = "application/problem+json"
ERROR = "https://shlink.io/api/error/"
GOOD_URL = "https://example.com/known-good?a=1"


def _secret(lab: Lab, ref: SecretRef) -> str:
    assert ref.file is not None
    return resolve(SecretRef(file=lab.path(ref.file))).reveal()


@pytest.fixture(scope="module")
def api(own_stack: Lab) -> Iterator[httpx.Client]:
    """A raw client with the API key: bodies are sent as bytes, so anything can be sent."""
    key = _secret(own_stack, own_stack.shlink.api_key)
    with httpx.Client(
        base_url=own_stack.shlink.base_url,
        headers={"X-Api-Key": key},
        timeout=15,
        trust_env=False,
    ) as client:
        yield client


@pytest.fixture(scope="module")
def database(own_stack: Lab) -> Iterator[psycopg.Connection[Any]]:
    """The stack's database, to count what is stored behind the API's back."""
    with closing(lab_postgres(own_stack)) as connection:
        yield connection


@pytest.fixture(scope="module")
def known(api: httpx.Client) -> str:
    """A known-good short URL whose redirect must keep working whatever else is sent."""
    code = f"known-{secrets.token_hex(4)}"
    response = api.post("/rest/v3/short-urls", json={"longUrl": GOOD_URL, "customSlug": code})
    assert response.status_code == 200, response.text
    return code


@pytest.fixture(scope="module")
def target(api: httpx.Client) -> str:
    """A short URL the edit tests change (and must leave readable and servable)."""
    code = f"target-{secrets.token_hex(4)}"
    response = api.post(
        "/rest/v3/short-urls", json={"longUrl": "https://example.com/target", "customSlug": code}
    )
    assert response.status_code == 200, response.text
    return code


def _send(api: httpx.Client, method: str, path: str, body: Any) -> httpx.Response:
    """``body`` as JSON text as Python writes it (lone surrogates escaped, NaN as a token)."""
    return api.request(
        method,
        path,
        content=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )


def _rows(database: psycopg.Connection[Any]) -> int:
    row = database.execute("SELECT count(*) FROM short_urls").fetchone()
    assert row is not None
    return int(row[0])


def _stored(database: psycopg.Connection[Any], code: str) -> tuple[Any, ...] | None:
    return database.execute(
        "SELECT long_url, valid_since, valid_until, max_visits, title, tags, crawlable, "
        "forward_query FROM short_urls WHERE short_code = %s",
        (code,),
    ).fetchone()


def _assert_problem(response: httpx.Response, status: int | None = None) -> dict[str, Any]:
    """A 4xx problem+json with Shlink's members; its body."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    if status is not None:
        assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"] == PROBLEM, response.headers
    body: dict[str, Any] = response.json()
    assert {"type", "title", "detail", "status"} <= set(body), body
    assert body["status"] == response.status_code
    return body


def _assert_invalid(response: httpx.Response, *fields: str) -> dict[str, Any]:
    body = _assert_problem(response, 400)
    assert body["type"] == ERROR + "invalid-data", body
    assert set(fields) <= set(body["invalidElements"]), body
    return body


def _path(code: str) -> str:
    return quote(code, safe="")


def _assert_served(api: httpx.Client, shown: dict[str, Any]) -> None:
    """The short URL reads back as answered and its redirect is right (302, or 404 if disabled)."""
    code = shown["shortCode"]
    read = api.get(f"/rest/v3/short-urls/{_path(code)}")
    assert read.status_code == 200, read.text[:300]
    assert read.json()["longUrl"] == shown["longUrl"]
    assert read.json()["meta"] == shown["meta"]
    redirect = api.get(f"/{_path(code)}")
    now = dt.datetime.now(dt.UTC)
    meta, visits = read.json()["meta"], read.json()["visitsSummary"]["total"]
    since, until, limit = meta["validSince"], meta["validUntil"], meta["maxVisits"]
    enabled = (
        (since is None or dt.datetime.fromisoformat(since) <= now)
        and (until is None or dt.datetime.fromisoformat(until) >= now)
        and (limit is None or visits < limit)
    )
    assert redirect.status_code == (302 if enabled else 404), (redirect.status_code, shown)
    if enabled:
        location = redirect.headers["location"]
        # RFC 3986: printable ASCII only, and the same URL once percent-decoded.
        assert all(0x21 <= ord(char) < 0x7F for char in location), location
        assert unquote(location) == unquote(shown["longUrl"])


def _assert_service_works(api: httpx.Client, known: str) -> None:
    health = api.get("/rest/health")
    assert health.status_code == 200, health.text[:300]
    listing = api.get("/rest/v3/short-urls", params={"itemsPerPage": "50"})
    assert listing.status_code == 200, listing.text[:300]
    redirect = api.get(f"/{known}")
    assert (redirect.status_code, redirect.headers.get("location")) == (302, GOOD_URL)


# -- the cases the probe found ------------------------------------------------------------

FAR_FUTURE = "9999-12-31T23:59:59-12:00"
YEAR_ONE = "0001-01-01T00:00:00+00:00"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"validUntil": FAR_FUTURE}, "validUntil"),
        ({"validSince": YEAR_ONE}, "validSince"),
        ({"validSince": "0001-01-01T00:00:00+14:00"}, "validSince"),
        ({"longUrl": "https://example.com/\x00"}, "longUrl"),
        ({"title": "a\x00b"}, "title"),
        ({"tags": ["ok", "nul\x00"]}, "tags"),
        ({"customSlug": "slug\x00"}, "customSlug"),
        ({"pathPrefix": "p\x00"}, "pathPrefix"),
        ({"longUrl": "https://example.com/\ud800"}, "longUrl"),
        ({"title": "\udfff"}, "title"),
        ({"tags": ["\ud800"]}, "tags"),
        ({"customSlug": "\ud800x"}, "customSlug"),
        ({"maxVisits": 2**31}, "maxVisits"),
        ({"maxVisits": 2**63}, "maxVisits"),
        ({"maxVisits": 1e300}, "maxVisits"),
        ({"customSlug": "s" * 9000}, "customSlug"),
        ({"customSlug": "s" * 200, "pathPrefix": "p" * 100}, "customSlug"),
        ({"longUrl": "https://example.com/a\r\nSet-Cookie: x=1"}, "longUrl"),
        ({"longUrl": "https://example.com/\x1b[31m"}, "longUrl"),
        ({"longUrl": "https://example.com/\x85x"}, "longUrl"),
        ({"longUrl": "https://example.com/" + "a" * 2030}, "longUrl"),
        ({"longUrl": "https://[::1/broken"}, "longUrl"),
        ({"shortCodeLength": 20_000_000}, "shortCodeLength"),
        ({"shortCodeLength": 3}, "shortCodeLength"),
        ({"tags": [f"t{i}" for i in range(101)]}, "tags"),
        ({"tags": ["t" * 256]}, "tags"),
        ({"customSlug": "metrics"}, "customSlug"),
        ({"customSlug": ".."}, "customSlug"),
    ],
)
def test_create_refuses_what_cannot_be_stored_and_served(
    api: httpx.Client,
    database: psycopg.Connection[Any],
    known: str,
    body: dict[str, Any],
    field: str,
) -> None:
    before = _rows(database)
    started = time.monotonic()
    response = _send(api, "POST", "/rest/v3/short-urls", {"longUrl": "https://e.com/x", **body})
    assert time.monotonic() - started < 5, "a bad request must not keep a worker busy"
    _assert_invalid(response, field)
    assert _rows(database) == before
    _assert_service_works(api, known)


def test_bounds_are_stated_in_the_refusal(api: httpx.Client) -> None:
    response = _send(
        api, "POST", "/rest/v3/short-urls", {"longUrl": "https://e.com", "shortCodeLength": 10**7}
    )
    assert "between 4 and 255" in _assert_invalid(response, "shortCodeLength")["detail"]
    long_url = "https://e.com/" + "a" * 3000
    response = _send(api, "POST", "/rest/v3/short-urls", {"longUrl": long_url})
    assert "2048" in _assert_invalid(response, "longUrl")["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"validUntil": FAR_FUTURE}, "validUntil"),
        ({"validSince": YEAR_ONE}, "validSince"),
        ({"longUrl": "https://example.com/\x00"}, "longUrl"),
        ({"longUrl": "https://example.com/a\r\nb"}, "longUrl"),
        ({"title": "\ud800"}, "title"),
        ({"maxVisits": 2**31}, "maxVisits"),
        ({"tags": ["\x00"]}, "tags"),
    ],
)
def test_edit_refuses_what_cannot_be_stored_and_leaves_the_url_unchanged(
    api: httpx.Client,
    database: psycopg.Connection[Any],
    known: str,
    target: str,
    body: dict[str, Any],
    field: str,
) -> None:
    before = _stored(database, target)
    _assert_invalid(_send(api, "PATCH", f"/rest/v3/short-urls/{target}", body), field)
    assert _stored(database, target) == before
    assert api.get(f"/rest/v3/short-urls/{target}").status_code == 200
    assert api.get(f"/{target}").status_code == 302
    _assert_service_works(api, known)


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/rest/v3/short-urls?itemsPerPage=9223372036854775808", "itemsPerPage"),
        ("/rest/v3/short-urls?itemsPerPage=3000000000", "itemsPerPage"),
        ("/rest/v3/short-urls?page=9223372036854775807", "page"),
        ("/rest/v3/short-urls?page=4611686018427387904&itemsPerPage=10", "page"),
        ("/rest/v3/short-urls?page=0", "page"),
        ("/rest/v3/short-urls?itemsPerPage=-2", "itemsPerPage"),
        ("/rest/v3/short-urls?searchTerm=a%00b", "searchTerm"),
        ("/rest/v3/short-urls?tags[]=%00", "tags"),
        ("/rest/v3/short-urls/{code}/visits?page=9223372036854775807", "page"),
        ("/rest/v3/short-urls/{code}/visits?itemsPerPage=99999999999999999999", "itemsPerPage"),
    ],
)
def test_list_queries_out_of_range_are_invalid_data(
    api: httpx.Client, known: str, path: str, field: str
) -> None:
    _assert_invalid(api.get(path.format(code=known)), field)
    _assert_service_works(api, known)


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
@pytest.mark.parametrize("code", ["%00", "a%00b", "x" * 300])
def test_a_short_code_that_cannot_exist_is_not_found(
    api: httpx.Client, known: str, method: str, code: str
) -> None:
    body = {"title": "t"} if method == "PATCH" else None
    response = api.request(method, f"/rest/v3/short-urls/{code}", json=body)
    assert _assert_problem(response, 404)["type"] == ERROR + "short-url-not-found"
    _assert_service_works(api, known)


@pytest.mark.parametrize("code", ["%00", "a%00b", "x" * 300, "%ED%A0%80"])
def test_redirect_of_a_code_that_cannot_exist_is_the_404_page(
    api: httpx.Client, known: str, code: str
) -> None:
    response = api.get(f"/{code}", headers={"Referer": "https://r.example/%00"})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    _assert_service_works(api, known)


@pytest.mark.parametrize(
    ("long_url", "location"),
    [
        ("https://example.com/café?q=€", "https://example.com/caf%C3%A9?q=%E2%82%AC"),
        ("https://bücher.example/ä b", "https://b%C3%BCcher.example/%C3%A4%20b"),
        (
            "https://example.com/a;b,c/d?e=f&g=h:i@j!$'()*+#frag/?",
            "https://example.com/a;b,c/d?e=f&g=h:i@j!$'()*+#frag/?",
        ),
        ("https://example.com/100%25/%zz", "https://example.com/100%25/%zz"),
        ("https://example.com/\U0001d11e", "https://example.com/%F0%9D%84%9E"),
    ],
)
def test_redirect_location_is_encoded_as_rfc_3986_asks(
    api: httpx.Client, long_url: str, location: str
) -> None:
    created = _send(api, "POST", "/rest/v3/short-urls", {"longUrl": long_url})
    assert created.status_code == 200, created.text
    assert created.json()["longUrl"] == long_url  # stored as given, encoded only on the wire
    redirect = api.get(f"/{created.json()['shortCode']}")
    assert (redirect.status_code, redirect.headers["location"]) == (302, location)


def test_redirect_with_a_forwarded_query_stays_encoded(api: httpx.Client) -> None:
    created = _send(api, "POST", "/rest/v3/short-urls", {"longUrl": "https://e.com/é?a=ü"})
    assert created.status_code == 200, created.text
    redirect = api.get(f"/{created.json()['shortCode']}?b=%C3%B6")
    assert redirect.status_code == 302
    assert redirect.headers["location"] == "https://e.com/%C3%A9?a=%C3%BC&b=%C3%B6"
    hostile = api.get(f"/{created.json()['shortCode']}?c=%00%0D%0A&d=%ED%A0%80")
    assert hostile.status_code == 302
    assert (
        hostile.headers["location"]
        == "https://e.com/%C3%A9?a=%C3%BC&c=%00%0D%0A&d=%EF%BF%BD%EF%BF%BD%EF%BF%BD"
    )


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/rest/v3/short-urls", {"GET", "POST"}),
        ("POST", "/rest/v3/short-urls/{code}", {"GET", "PATCH", "DELETE"}),
        ("DELETE", "/rest/health", {"GET"}),
        ("POST", "/{code}", {"GET"}),
        ("DELETE", "/", {"GET"}),
        ("PUT", "/metrics", {"GET"}),
    ],
)
def test_unsupported_methods_are_405_problems(
    api: httpx.Client, known: str, method: str, path: str, allowed: set[str]
) -> None:
    response = api.request(method, path.format(code=known))
    body = _assert_problem(response, 405)
    assert body["title"] == "Method Not Allowed"
    assert {m.strip() for m in response.headers["allow"].split(",")} - {"HEAD"} == allowed


def test_unknown_rest_routes_are_404_problems(api: httpx.Client) -> None:
    response = api.get("/rest/v3/no/such/route")
    assert _assert_problem(response, 404)["type"] == ERROR + "not-found"


@pytest.mark.parametrize(
    ("content", "status", "kind"),
    [
        (b"[" * 40_000 + b"]" * 40_000, 400, "malformed-request-body"),
        (b'{"longUrl": "https://e.com/\\ud800"}', 400, "invalid-data"),
        (b"\xff\xfe", 400, "malformed-request-body"),
        (b'{"longUrl": "' + b"a" * 300_000 + b'"}', 413, None),
    ],
)
def test_bodies_that_cannot_be_read_are_problems(
    api: httpx.Client,
    database: psycopg.Connection[Any],
    content: bytes,
    status: int,
    kind: str | None,
) -> None:
    before = _rows(database)
    response = api.post(
        "/rest/v3/short-urls", content=content, headers={"Content-Type": "application/json"}
    )
    body = _assert_problem(response, status)
    if kind is not None:
        assert body["type"] == ERROR + kind
    assert _rows(database) == before


# -- database errors that are not a lost connection ---------------------------------------


@pytest.fixture
def raising_trigger(database: psycopg.Connection[Any]) -> Iterator[None]:
    """A real server-side fault: inserting a title ``raise-<SQLSTATE>`` raises that SQLSTATE."""
    database.execute(
        """CREATE OR REPLACE FUNCTION labkit_test_raise() RETURNS trigger AS $$
           BEGIN
             IF NEW.title LIKE 'raise-%' THEN
               RAISE EXCEPTION 'secret-internal-detail' USING ERRCODE = substr(NEW.title, 7);
             END IF;
             RETURN NEW;
           END $$ LANGUAGE plpgsql"""
    )
    database.execute(
        "CREATE TRIGGER labkit_test_raise BEFORE INSERT ON short_urls "
        "FOR EACH ROW EXECUTE FUNCTION labkit_test_raise()"
    )
    try:
        yield
    finally:
        database.execute("DROP TRIGGER labkit_test_raise ON short_urls")
        database.execute("DROP FUNCTION labkit_test_raise()")


@pytest.mark.parametrize(
    ("sqlstate", "status", "kind"),
    [
        ("22003", 400, "invalid-data"),  # numeric_value_out_of_range: data slipped through
        ("22021", 400, "invalid-data"),  # character_not_in_repertoire
        ("23514", 500, "internal-server-error"),  # check_violation: our bug, not the client's
        ("42P01", 500, "internal-server-error"),  # undefined_table
        ("XX000", 500, "internal-server-error"),  # internal_error
        ("54000", 500, "internal-server-error"),  # program_limit_exceeded: an OperationalError
        ("53300", 503, "internal-server-error"),  # too_many_connections: unavailable indeed
    ],
)
@pytest.mark.usefixtures("raising_trigger")
def test_database_errors_are_not_reported_as_unreachable(
    api: httpx.Client,
    database: psycopg.Connection[Any],
    known: str,
    sqlstate: str,
    status: int,
    kind: str,
) -> None:
    before = _rows(database)
    response = _send(
        api,
        "POST",
        "/rest/v3/short-urls",
        {"longUrl": "https://e.com", "title": f"raise-{sqlstate}"},
    )
    assert (response.status_code, response.headers["content-type"]) == (status, PROBLEM)
    body = response.json()
    assert body["status"] == status and {"type", "title", "detail"} <= set(body), body
    assert body["type"] == ERROR + kind
    assert ("unreachable" in response.text) == (status == 503)
    assert "secret-internal-detail" not in response.text  # the server's text never leaks
    assert _rows(database) == before
    _assert_service_works(api, known)


# -- property tests -----------------------------------------------------------------------

_NASTY = [
    "\x00",
    "\ud800",
    "\udfff",
    "\r\n",
    "\t",
    "\x1b",
    "\x7f",
    "\x85",
    "\u2028",
    "\ufeff",
    "é",
    "€",
    "\U0001f600",
    " ",
    "%",
    "%00",
    "%zz",
    "/",
    "?",
    "#",
    "[",
    "]",
    "@",
    ":",
    ".",
    "..",
    "<b>",
    "'",
    '"',
    "\\",
]
_fragments = st.one_of(
    st.sampled_from(_NASTY),
    st.text(st.characters(codec="utf-8"), max_size=8),
    st.text(st.characters(exclude_categories=()), max_size=4),  # surrogates included
)
_strings = st.one_of(
    st.lists(_fragments, max_size=6).map("".join),
    st.builds(lambda char, n: char * n, st.sampled_from(["a", "é", "\x00"]), st.integers(0, 9000)),
)
_urls = st.one_of(
    st.builds(lambda tail: "https://example.com/" + tail, _strings),
    st.builds(lambda host, tail: f"https://{host}/{tail}", _strings, _strings),
    _strings,
    st.builds(lambda n: "https://e.com/" + "p" * n, st.integers(2000, 2100)),
)
_numbers = st.one_of(
    st.sampled_from(
        [0, 1, -1, 3, 4, 255, 256, 2**31 - 1, 2**31, 2**63 - 1, 2**63, 2**64, 10**30, -(2**63)]
    ),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1.0, 5.0, 1.5, 1e300]),
)


def _timestamp(year: int, month: int, day: int, hour: int, offset_minutes: int) -> str:
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:00:00{sign}{hours:02d}:{minutes:02d}"


_timestamps = st.one_of(
    st.builds(
        _timestamp,
        st.sampled_from([1, 2, 1899, 1970, 2000, 2100, 9998, 9999]),
        st.integers(1, 12),
        st.integers(1, 28),
        st.integers(0, 23),
        st.integers(-24 * 60 + 1, 24 * 60 - 1),
    ),
    st.sampled_from([FAR_FUTURE, YEAR_ONE, "9999-12-31T23:59:59Z", "0001-01-01", "2020-02-30"]),
    st.sampled_from(["2030-01-01T00:00:00+24:00", "soon", "", "2030-01-01T00:00:00\x00"]),
    st.datetimes().map(dt.datetime.isoformat),
    _strings,
)
_any_json = st.recursive(
    st.none() | st.booleans() | _numbers | _strings,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(_strings, children, max_size=3)
    ),
    max_leaves=6,
)


def _field(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly well-typed hostile values, sometimes anything at all (wrong types)."""
    return st.one_of(values, values, values, _any_json)


_HOSTILE_EDITION = {
    "longUrl": _field(_urls),
    "validSince": _field(st.none() | _timestamps),
    "validUntil": _field(st.none() | _timestamps),
    "maxVisits": _field(st.none() | _numbers),
    "tags": _field(st.lists(_strings, max_size=4) | st.lists(st.sampled_from(["a", "b"]))),
    "title": _field(st.none() | _strings),
    "crawlable": _field(st.booleans()),
    "forwardQuery": _field(st.booleans()),
}
_HOSTILE_CREATION = {
    **_HOSTILE_EDITION,
    "customSlug": _field(st.none() | _strings),
    "pathPrefix": _field(st.none() | _strings),
    "findIfExists": _field(st.booleans()),
    "shortCodeLength": _field(_numbers | st.sampled_from([4, 5, 255, 256, 20_000_000])),
    "domain": _field(st.none() | _strings),
}

# Values the service should accept, at the edges of what it accepts: non-ASCII and reserved
# characters, lengths near the bounds, timestamps a day inside datetime's range with offsets.
_printable = st.characters(codec="utf-8", exclude_categories=("Cc",))
_edgy_text = st.lists(
    st.one_of(
        st.sampled_from(["é", "€", "\U0001f600", "\u2028", "\ufeff", " ", "%", "%zz", "'", '"']),
        st.text(_printable, max_size=6),
    ),
    max_size=6,
).map("".join)
_valid_urls = st.one_of(
    st.builds(lambda tail: "https://example.com/" + tail, _edgy_text),
    st.builds(
        lambda path, query: f"https://bücher.example/{path}?{query}#{path}",
        st.sampled_from(["a;b,c", "ä b", "100%25", "x/y/z", ""]),
        st.sampled_from(["q=€", "a=1&b=2", "x=[y]", ""]),
    ),
    st.builds(lambda n: "https://e.com/" + "ü" * n, st.integers(2000, 2034)),
)
_valid_timestamps = st.one_of(
    st.builds(
        _timestamp,
        st.sampled_from([2, 1970, 2000, 2100, 9998, 9999]),
        st.integers(1, 12),
        st.integers(1, 28),
        st.integers(0, 23),
        st.integers(-18 * 60, 18 * 60),
    ).filter(
        lambda text: (
            dt.datetime(1, 1, 2, tzinfo=dt.UTC)
            <= dt.datetime.fromisoformat(text)
            <= dt.datetime(9999, 12, 30, 23, 59, 59, tzinfo=dt.UTC)
        )
    ),
    st.sampled_from(["9999-12-30T23:59:59Z", "0001-01-02T00:00:00+00:00", "2020-01-01"]),
)
_slugs = st.builds(
    lambda text, suffix: f"{text}-{suffix}",
    _edgy_text,
    st.text("0123456789abcdef", min_size=10, max_size=10),
)
_VALID_EDITION = {
    "longUrl": _valid_urls,
    "validSince": st.none() | _valid_timestamps,
    "validUntil": st.none() | _valid_timestamps,
    "maxVisits": st.none() | st.integers(1, 2**31 - 1) | st.sampled_from([1.0, 2**31 - 1]),
    "tags": st.lists(_edgy_text, max_size=4),
    "title": st.none() | _edgy_text | st.builds(lambda n: "t" * n, st.integers(500, 3000)),
    "crawlable": st.booleans(),
    "forwardQuery": st.booleans(),
}
_VALID_CREATION = {
    **_VALID_EDITION,
    "customSlug": _slugs,
    "pathPrefix": _edgy_text,
    "findIfExists": st.booleans(),
    "shortCodeLength": st.integers(4, 240),
    "domain": st.sampled_from([None, ""]),
}
_extra = st.dictionaries(st.sampled_from(["x", "\x00", "\ud800", "id", "shortCode"]), _any_json)


def _bodies(
    valid: dict[str, st.SearchStrategy[Any]],
    hostile: dict[str, st.SearchStrategy[Any]],
    required: tuple[str, ...],
) -> st.SearchStrategy[dict[str, Any]]:
    """A third each: acceptable bodies; acceptable but for one field; hostile in every field."""

    def some(strategies: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
        return st.fixed_dictionaries(
            {name: strategies[name] for name in required},
            optional={name: s for name, s in strategies.items() if name not in required},
        )

    one_bad = st.builds(
        lambda body, bad: {**body, **bad},
        some(valid),
        st.sampled_from(sorted(hostile)).flatmap(
            lambda name: st.fixed_dictionaries({name: hostile[name]})
        ),
    )
    with_extra = st.builds(lambda extra, body: {**extra, **body}, _extra, some(hostile))
    return st.one_of(some(valid), one_bad, with_extra)


_creations = _bodies(_VALID_CREATION, _HOSTILE_CREATION, ("longUrl",))
_editions = _bodies(_VALID_EDITION, _HOSTILE_EDITION, ())


@settings(max_examples=160)
@given(body=_creations)
def test_any_create_is_served_or_refused_with_nothing_stored(
    api: httpx.Client, database: psycopg.Connection[Any], known: str, body: dict[str, Any]
) -> None:
    before = _rows(database)
    response = _send(api, "POST", "/rest/v3/short-urls", body)
    event(f"create answered {response.status_code}")
    if response.status_code == 200:
        shown = response.json()
        assert _rows(database) - before in (0, 1)  # 0: findIfExists found one
        _assert_served(api, shown)
        if _rows(database) > before:  # keep the table small: delete what this example added
            deleted = api.delete(f"/rest/v3/short-urls/{_path(shown['shortCode'])}")
            assert deleted.status_code == 204, deleted.text[:300]
    else:
        _assert_problem(response)
        assert _rows(database) == before
    _assert_service_works(api, known)


@settings(max_examples=120)
@given(body=_editions)
def test_any_edit_is_served_or_refused_with_nothing_changed(
    api: httpx.Client,
    database: psycopg.Connection[Any],
    known: str,
    target: str,
    body: dict[str, Any],
) -> None:
    before_rows, before = _rows(database), _stored(database, target)
    response = _send(api, "PATCH", f"/rest/v3/short-urls/{target}", body)
    event(f"edit answered {response.status_code}")
    if response.status_code == 200:
        _assert_served(api, response.json())
    else:
        _assert_problem(response)
        assert _stored(database, target) == before
    assert _rows(database) == before_rows
    _assert_service_works(api, known)
