"""Phase 3, Shlink: the API verification items of 3.2, against whatever endpoint the params name.

The checks reach Shlink at ``lab.shlink.base_url`` and Redis at
``lab.redis`` (through its Sentinels when listed), so the same code checks the
sandbox directly and the homelab through a port-forward. 3.2.5 creates one
probe short URL that 3.2.6-3.2.8 reuse; it is deleted when the run ends.
"""

from __future__ import annotations

import secrets
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from labkit.checks.base import Context, Outcome, implements
from labkit.errors import LabkitError
from labkit.sandbox.shortener.cache import CACHE_PREFIX
from labkit.shlink import ShlinkClient
from labkit.stores import RedisClient, lab_redis_master

_PROBE_TAG = "labkit-check"
_SCAN_LIMIT = 10_000  # keys examined when counting the cache; enough to tell empty from populated


@dataclass
class _Probe:
    """The short URL 3.2.5 created (or why it could not)."""

    long_url: str
    slug: str
    created: dict[str, Any] | None = None
    error: str = ""


def _client(context: Context) -> ShlinkClient:
    client: ShlinkClient = context.resource(
        "shlink.client", lambda: ShlinkClient.from_lab(context.lab), lambda c: c.close()
    )
    return client


def _make_probe(context: Context) -> _Probe:
    token = secrets.token_hex(4)
    probe = _Probe(f"https://example.com/labkit/check/{token}", f"labkit-check-{token}")
    try:
        probe.created = _client(context).create(
            probe.long_url, custom_slug=probe.slug, tags=[_PROBE_TAG]
        )
    except LabkitError as exc:
        probe.error = str(exc)
    return probe


def _remove_probe(context: Context, probe: _Probe) -> None:
    if probe.created is not None:
        # The probe is the only thing these checks write; leave the service as found.
        _client(context).delete(probe.slug)


def _probe(context: Context) -> _Probe:
    probe: _Probe = context.resource(
        "shlink.probe", lambda: _make_probe(context), lambda p: _remove_probe(context, p)
    )
    return probe


@implements("3.2.4")
def health_responds(context: Context) -> Outcome:
    """GET /rest/health answers 200 with status ``pass``."""
    url = f"{context.lab.shlink.base_url}/rest/health"
    try:
        health = _client(context).health()
    except LabkitError as exc:
        return Outcome.judge(False, "200, status pass", f"no health answer: {exc}", f"GET {url}")
    ok = health.get("httpStatus") == 200 and health.get("status") == "pass"
    return Outcome.judge(
        ok,
        "200, status pass",
        f"{health.get('httpStatus')}, status {health.get('status')}",
        f"GET {url} -> {health}",
    )


@implements("3.2.5")
def create_short_url(context: Context) -> Outcome:
    """POST /rest/v3/short-urls with a custom slug returns that slug and the long URL."""
    probe = _probe(context)
    evidence = f"POST /rest/v3/short-urls longUrl={probe.long_url} customSlug={probe.slug}"
    if probe.created is None:
        return Outcome.judge(False, "200 with the new short URL", probe.error, evidence)
    created = probe.created
    ok = created.get("shortCode") == probe.slug and created.get("longUrl") == probe.long_url
    return Outcome.judge(
        ok,
        f"shortCode {probe.slug} -> {probe.long_url}",
        f"shortCode {created.get('shortCode')} -> {created.get('longUrl')}",
        f"{evidence} -> {created}",
    )


@implements("3.2.6")
def retrieve_short_url(context: Context) -> Outcome:
    """GET /rest/v3/short-urls/{code} returns what was created."""
    probe = _probe(context)
    if probe.created is None:
        return Outcome.judge(False, "a short URL to retrieve", f"3.2.5 failed: {probe.error}")
    evidence = f"GET /rest/v3/short-urls/{probe.slug}"
    try:
        found = _client(context).get(probe.slug)
    except LabkitError as exc:
        return Outcome.judge(False, f"200, longUrl {probe.long_url}", str(exc), evidence)
    return Outcome.judge(
        found.get("longUrl") == probe.long_url and found.get("shortCode") == probe.slug,
        f"shortCode {probe.slug}, longUrl {probe.long_url}",
        f"shortCode {found.get('shortCode')}, longUrl {found.get('longUrl')}",
        f"{evidence} -> {found}",
    )


@implements("3.2.7")
def redirects(context: Context) -> Outcome:
    """GET /{code} answers 302 with Location = the long URL."""
    probe = _probe(context)
    if probe.created is None:
        return Outcome.judge(False, "a short URL to resolve", f"3.2.5 failed: {probe.error}")
    try:
        response = _client(context).resolve(probe.slug)
    except LabkitError as exc:
        return Outcome.judge(False, f"302, Location {probe.long_url}", str(exc), probe.slug)
    location = response.headers.get("location")
    return Outcome.judge(
        response.status_code == 302 and location == probe.long_url,
        f"302, Location {probe.long_url}",
        f"{response.status_code}, Location {location}",
        f"GET {context.lab.shlink.base_url}/{probe.slug} (redirects not followed)",
    )


def _count(client: RedisClient, pattern: str) -> int:
    count = 0
    for _ in client.scan_iter(match=pattern, count=500):
        count += 1
        if count >= _SCAN_LIMIT:
            break
    return count


@implements("3.2.8")
def cache_populated(context: Context) -> Outcome:
    """After a redirect, Redis holds its redirect-cache key (when the cache is on in params)."""
    lab = context.lab
    probe = _probe(context)
    if probe.created is not None:
        _client(context).resolve(probe.slug)  # a redirect is what fills a cache-aside cache
    with closing(lab_redis_master(lab)) as client:
        cached = _count(client, CACHE_PREFIX + "*")
        total = int(client.dbsize())
        probe_key = CACHE_PREFIX + probe.slug
        has_probe = probe.created is not None and bool(client.exists(probe_key))
    seen = f"{total} keys in Redis, {cached} under {CACHE_PREFIX}*"
    evidence = f"SCAN MATCH {CACHE_PREFIX}* ; DBSIZE ; EXISTS {probe_key}"
    if not lab.shlink.redirect_cache:
        return Outcome.skip(
            f"redirect cache is off in params (shlink.redirect_cache: false); saw {seen}"
        )
    if probe.created is None:
        return Outcome.judge(
            False, f"{probe_key} present", f"no probe (3.2.5 failed); {seen}", evidence
        )
    return Outcome.judge(
        has_probe and cached > 0,
        f"{probe_key} present after a redirect",
        f"{probe_key} {'present' if has_probe else 'absent'}; {seen}",
        evidence,
    )
