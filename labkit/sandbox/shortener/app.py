"""The ASGI application: Shlink's REST API (v1-v3), its health endpoint and ``GET /{shortCode}``."""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from labkit.sandbox.shortener.cache import RedirectCache
from labkit.sandbox.shortener.config import ServiceConfig
from labkit.sandbox.shortener.metrics import MetricsMiddleware, metrics
from labkit.sandbox.shortener.model import (
    Problem,
    is_bot,
    pagination,
    parse_creation,
    parse_edition,
    short_url_json,
    visit_json,
)
from labkit.sandbox.shortener.store import ORDERABLE, Store, conninfo

__all__ = ["VERSION", "build_app", "create_app"]

VERSION = "5.0.2-labkit"  # the Shlink API release this stand-in follows
_VERSIONS = {"1", "2", "3"}
_NOT_FOUND_HTML = "<!DOCTYPE html><title>Not found</title><h1>This short URL does not exist</h1>"
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


def _problem(problem: Problem) -> JSONResponse:
    return JSONResponse(problem.body, problem.status, media_type="application/problem+json")


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
    try:
        return json.loads(await request.body() or b"null")
    except ValueError:
        raise Problem(
            400,
            "malformed-request-body",
            "Malformed request body",
            "Provided request does not contain a valid JSON body.",
        ) from None


def _integer(request: Request, name: str, default: int, minimum: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Problem.invalid_data([name]) from None
    if value < minimum:
        raise Problem.invalid_data([name])
    return value


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
    if "orderBy" in request.query_params:
        field, _, direction = request.query_params["orderBy"].partition("-")
        if field not in ORDERABLE or direction.upper() not in {"ASC", "DESC", ""}:
            raise Problem.invalid_data(["orderBy"])
        order = (ORDERABLE[field], direction.upper() or "ASC")
    rows, total = await services.store.page(
        page,
        per_page,
        search=request.query_params.get("searchTerm"),
        tags=request.query_params.getlist("tags[]") or None,
        order=order,
    )
    data = [short_url_json(row, services.config.default_domain) for row in rows]
    return JSONResponse(
        {"shortUrls": {"data": data, "pagination": pagination(page, per_page, total, len(data))}}
    )


async def get_short_url(request: Request) -> Response:
    """GET /short-urls/{shortCode}."""
    services = _services(request)
    row = await services.store.get(request.path_params["shortCode"])
    return JSONResponse(short_url_json(row, services.config.default_domain))


async def edit_short_url(request: Request) -> Response:
    """PATCH /short-urls/{shortCode}: change only the fields sent; 200 with the result."""
    services = _services(request)
    code = request.path_params["shortCode"]
    fields = parse_edition(await _json_body(request))
    row = await services.store.edit(code, fields)
    await services.cache.forget(code)
    return JSONResponse(short_url_json(row, services.config.default_domain))


async def delete_short_url(request: Request) -> Response:
    """DELETE /short-urls/{shortCode}: 204."""
    services = _services(request)
    code = request.path_params["shortCode"]
    await services.store.delete(code)
    await services.cache.forget(code)
    return Response(status_code=204)


async def short_url_visits(request: Request) -> Response:
    """GET /short-urls/{shortCode}/visits: every visit by default (Shlink's default page size)."""
    page = _integer(request, "page", 1, 1)
    per_page = _integer(request, "itemsPerPage", -1, -1)
    rows, total = await _services(request).store.visits(
        request.path_params["shortCode"], page, per_page
    )
    data = [visit_json(row) for row in rows]
    return JSONResponse(
        {"visits": {"data": data, "pagination": pagination(page, per_page, total, len(data))}}
    )


async def rest_not_found(request: Request) -> Response:
    """Any other /rest route: 404 problem+json."""
    return _problem(_route_not_found())


def _forward(long_url: str, query: str) -> str:
    """The visitor's query parameters merged over the long URL's own (Shlink's forwardQuery)."""
    if not query:
        return long_url
    parts = urlsplit(long_url)
    merged = dict(parse_qsl(parts.query, keep_blank_values=True))
    merged.update(parse_qsl(query, keep_blank_values=True))
    return urlunsplit(parts._replace(query=urlencode(merged)))


async def redirect(request: Request) -> Response:
    """GET /{shortCode}: 302 to the long URL, recording the visit in PostgreSQL (404 if unknown)."""
    services = _services(request)
    code = request.path_params["shortCode"]
    target = await services.cache.get(code)
    if target is None:
        target = await services.store.target(code)
        if target is not None:
            await services.cache.put(code, target)
    user_agent = request.headers.get("user-agent", "")
    referer = request.headers.get("referer", "")
    visited, bot = str(request.url), is_bot(user_agent)
    now = dt.datetime.now(dt.UTC)
    spent = await services.store.visit_total(target.id) if target and target.max_visits else 0
    location: str | None = None
    if target is not None and target.enabled(spent, now):
        location = target.long_url
        if target.forward_query:
            location = _forward(target.long_url, request.url.query)
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


async def root(request: Request) -> Response:
    """``/`` has no short code: 404 page, as Shlink without DEFAULT_BASE_URL_REDIRECT."""
    return HTMLResponse(_NOT_FOUND_HTML, 404)


async def _database_down(request: Request, exc: Exception) -> Response:
    _log.warning("%s %s: database unavailable: %s", request.method, request.url.path, exc)
    problem = Problem(
        503, "internal-server-error", "Service unavailable", "The database is unreachable."
    )
    if request.url.path.startswith("/rest/"):
        return _problem(problem)
    return HTMLResponse("<!DOCTYPE html><title>Unavailable</title>", 503)


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
        Route("/rest/{rest:path}", _api(rest_not_found)),
        Route("/", root, methods=["GET"]),
        # Prometheus' scrape endpoint (so "metrics" cannot be a short code here).
        Route("/metrics", metrics, methods=["GET"]),
        Route("/{shortCode}", redirect, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(MetricsMiddleware)],
        exception_handlers={psycopg.Error: _database_down, OSError: _database_down},
    )


async def _api_free_health(request: Request) -> Response:
    if request.path_params.get("version") not in _VERSIONS:
        return _problem(_route_not_found())
    return await health(request)


def create_app() -> Starlette:
    """uvicorn's factory: the app configured from the environment ``service_command`` set."""
    return build_app(ServiceConfig.from_environment())
