"""Per-tenant rate limits kept in Redis, shared by every API replica.

A fixed window: each request increments the tenant's counter for the current window (one
Lua step, one round trip; the counter expires with its window); past the limit the request gets 429 with ``Retry-After`` set to the
seconds until the window ends.
"""

from __future__ import annotations

import logging
import math
import time

from redis import exceptions as redis_errors

from ocrfleet import keys
from ocrfleet_api.problems import Problem

log = logging.getLogger(__name__)

_HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""


class RateLimiter:
    def __init__(self, redis, pool: str, *, default_limit: int, window_s: int) -> None:
        self.redis = redis
        self.pool = pool
        self.default_limit = default_limit
        self.window_s = window_s
        self._hit = redis.register_script(_HIT)

    async def check(self, tenant: str, limit: int | None = None) -> int | None:
        """Count one request; returns the requests left in this window, or raises 429.

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
        if count > limit:
            retry_after = max(1, math.ceil((window + 1) * self.window_s - now))
            raise Problem(429, "rate_limited",
                          f"tenant {tenant!r} is limited to {limit} requests per {self.window_s} s; "
                          f"retry after {retry_after} s",
                          title="Too many requests", headers={"Retry-After": str(retry_after)})
        return limit - count
