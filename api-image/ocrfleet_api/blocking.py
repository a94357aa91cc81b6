"""Blocking work (the database, the shared core's queue client) run in threads, bounded.

Each call runs in a worker thread, at most ``limit`` at once per process — as many as the
database pool keeps open — so a burst of requests queues here instead of making the pool
open and close overflow connections for every request.

A read (:meth:`Blocking.read`) gets ``timeout_s``: when the database hangs (a stalled server
accepts connections and never answers, so no client timeout fires) the request answers 503
with Retry-After instead of hanging, and the thread is left to finish on its own. Writes wait:
abandoning one could accept a document after its client was told it was not.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread
from anyio import CapacityLimiter

from ocrfleet_api.problems import unavailable

T = TypeVar("T")


class Blocking:
    def __init__(self, limit: int, *, timeout_s: float = 10.0) -> None:
        self.limiter = CapacityLimiter(limit)
        self.timeout_s = timeout_s

    async def __call__(self, fn: Callable[..., T], *args, **kwargs) -> T:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=self.limiter)

    async def read(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """Like calling, but a 503 after ``timeout_s`` (the database does not answer)."""
        try:
            with anyio.fail_after(self.timeout_s):
                return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=self.limiter,
                                                      abandon_on_cancel=True)
        except TimeoutError:
            raise unavailable(f"the results database did not answer within {self.timeout_s:g} s; retry shortly",
                              retry_after=max(1, round(self.timeout_s))) from None
