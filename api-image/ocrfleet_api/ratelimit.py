"""Per-tenant rate limits kept in Redis, shared by every API replica.

A fixed window: each request increments the tenant's counter for the current window (one
Lua step, one round trip; the counter expires with its window); past the limit the request gets
429 with ``Retry-After`` set to the seconds until the window ends. Every answer to an
authenticated request carries the tenant's quota as the IETF RateLimit header fields clients
read (``RateLimit-Limit``, ``RateLimit-Remaining``, ``RateLimit-Reset`` in seconds), added by
:class:`QuotaHeaders` from the :class:`Quota` the check left on the request.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from redis import exceptions as redis_errors
from starlette.datastructures import MutableHeaders

from ocrfleet import keys
from ocrfleet_api.problems import Problem

log = logging.getLogger(__name__)

_HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""


@dataclass(frozen=True)
class Quota:
    """The tenant's window as this request left it."""

    limit: int
    remaining: int
    reset_s: int

    def headers(self) -> dict[str, str]:
        return {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(self.remaining),
                "RateLimit-Reset": str(self.reset_s)}


class RateLimiter:
    def __init__(self, redis, pool: str, *, default_limit: int, window_s: int) -> None:
        self.redis = redis
        self.pool = pool
        self.default_limit = default_limit
        self.window_s = window_s
        self._hit = redis.register_script(_HIT)

    async def check(self, tenant: str, limit: int | None = None) -> Quota | None:
        """Count one request; returns what is left of this window, or raises 429.

        With Redis away the request is let through (None): reads must not fail because the
        limiter's counters are unreachable, and writes fail anyway where they need the queue.
        """
        limit = limit or self.default_limit
        now = time.time()
        window = int(now // self.window_s)
        key = keys.rate_limit(self.pool, tenant, window)
        try:
            count = int(await self._hit(keys=[key], args=[self.window_s + 1]))
        except (redis_errors.ConnectionError, redis_errors.TimeoutError) as exc:
            log.warning("rate limit of %s not counted, Redis is unreachable: %s", tenant, exc)
            return None
        quota = Quota(limit, max(0, limit - count), max(1, math.ceil((window + 1) * self.window_s - now)))
        if count > limit:
            raise Problem(429, "rate_limited",
                          f"tenant {tenant!r} is limited to {limit} requests per {self.window_s} s; "
                          f"retry after {quota.reset_s} s", title="Too many requests",
                          headers={"Retry-After": str(quota.reset_s), **quota.headers()})
        return quota


class QuotaHeaders:
    """ASGI middleware: the RateLimit fields of the request's :class:`Quota` on its response."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_quota(message) -> None:
            quota = scope.get("state", {}).get("quota") if message["type"] == "http.response.start" else None
            if quota is not None:
                headers = MutableHeaders(scope=message)
                for name, value in quota.headers().items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_quota)
