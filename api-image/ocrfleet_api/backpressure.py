"""Backpressure: refuse new work (503 + Retry-After) while the queue is deeper than a bound.

Work the pool cannot finish in time is better refused at the door than accepted and left to
rot. The depth is the queue's own (:func:`ocrfleet.queue.depth_from_replies`, the rule the
autoscaler scales on), read in one pipelined round trip and reused for ``cache_s`` seconds.
"""

from __future__ import annotations

import time

from ocrfleet.queue import depth_from_replies, queue_depth_commands
from ocrfleet_api.problems import Problem


class QueueGate:
    def __init__(self, redis, cluster: str, *, max_depth: int, cache_s: float, retry_after_s: int) -> None:
        self.redis = redis
        self.cluster = cluster
        self.max_depth = max_depth
        self.cache_s = cache_s
        self.retry_after_s = retry_after_s
        self._depth = 0
        self._read_at = -1e9

    async def depth(self) -> int:
        now = time.monotonic()
        if now - self._read_at >= self.cache_s:
            pipe = queue_depth_commands(self.redis.pipeline(transaction=False), self.cluster)
            self._depth = depth_from_replies(await pipe.execute(raise_on_error=False)).total
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
