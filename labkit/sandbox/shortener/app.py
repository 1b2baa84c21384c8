"""The ASGI application: Shlink's REST API (v1-v3), its health endpoint and ``GET /{shortCode}``."""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Match, Route

from labkit.sandbox.shortener.cache import RedirectCache
from labkit.sandbox.shortener.config import ServiceConfig
from labkit.sandbox.shortener.metrics import MetricsMiddleware, metrics
from labkit.sandbox.shortener.model import (
    MAX_INTEGER,
    MAX_SHORT_CODE,
    Problem,
    is_bot,
    pagination,
    parse_creation,
    parse_edition,
    short_url_json,
    storable_problem,
    visit_json,
)
from labkit.sandbox.shortener.store import ORDERABLE, Store, conninfo

__all__ = ["VERSION", "build_app", "create_app"]

VERSION = "5.0.2-labkit"  # the Shlink API release this stand-in follows
_VERSIONS = {"1", "2", "3"}
_REST_FALLBACK = "/rest/{rest:path}"
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_NOT_FOUND_HTML = "<!DOCTYPE html><title>Not found</title><h1>This short URL does not exist</h1>"
MAX_BODY = 256 * 1024  # bytes of a request body: ample for any valid short URL, bounds the work
# RFC 3986's reserved characters, and '%' (a long URL's own escapes are kept as given); every
# other character outside the unreserved set is percent-encoded as UTF-8 in ``Location``.
_LOCATION_SAFE = ":/?#[]@!$&'()*+,;=%"
_log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]


class _Services:
    """One worker's connections: the PostgreSQL pool, the redirect cache, the API key."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.api_key = config.secret("api_key").reveal()
        password = config.secret("postgres_password").reveal()
        self.store = Store(
            conninfo(
                config.postgres_host,
                config.postgres_port,
                config.postgres_database,
                config.postgres_user,
                password,
                config.postgres_standby_port,
            ),
            pool_size=config.pool_size,
        )
        redis_password = config.secret("redis_password").reveal() if config.redis_password else None
        self.cache = RedirectCache(
            config.sentinels,
            config.master_name,
            config.cache_ttl_s,
            password=redis_password,
            enabled=config.redirect_cache,
        )


def _services(request: Request) -> _Services:
    services: _Services = request.app.state.services
    return services


def _problem(problem: Problem, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        problem.body, problem.status, headers=headers, media_type="application/problem+json"
    )


def _api(handler: Handler) -> Handler:
    """Check the version and the X-Api-Key, turn Problems into problem+json responses."""

    async def guarded(request: Request) -> Response:
        try:
            if request.path_params.get("version") not in _VERSIONS:
                raise _route_not_found()
            supplied = request.headers.get("x-api-key")
            if supplied is None:
                raise Problem(
                    401,
                    "missing-authentication",
                    "Invalid authorization",
                    'Expected one of the following authentication headers, ["X-Api-Key"], '
                    "but none were provided",
                    expectedHeaders=["X-Api-Key"],
                )
            if not hmac.compare_digest(supplied.encode(), _services(request).api_key.encode()):
                raise Problem(
                    401,
                    "invalid-api-key",
                    "Invalid API key",
                    "Provided API key does not exist or is invalid.",
                )
            return await handler(request)
        except Problem as problem:
            return _problem(problem)

    return guarded


def _route_not_found() -> Problem:
    return Problem(404, "not-found", "Not found", "Requested route does not exist.")


async def _json_body(request: Request) -> Any:
    too_large = Problem.http(
        413, "Content Too Large", f"A request body has at most {MAX_BODY} bytes."
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise too_large
    try:
        return json.loads(bytes(body) or b"null")
    except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
        raise Problem(
            400,
            "malformed-request-body",
            "Malformed request body",
            "Provided request does not contain a valid JSON body.",
        ) from None


def _integer(request: Request, name: str, default: int, minimum: int) -> int:
    """A query parameter between ``minimum`` and PostgreSQL's integer maximum."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    reason = f"{name} is an integer from {minimum} to {MAX_INTEGER}"
    try:
        value = int(raw)
    except ValueError:  # also a number of more than 4300 digits
        raise Problem.invalid_data([name], [reason]) from None
    if not minimum <= value <= MAX_INTEGER:
        raise Problem.invalid_data([name], [reason])
    return value


