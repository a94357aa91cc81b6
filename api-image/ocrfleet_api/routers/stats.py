"""``/v1/stats``: the calling tenant's numbers for a day."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ocrfleet_api.deps import ServicesDep, TenantDep
from ocrfleet_api.problems import RESPONSES, Problem
from ocrfleet_api.schemas import TenantStats
from ocrfleet_api.usage import assemble, document_stats, read_cache_checks, today

router = APIRouter(prefix="/v1/stats", tags=["stats"], responses=RESPONSES)


@router.get("", response_model=TenantStats, summary="Today's numbers for the calling tenant")
async def get_stats(principal: TenantDep, services: ServicesDep,
                    day: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$",
                                                     description="UTC day, YYYY-MM-DD; default today")] = None,
                    ) -> TenantStats:
    """Documents by status and type, cache hit rate, success rate and p95 processing time."""
    day = day or today()
    try:
        import datetime as dt

        dt.date.fromisoformat(day)
    except ValueError:
        raise Problem(422, "invalid_request", f"day {day!r} is not a calendar date (YYYY-MM-DD)") from None
    await services.usage.flush()
    db = await services.blocking.read(document_stats, services.store, principal.tenant, day)
    checks, hits = await read_cache_checks(services.redis, services.settings.pool, principal.tenant, day)
    return assemble(principal.tenant, day, db, checks, hits)
