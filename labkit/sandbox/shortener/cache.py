"""The optional redirect cache: cache-aside in Redis, the master found through the Sentinels.

A cache failure never fails a redirect: while Sentinels fail over, lookups fall
back to PostgreSQL and the next request asks the Sentinels for the new master.
"""

from __future__ import annotations

import json
import logging

from redis import exceptions as redis_errors
from redis.asyncio.sentinel import Sentinel

from labkit.sandbox.shortener.store import Target

__all__ = ["CACHE_PREFIX", "RedirectCache"]

CACHE_PREFIX = "shlink:redirect:"  # every cached redirect lives under this key prefix
_log = logging.getLogger(__name__)
_FAILURES = (redis_errors.RedisError, OSError, TimeoutError)


class RedirectCache:
    """Redirect targets keyed by short code, with a TTL; misses and Redis faults return None."""

    def __init__(
        self,
        sentinels: list[tuple[str, int]],
        master_name: str,
        ttl_s: int,
        password: str | None = None,
        enabled: bool = True,
    ) -> None:
        self.enabled = enabled
        self.ttl_s = ttl_s
        self._sentinel = Sentinel(
            sentinels,
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
            password=password,
            sentinel_kwargs={"socket_timeout": 0.5, "socket_connect_timeout": 0.5},
        )
        self._master = self._sentinel.master_for(master_name, socket_timeout=0.5)

    async def get(self, code: str) -> Target | None:
        """The cached target of ``code``, or None (miss, cache off, or Redis unreachable)."""
        if not self.enabled:
            return None
        try:
            raw = await self._master.get(CACHE_PREFIX + code)
        except _FAILURES as exc:
            _log.warning("redirect cache read of %s failed, using PostgreSQL: %s", code, exc)
            return None
        return Target.from_cache(json.loads(raw)) if raw else None

    async def put(self, code: str, target: Target) -> None:
        """Remember ``target``; URLs with a visit limit are never cached (the count is in SQL)."""
        if not self.enabled or target.max_visits is not None:
            return
        try:
            await self._master.set(
                CACHE_PREFIX + code, json.dumps(target.to_cache()), ex=self.ttl_s
            )
        except _FAILURES as exc:
            _log.warning("redirect cache write of %s failed: %s", code, exc)

    async def forget(self, code: str) -> None:
        """Drop ``code`` after an edit or delete, so no stale redirect survives."""
        if not self.enabled:
            return
        try:
            await self._master.delete(CACHE_PREFIX + code)
        except _FAILURES as exc:
            _log.warning("redirect cache invalidation of %s failed: %s", code, exc)

    async def close(self) -> None:
        """Close the master connection pool and the Sentinel connections."""
        await self._master.aclose()
        for sentinel in self._sentinel.sentinels:
            await sentinel.aclose()
