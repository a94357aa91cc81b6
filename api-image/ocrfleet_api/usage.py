"""A tenant's numbers for a day: counts, cache use, document types, success and p95 time.

Counts come from the results store (documents created that UTC day); cache checks come from
per-day Redis counters. The check-cache route is the hottest there is, so it counts in memory
(:class:`UsageCounter`) and the counts reach Redis in one pipeline a second, not one round
trip per request. The p95 is read with an
ordered ``OFFSET`` query, which PostgreSQL and SQLite both answer from the tenant's index.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt

from sqlalchemy import func, select

from ocrfleet import keys
from ocrfleet.store import DocumentRow, ResultStore
from ocrfleet_api.schemas import TenantStats


def today() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


class UsageCounter:
    """Per-tenant cache-check counts, kept in memory and flushed to Redis in batches."""

    def __init__(self, redis) -> None:
        self.redis = redis
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
            name = keys.tenant_daily_stats(tenant, day)
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


async def read_cache_checks(redis, tenant: str, day: str) -> tuple[int, int]:
    raw = await redis.hgetall(keys.tenant_daily_stats(tenant, day))
    data = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
    return data.get("cache_checks", 0), data.get("cache_check_hits", 0)


def document_stats(store: ResultStore, tenant: str, day: str) -> dict:
    """Blocking: the database side of :class:`TenantStats`."""
    start = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)
    end = start + dt.timedelta(days=1)
    scope = (DocumentRow.tenant == tenant, DocumentRow.created_at >= start, DocumentRow.created_at < end)
    with store.session() as s:
        by_status = dict(s.execute(
            select(DocumentRow.status, func.count()).where(*scope).group_by(DocumentRow.status)).all())
        by_type = dict(s.execute(
            select(func.coalesce(DocumentRow.document_type, "unknown"), func.count())
            .where(*scope, DocumentRow.status == "succeeded").group_by(DocumentRow.document_type)).all())
        cached = s.scalar(select(func.count()).where(*scope, DocumentRow.cached_from.is_not(None))) or 0
        timed = (*scope, DocumentRow.status == "succeeded", DocumentRow.processing_ms.is_not(None),
                 DocumentRow.cached_from.is_(None))
        n = s.scalar(select(func.count()).where(*timed)) or 0
        p95 = None
        if n:
            p95 = s.scalar(select(DocumentRow.processing_ms).where(*timed).order_by(DocumentRow.processing_ms)
                           .offset(min(n - 1, int(0.95 * n))).limit(1))
    return {"by_status": {k: int(v) for k, v in by_status.items()},
            "by_document_type": {k: int(v) for k, v in by_type.items()},
            "answered_from_cache": int(cached), "p95_processing_ms": p95}


def assemble(tenant: str, day: str, db: dict, checks: int, check_hits: int) -> TenantStats:
    by_status = db["by_status"]
    total = sum(by_status.values())
    finished = by_status.get("succeeded", 0) + by_status.get("failed", 0)
    lookups = checks + total
    hits = check_hits + db["answered_from_cache"]
    return TenantStats(
        tenant=tenant, day=day, documents=total, by_status=by_status, by_document_type=db["by_document_type"],
        answered_from_cache=db["answered_from_cache"], cache_checks=checks, cache_check_hits=check_hits,
        cache_hit_rate=round(hits / lookups, 4) if lookups else None,
        success_rate=round(by_status.get("succeeded", 0) / finished, 4) if finished else None,
        p95_processing_ms=db["p95_processing_ms"],
    )