def _query_text(request: Request, name: str, element: str) -> list[str]:
    """Every value of query parameter ``name``; invalid-data if PostgreSQL could not take one."""
    values = request.query_params.getlist(name)
    for value in values:
        if problem := storable_problem(value):
            raise Problem.invalid_data([element], [f"{element} {problem}"])
    return values


def _path_code(request: Request) -> str:
    """The ``{shortCode}`` of the path; short-url-not-found when no stored code can be it."""
    code: str = request.path_params["shortCode"]
    if len(code) > MAX_SHORT_CODE or storable_problem(code):
        raise Problem.not_found(code)
    return code


async def health(request: Request) -> Response:
    """200 pass / 503 fail from ``SELECT 1``, as application/health+json (no API key)."""
    healthy = await _services(request).store.healthy()
    body = {
        "status": "pass" if healthy else "fail",
        "version": VERSION,
        "links": {"about": "https://shlink.io", "project": "https://github.com/shlinkio/shlink"},
    }
    return JSONResponse(body, 200 if healthy else 503, media_type="application/health+json")


async def create_short_url(request: Request) -> Response:
    """POST /short-urls: 200 with the ShortUrl object."""
    services = _services(request)
    fields = parse_creation(await _json_body(request), services.config.default_domain)
    if fields.find_if_exists:
        existing = await services.store.find_existing(fields)
        if existing is not None:
            return JSONResponse(short_url_json(existing, services.config.default_domain))
    row = await services.store.create(fields)
    return JSONResponse(short_url_json(row, services.config.default_domain))


async def list_short_urls(request: Request) -> Response:
    """GET /short-urls: a page of ShortUrl objects, newest first unless ``orderBy`` says else."""
    services = _services(request)
    page = _integer(request, "page", 1, 1)
    per_page = _integer(request, "itemsPerPage", 10, -1)
    order = ("s.date_created", "DESC")
    search = _query_text(request, "searchTerm", "searchTerm")
    tags = _query_text(request, "tags[]", "tags")
    if "orderBy" in request.query_params:
        field, _, direction = request.query_params["orderBy"].partition("-")
        if field not in ORDERABLE or direction.upper() not in {"ASC", "DESC", ""}:
            raise Problem.invalid_data(["orderBy"])
        order = (ORDERABLE[field], direction.upper() or "ASC")
    rows, total = await services.store.page(
        page,
        per_page,
        search=search[-1] if search else None,
        tags=tags or None,
        order=order,
    )
    data = [short_url_json(row, services.config.default_domain) for row in rows]
    return JSONResponse(
        {"shortUrls": {"data": data, "pagination": pagination(page, per_page, total, len(data))}}
    )


async def get_short_url(request: Request) -> Response:
    """GET /short-urls/{shortCode}."""
    services = _services(request)
    row = await services.store.get(_path_code(request))
    return JSONResponse(short_url_json(row, services.config.default_domain))


async def edit_short_url(request: Request) -> Response:
    """PATCH /short-urls/{shortCode}: change only the fields sent; 200 with the result."""
    services = _services(request)
    code = _path_code(request)
    fields = parse_edition(await _json_body(request))
    row = await services.store.edit(code, fields)
    await services.cache.forget(code)
    return JSONResponse(short_url_json(row, services.config.default_domain))


async def delete_short_url(request: Request) -> Response:
    """DELETE /short-urls/{shortCode}: 204."""
    services = _services(request)
    code = _path_code(request)
    await services.store.delete(code)
    await services.cache.forget(code)
    return Response(status_code=204)


