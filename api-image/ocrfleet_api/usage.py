"""A tenant's numbers for a day: counts, cache use, document types, success and p95 time.

Counts come from the results store (documents created that UTC day,
:meth:`~ocrfleet.store.ResultStore.tenant_counts`); cache checks come from per-day Redis
counters. The check-cache route is the hottest there is, so it counts in memory
(:class:`UsageCounter`) and the counts reach Redis in one pipeline a second, not one round
trip per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt

from ocrfleet import keys
from ocrfleet.lifecycle import DocumentStatus
from ocrfleet.store import ResultStore, TenantCounts
from ocrfleet_api.schemas import TenantStats


def today() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


class UsageCounter:
    """Per-tenant cache-check counts, kept in memory and flushed to Redis in batches."""

    def __init__(self, redis, pool: str) -> None:
        self.redis = redis
        self.pool = pool
        self._pending: dict[tuple[str, str], list[int]] = {}

    def record_cache_check(self, tenant: str, hit: bool) -> None:
        counts = self._pending.setdefault((tenant, today()), [0, 0])
        counts[0] += 1
        counts[1] += hit

    async def flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        pipe = self.redis.pipeline(transaction=False)
        for (tenant, day), (checks, hits) in pending.items():
            name = keys.tenant_daily_stats(self.pool, tenant, day)
            pipe.hincrby(name, "cache_checks", checks)
            pipe.hincrby(name, "cache_check_hits", hits)
            pipe.expire(name, 8 * 86_400)
        try:
            await pipe.execute()
        except Exception:
            for key, (checks, hits) in pending.items():  # keep them for the next try
                counts = self._pending.setdefault(key, [0, 0])
                counts[0] += checks
                counts[1] += hits
            raise

    async def run(self, interval_s: float = 1.0) -> None:
        """Flush every ``interval_s`` until cancelled (then once more)."""
        try:
            while True:
                await asyncio.sleep(interval_s)
                with contextlib.suppress(Exception):
                    await self.flush()
        finally:
            with contextlib.suppress(Exception):
                await self.flush()


async def read_cache_checks(redis, pool: str, tenant: str, day: str) -> tuple[int, int]:
    raw = await redis.hgetall(keys.tenant_daily_stats(pool, tenant, day))
    data = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
    return data.get("cache_checks", 0), data.get("cache_check_hits", 0)


def document_stats(store: ResultStore, tenant: str, day: str) -> TenantCounts:
    """Blocking: the database side of :class:`TenantStats`."""
    start = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)
    return store.tenant_counts(tenant, start, start + dt.timedelta(days=1))


def assemble(tenant: str, day: str, db: TenantCounts, checks: int, check_hits: int) -> TenantStats:
    by_status = {status.value: n for status, n in db.by_status.items()}
    total = sum(by_status.values())
    finished = sum(n for status, n in db.by_status.items() if status.finished)
    succeeded = db.by_status.get(DocumentStatus.SUCCEEDED, 0)
    lookups = checks + total
    hits = check_hits + db.answered_from_cache
    return TenantStats(
        tenant=tenant, day=day, documents=total, by_status=by_status, by_document_type=db.by_document_type,
        answered_from_cache=db.answered_from_cache, cache_checks=checks, cache_check_hits=check_hits,
        cache_hit_rate=round(hits / lookups, 4) if lookups else None,
        success_rate=round(succeeded / finished, 4) if finished else None,
        p95_processing_ms=db.p95_processing_ms,
    )
