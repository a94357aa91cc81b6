"""Backpressure: refuse new work (503 + Retry-After) while the queue is deeper than a bound.

Work the pool cannot finish in time is better refused at the door than accepted and left to
rot. The depth is the sum of the pool's stream lengths (acked entries are deleted, so that is
waiting + in flight), read in one pipelined round trip and reused for ``cache_s`` seconds.
"""

from __future__ import annotations

import time

from ocrfleet import keys
from ocrfleet_api.problems import Problem


class QueueGate:
    def __init__(self, redis, cluster: str, *, max_depth: int, cache_s: float, retry_after_s: int) -> None:
        self.redis = redis
        self.streams = [keys.stream(cluster, p) for p in keys.PRIORITIES]
        self.max_depth = max_depth
        self.cache_s = cache_s
        self.retry_after_s = retry_after_s
        self._depth = 0
        self._read_at = -1e9

    async def depth(self) -> int:
        now = time.monotonic()
        if now - self._read_at >= self.cache_s:
            pipe = self.redis.pipeline(transaction=False)
            for name in self.streams:
                pipe.xlen(name)
            self._depth = sum(int(n) for n in await pipe.execute())
            self._read_at = now
        return self._depth

    async def admit(self, documents: int = 1) -> None:
        """Raise 503 when the queue is over its bound."""
        depth = await self.depth()
        if depth + documents > self.max_depth:
            raise Problem(503, "queue_full",
                          f"the processing queue holds {depth:,} documents, over its bound of {self.max_depth:,}; "
                          f"retry after {self.retry_after_s} s",
                          title="Service unavailable", headers={"Retry-After": str(self.retry_after_s)})
