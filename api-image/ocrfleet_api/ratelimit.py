"""Per-tenant rate limits kept in Redis, shared by every API replica.

A fixed window per tenant, counted in Redis (the counter expires with its window). A process
does not go to Redis for every request: it takes a *lease* of a few of the window's requests at
once (one Lua step: ``INCRBY`` the lease, grant what is still under the limit) and hands them
out locally until they are spent, so a busy tenant costs one round trip per lease instead of
one per request (:data:`MAX_LEASE`; a lease is at most 1 % of the limit). The limit is never
exceeded across replicas; a tenant may be refused up to ``lease x processes`` requests before
its limit while other processes still hold unspent leases, and those expire with the window.
Past the limit the request gets 429 with ``Retry-After`` set to the seconds until the window
ends. Every answer to an authenticated request carries the tenant's quota as the IETF
RateLimit header fields clients read (``RateLimit-Limit``, ``RateLimit-Remaining``,
``RateLimit-Reset`` in seconds), added by :class:`QuotaHeaders` from the :class:`Quota` the
check left on the request; with one process, ``RateLimit-Remaining`` is exact.
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

# Takes a lease of ARGV[2] requests of the window: returns the count after it and how many of
# them are under the limit ARGV[3] (what the caller may hand out).
_LEASE = """
local n = redis.call('INCRBY', KEYS[1], ARGV[2])
if n == tonumber(ARGV[2]) then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local before = n - tonumber(ARGV[2])
local granted = math.max(0, math.min(tonumber(ARGV[2]), tonumber(ARGV[3]) - before))
return {n, granted}
"""

MAX_LEASE = 20
"""The most requests one lease takes (a lease is also at most 1 % of the tenant's limit)."""


def lease_size(limit: int) -> int:
    return max(1, min(MAX_LEASE, limit // 100))


@dataclass(frozen=True)
class Quota:
    """The tenant's window as this request left it."""

    limit: int
    remaining: int
    reset_s: int

    def headers(self) -> dict[str, str]:
        return {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(self.remaining),
                "RateLimit-Reset": str(self.reset_s)}


@dataclass
class _Lease:
    window: int
    left: int
    counted: int
    """The window's count in Redis after this process's last lease."""


class RateLimiter:
    def __init__(self, redis, pool: str, *, default_limit: int, window_s: int) -> None:
        self.redis = redis
        self.pool = pool
        self.default_limit = default_limit
        self.window_s = window_s
        self._lease = redis.register_script(_LEASE)
        self._leases: dict[str, _Lease] = {}

    async def check(self, tenant: str, limit: int | None = None) -> Quota | None:
        """Count one request; returns what is left of this window, or raises 429.

        With Redis away the request is let through (None): reads must not fail because the
        limiter's counters are unreachable, and writes fail anyway where they need the queue.
        """
        limit = limit or self.default_limit
        now = time.time()
        window = int(now // self.window_s)
        lease = self._leases.get(tenant)
        if lease is None or lease.window != window or lease.left <= 0:
            try:
                lease = await self._take(tenant, window, limit)
            except (redis_errors.ConnectionError, redis_errors.TimeoutError) as exc:
                log.warning("rate limit of %s not counted, Redis is unreachable: %s", tenant, exc)
                return None
        reset_s = max(1, math.ceil((window + 1) * self.window_s - now))
        if lease.left <= 0:
            quota = Quota(limit, 0, reset_s)
            raise Problem(429, "rate_limited",
                          f"tenant {tenant!r} is limited to {limit} requests per {self.window_s} s; "
                          f"retry after {quota.reset_s} s", title="Too many requests",
                          headers={"Retry-After": str(quota.reset_s), **quota.headers()})
        lease.left -= 1
        return Quota(limit, max(0, limit - lease.counted) + lease.left, reset_s)

    async def _take(self, tenant: str, window: int, limit: int) -> _Lease:
        size = lease_size(limit)
        key = keys.rate_limit(self.pool, tenant, window)
        counted, granted = await self._lease(keys=[key], args=[self.window_s + 1, size, limit])
        lease = _Lease(window, int(granted), int(counted))
        if len(self._leases) > 10_000:
            self._leases.clear()
        self._leases[tenant] = lease
        return lease


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
