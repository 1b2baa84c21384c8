"""The sandbox's Shlink-compatible service: Shlink's redirect behaviour, its cache, and failures.

Behaviour tests use the session sandbox. The failure tests (Redis master killed,
PostgreSQL stopped) break things, so they run against a stack of their own:
PostgreSQL, Redis with Sentinels and the service, on free loopback ports.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest
import redis as redis_py

from labkit.params import Lab
from labkit.sandbox import Sandbox, postgres, processes
from labkit.sandbox import redis as sandbox_redis
from labkit.sandbox.shortener import CACHE_PREFIX, CONFIG_ENV, service_command
from labkit.secrets import SecretRef, resolve
from labkit.shlink import ShlinkClient
from labkit.stores import lab_postgres

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def _secret(lab: Lab, ref: SecretRef) -> str:
    assert ref.file is not None
    return resolve(SecretRef(file=lab.path(ref.file))).reveal()


def _master(lab: Lab) -> redis_py.Redis:
    host, port = sandbox_redis.sentinel_master(lab, lab.redis.sentinel_ports[0]) or ("", 0)
    return redis_py.Redis(host=host, port=port, socket_timeout=2, decode_responses=True)


def _slug() -> str:
    return f"svc-{secrets.token_hex(4)}"


@pytest.fixture
def client(sandbox: Sandbox, sandbox_lab: Lab) -> Iterator[ShlinkClient]:
    with ShlinkClient.from_lab(sandbox_lab) as shlink:
        yield shlink


# -- the command ---------------------------------------------------------------------------


def test_service_command_carries_no_secret(sandbox_lab: Lab, tmp_path: Path) -> None:
    secret_dir = tmp_path / "secrets"
    secret_dir.mkdir()
    (secret_dir / "pg").write_text("pg-secret-value-123\n")
    (secret_dir / "key").write_text("api-secret-value-456\n")
    lab = sandbox_lab.model_copy(
        update={
            "postgres": sandbox_lab.postgres.model_copy(
                update={"password": SecretRef(file=secret_dir / "pg")}
            ),
            "shlink": sandbox_lab.shlink.model_copy(
                update={"api_key": SecretRef(file=secret_dir / "key")}
            ),
        }
    )
    argv, env = service_command(lab, tmp_path)
    everything = " ".join(argv) + " ".join(env.values())
    assert "secret-value" not in everything
    assert str(secret_dir / "pg") in env[CONFIG_ENV]
    assert argv[argv.index("--workers") + 1] == str(lab.shlink.workers)
    host_port = lab.shlink.base_url.removeprefix("http://").split(":")
    assert argv[argv.index("--host") + 1] == host_port[0]
    assert argv[argv.index("--port") + 1] == host_port[1]


# -- redirect behaviour (session sandbox) -------------------------------------------------


@pytest.mark.sandbox
def test_every_redirect_records_a_visit_in_postgresql(
    client: ShlinkClient, sandbox_lab: Lab
) -> None:
    slug = _slug()
    client.create("https://example.com/visits", custom_slug=slug)
    for _ in range(3):
        assert client.resolve(slug).status_code == 302
    with closing(lab_postgres(sandbox_lab)) as database:
        row = database.execute(
            "SELECT count(*) FROM visits v JOIN short_urls s ON s.id = v.short_url_id "
            "WHERE s.short_code = %s",
            (slug,),
        ).fetchone()
    assert row == (3,)
    assert client.get(slug)["visitsSummary"]["total"] == 3


@pytest.mark.sandbox
def test_bots_and_browsers_are_counted_apart(client: ShlinkClient, sandbox_lab: Lab) -> None:
    slug = _slug()
    client.create("https://example.com/bots", custom_slug=slug)
    base = sandbox_lab.shlink.base_url
    httpx.get(f"{base}/{slug}", headers={"User-Agent": BROWSER})
    httpx.get(f"{base}/{slug}", headers={"User-Agent": "curl/8.0"})
    assert client.get(slug)["visitsSummary"] == {"total": 2, "nonBots": 1, "bots": 1}


@pytest.mark.sandbox
def test_unknown_code_is_a_404_page_and_an_orphan_visit(
    client: ShlinkClient, sandbox_lab: Lab
) -> None:
    code = _slug()
    response = client.resolve(code)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    with closing(lab_postgres(sandbox_lab)) as database:
        row = database.execute(
            "SELECT count(*) FROM visits WHERE type = 'invalid_short_url' AND visited_url LIKE %s",
            (f"%/{code}",),
        ).fetchone()
    assert row == (1,)


@pytest.mark.sandbox
def test_query_is_forwarded_over_the_long_urls_own(client: ShlinkClient) -> None:
    slug = _slug()
    client.create("https://example.com/q?a=1&b=2", custom_slug=slug)
    response = client._request("GET", f"/{slug}?b=3&c=4")
    assert response.headers["location"] == "https://example.com/q?a=1&b=3&c=4"


@pytest.mark.sandbox
def test_max_visits_then_404(client: ShlinkClient) -> None:
    slug = _slug()
    client.create("https://example.com/limited", custom_slug=slug, max_visits=2)
    statuses = [client.resolve(slug).status_code for _ in range(3)]
    assert statuses == [302, 302, 404]


@pytest.mark.sandbox
def test_expired_short_url_is_404(client: ShlinkClient) -> None:
    slug = _slug()
    client.create("https://example.com/old", custom_slug=slug, valid_until="2001-01-01T00:00:00Z")
    assert client.resolve(slug).status_code == 404


@pytest.mark.sandbox
def test_missing_long_url_is_invalid_data_naming_it(client: ShlinkClient) -> None:
    response = client._request("POST", "/rest/v3/short-urls", json={"customSlug": _slug()})
    assert response.status_code == 400
    # As Shlink does (CreateShortUrlTest); the published spec's enum happens to omit longUrl.
    assert response.json()["invalidElements"] == ["longUrl"]


# -- the redirect cache -------------------------------------------------------------------


@pytest.mark.sandbox
def test_a_redirect_fills_the_cache_and_an_edit_empties_it(
    client: ShlinkClient, sandbox_lab: Lab
) -> None:
    assert sandbox_lab.shlink.redirect_cache is True
    slug = _slug()
    client.create("https://example.com/before", custom_slug=slug)
    with closing(_master(sandbox_lab)) as master:
        assert master.exists(CACHE_PREFIX + slug) == 0
        client.resolve(slug)
        assert master.exists(CACHE_PREFIX + slug) == 1
        client.edit(slug, longUrl="https://example.com/after")
        assert master.exists(CACHE_PREFIX + slug) == 0
    assert client.resolve(slug).headers["location"] == "https://example.com/after"
    client.delete(slug)
    assert client.resolve(slug).status_code == 404  # no stale cached redirect survives


@pytest.mark.sandbox
def test_limited_urls_are_never_cached(client: ShlinkClient, sandbox_lab: Lab) -> None:
    slug = _slug()
    client.create("https://example.com/limited", custom_slug=slug, max_visits=5)
    client.resolve(slug)
    with closing(_master(sandbox_lab)) as master:
        assert master.exists(CACHE_PREFIX + slug) == 0


# -- failures (a stack of this module's own) ----------------------------------------------


@pytest.mark.slow
def test_service_keeps_redirecting_when_the_redis_master_is_killed(own_stack: Lab) -> None:
    lab = own_stack
    assert lab.sandbox is not None
    state = lab.path(lab.sandbox.state_dir)
    sentinel_port = lab.redis.sentinel_ports[0]
    with ShlinkClient.from_lab(lab) as client:
        slug = _slug()
        client.create("https://example.com/failover", custom_slug=slug)
        assert client.resolve(slug).status_code == 302
        old = sandbox_redis.sentinel_master(lab, sentinel_port)
        assert old is not None
        killed = sandbox_redis.managed(state, f"redis-{old[1]}")
        assert killed.pid is not None
        os.kill(killed.pid, signal.SIGKILL)  # a crash, not a clean shutdown

        statuses: list[int] = []
        new = old
        deadline = time.monotonic() + 60
        while new == old and time.monotonic() < deadline:
            statuses.append(client.resolve(slug).status_code)
            new = sandbox_redis.sentinel_master(lab, sentinel_port)
        assert new is not None and new != old, f"no promotion within 60s; still {old}"
        assert statuses and set(statuses) == {302}, statuses

        # The service finds the new master through the Sentinels and caches there.
        fresh = _slug()
        client.create("https://example.com/after-failover", custom_slug=fresh)
        with closing(redis_py.Redis(host=new[0], port=new[1], socket_timeout=2)) as master:
            deadline = time.monotonic() + 30
            while not master.exists(CACHE_PREFIX + fresh):
                assert time.monotonic() < deadline, "the service never cached on the new master"
                assert client.resolve(fresh).status_code == 302
                time.sleep(0.2)


@pytest.mark.slow
def test_health_fails_and_redirects_answer_503_when_postgresql_stops(own_stack: Lab) -> None:
    lab = own_stack
    assert lab.sandbox is not None
    primary = postgres.managed(lab.path(lab.sandbox.state_dir), "primary")
    pid = primary.pid
    assert pid is not None
    # SIGINT is PostgreSQL's fast shutdown: it does not wait for the service's pooled sessions.
    os.kill(pid, signal.SIGINT)
    processes.poll_until("postgres primary to stop", lambda: primary.pid is None, 30)
    with ShlinkClient.from_lab(lab) as client:
        health = client.health()
        assert (health["httpStatus"], health["status"]) == (503, "fail")
        assert client.resolve("anything").status_code == 503
