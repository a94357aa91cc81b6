"""Blocking work (the database, the shared core's queue client) run in threads, bounded.

Each call runs in a worker thread, at most ``limit`` at once per process — as many as the
database pool keeps open — so a burst of requests queues here instead of making the pool
open and close overflow connections for every request.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import anyio.to_thread
from anyio import CapacityLimiter

T = TypeVar("T")


class Blocking:
    def __init__(self, limit: int) -> None:
        self.limiter = CapacityLimiter(limit)

    async def __call__(self, fn: Callable[..., T], *args, **kwargs) -> T:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=self.limiter)