async def short_url_visits(request: Request) -> Response:
    """GET /short-urls/{shortCode}/visits: every visit by default (Shlink's default page size)."""
    page = _integer(request, "page", 1, 1)
    per_page = _integer(request, "itemsPerPage", -1, -1)
    rows, total = await _services(request).store.visits(_path_code(request), page, per_page)
    data = [visit_json(row) for row in rows]
    return JSONResponse(
        {"visits": {"data": data, "pagination": pagination(page, per_page, total, len(data))}}
    )


async def rest_not_found(request: Request) -> Response:
    """Any other /rest route: 404 problem+json."""
    return _problem(_route_not_found())


def _allowed_methods(request: Request) -> set[str]:
    """Methods of the routes whose path matches this request's (empty: no such path)."""
    allowed: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, Route) and route.path != _REST_FALLBACK:
            match, _ = route.matches(request.scope)
            if match is Match.PARTIAL and route.methods:
                allowed |= route.methods
    return allowed


def _method_not_allowed(request: Request, allowed: set[str]) -> Response:
    listed = ", ".join(sorted(allowed))
    problem = Problem.http(
        405,
        "Method Not Allowed",
        f"{request.method} is not supported on {request.url.path}; use one of {listed}.",
    )
    return _problem(problem, headers={"Allow": listed})


async def rest_fallback(request: Request) -> Response:
    """A /rest path no route serves: 405 when another method would be (routing comes first)."""
    allowed = _allowed_methods(request)
    if allowed:
        return _method_not_allowed(request, allowed)
    return await _api(rest_not_found)(request)


def _forward(long_url: str, query: str) -> str:
    """The visitor's query parameters merged over the long URL's own (Shlink's forwardQuery)."""
    if not query:
        return long_url
    try:
        parts = urlsplit(long_url)
    except ValueError:  # stored before create checked it; redirect without merging
        return long_url
    merged = dict(parse_qsl(parts.query, keep_blank_values=True))
    merged.update(parse_qsl(query, keep_blank_values=True))
    return urlunsplit(parts._replace(query=urlencode(merged)))


async def redirect(request: Request) -> Response:
    """GET /{shortCode}: 302 to the long URL, recording the visit in PostgreSQL (404 if unknown)."""
    services = _services(request)
    code = request.path_params["shortCode"]
    target = None
    if len(code) <= MAX_SHORT_CODE and not storable_problem(code):  # else it cannot be stored
        target = await services.cache.get(code)
        if target is None:
            target = await services.store.target(code)
            if target is not None:
                await services.cache.put(code, target)
    user_agent = _storable(request.headers.get("user-agent", ""))
    referer = _storable(request.headers.get("referer", ""))
    visited, bot = _storable(str(request.url)), is_bot(user_agent)
    now = dt.datetime.now(dt.UTC)
    spent = await services.store.visit_total(target.id) if target and target.max_visits else 0
    location: str | None = None
    if target is not None and target.enabled(spent, now):
        location = target.long_url
        if target.forward_query:
            location = _forward(target.long_url, request.url.query)
        location = quote(location, safe=_LOCATION_SAFE)  # RFC 3986: ASCII only on the wire
    await services.store.record_visit(
        target.id if location is not None and target is not None else None,
        user_agent=user_agent,
        referer=referer,
        bot=bot,
        visited_url=visited,
        redirect_url=location,
    )
    if location is None:
        return HTMLResponse(_NOT_FOUND_HTML, 404)
    return Response(status_code=302, headers={"Location": location})


def _storable(text: str) -> str:
    """``text`` with what PostgreSQL cannot store (NUL) replaced, for a visit's record."""
    return text.replace("\x00", "\ufffd")


async def root(request: Request) -> Response:
    """``/`` has no short code: 404 page, as Shlink without DEFAULT_BASE_URL_REDIRECT."""
    return HTMLResponse(_NOT_FOUND_HTML, 404)


def _internal_error() -> Problem:
    return Problem(
        500,
        "internal-server-error",
        "Internal server error",
        "The service failed to answer this request; its log says why.",
    )


# SQLSTATEs that mean "no usable connection": the server shutting down, refusing connections.
_UNAVAILABLE = {"53300", "57P01", "57P02", "57P03"}


