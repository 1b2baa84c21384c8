"""The sandbox's stand-in for Shlink: a Shlink-compatible URL shortener on PostgreSQL and Redis.

What it is: a starlette app behind uvicorn (``lab.shlink.workers`` processes)
that honours the parts of Shlink's published REST API contract
(``tests/data/shlink/openapi-v5.0.2.json``) the lab uses: ``X-Api-Key`` auth on
``/rest/v{1,2,3}/...``; create (with ``customSlug``, ``findIfExists``, ``tags``,
``validUntil``, ``maxVisits``), get, edit, delete and list short URLs; a short
URL's visits; ``/rest/health`` (``application/health+json``, 200/503 from
``SELECT 1``); problem+json errors with Shlink's ``type`` URIs; and
``GET /{shortCode}`` answering 302 (404 page when unknown). Like Shlink, every
redirect records a visit in PostgreSQL in one transaction (visit row plus a
slotted counter) and unknown codes record an orphan visit; like Shlink with
``REDIS_SENTINEL_SERVICE``, it finds the Redis master through the Sentinels.
Beyond Shlink, an optional cache-aside **redirect cache** in Redis
(``lab.shlink.redirect_cache``) keeps redirect look-ups off PostgreSQL, so the
lab can measure what a cache buys; a Redis fault falls back to PostgreSQL.
Input it could not store, read back or serve is refused at the edge with
400 invalid-data naming the field and the bound (the bounds are in ``model``),
and a redirect's ``Location`` is percent-encoded as RFC 3986 asks.

What it is not: Shlink. No tags/domains/redirect-rules/orphan-visit endpoints,
no multi-domain support (only ``default_domain``), no geolocation (a visit's
``visitLocation`` is ``{}``, which the published schema allows where Shlink sends
null), no title auto-resolution, no QR codes, no real-time updates, and none of
Shlink's performance characteristics (it keeps a connection pool where Shlink
reconnects per request). Use its numbers to compare designs, not to size Shlink.
"""

from labkit.sandbox.shortener.cache import CACHE_PREFIX
from labkit.sandbox.shortener.config import CONFIG_ENV, ServiceConfig, service_command

__all__ = ["CACHE_PREFIX", "CONFIG_ENV", "ServiceConfig", "service_command"]