def _connection_lost(exc: Exception) -> bool:
    """True for a lost, refused or timed-out connection (not for e.g. a program limit, 54xxx)."""
    if isinstance(exc, OSError):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    sqlstate = exc.sqlstate  # None: raised by libpq or the pool, not by the server
    return sqlstate is None or sqlstate.startswith("08") or sqlstate in _UNAVAILABLE


async def _database_error(request: Request, exc: Exception) -> Response:
    """A lost or refused connection is 503; a value the database refused is 400; else 500."""
    where = f"{request.method} {request.url.path}"
    if _connection_lost(exc):
        _log.warning("%s: database unavailable: %s", where, exc)
        return _problem(
            Problem(
                503, "internal-server-error", "Service unavailable", "The database is unreachable."
            )
        )
    if isinstance(exc, psycopg.DataError):  # a value validation should have refused
        _log.warning("%s: the database refused a value: %s", where, exc)
        return _problem(Problem.invalid_data([], ["the database refused one of the values"]))
    _log.error("%s: database error %s", where, exc.__class__.__name__, exc_info=exc)
    return _problem(_internal_error())


async def _unexpected(request: Request, exc: Exception) -> Response:
    """Any other exception: 500 problem+json (uvicorn logs the traceback; none is sent)."""
    return _problem(_internal_error())


async def _http_error(request: Request, exc: Exception) -> Response:
    """The router's 404 and 405: problem+json (a 404 outside /rest is Shlink's 404 page)."""
    status: int = getattr(exc, "status_code", 500)
    if status == 405:
        # Starlette's Allow names the first route of the path only; the problem names them all.
        header = (getattr(exc, "headers", None) or {}).get("Allow", "")
        allowed = _allowed_methods(request) or {method.strip() for method in header.split(",")}
        return _method_not_allowed(request, allowed - {""})
    if status == 404:
        if request.url.path.startswith("/rest/"):
            return _problem(_route_not_found())
        return HTMLResponse(_NOT_FOUND_HTML, 404)
    return _problem(Problem.http(status, "Error", str(getattr(exc, "detail", ""))))


def build_app(config: ServiceConfig) -> Starlette:
    """The application for ``config`` (connections are opened at start-up, per worker)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services = _Services(config)
        await services.store.open()
        app.state.services = services
        try:
            yield
        finally:
            await services.cache.close()
            await services.store.close()

    prefix = "/rest/v{version}"
    routes = [
        Route("/rest/health", health, methods=["GET"]),
        Route(prefix + "/health", _api_free_health, methods=["GET"]),
        Route(prefix + "/short-urls", _api(list_short_urls), methods=["GET"]),
        Route(prefix + "/short-urls", _api(create_short_url), methods=["POST"]),
        Route(prefix + "/short-urls/{shortCode}", _api(get_short_url), methods=["GET"]),
        Route(prefix + "/short-urls/{shortCode}", _api(edit_short_url), methods=["PATCH"]),
        Route(prefix + "/short-urls/{shortCode}", _api(delete_short_url), methods=["DELETE"]),
        Route(prefix + "/short-urls/{shortCode}/visits", _api(short_url_visits), methods=["GET"]),
        Route(_REST_FALLBACK, rest_fallback, methods=_ALL_METHODS),
        Route("/", root, methods=["GET"]),
        # Prometheus' scrape endpoint (so "metrics" cannot be a short code here).
        Route("/metrics", metrics, methods=["GET"]),
        Route("/{shortCode}", redirect, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(MetricsMiddleware)],
        exception_handlers={
            HTTPException: _http_error,
            psycopg.Error: _database_error,
            OSError: _database_error,
            Exception: _unexpected,
        },
    )


async def _api_free_health(request: Request) -> Response:
    if request.path_params.get("version") not in _VERSIONS:
        return _problem(_route_not_found())
    return await health(request)


def create_app() -> Starlette:
    """uvicorn's factory: the app configured from the environment ``service_command`` set."""
    return build_app(ServiceConfig.from_environment())
