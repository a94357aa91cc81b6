"""``/healthz`` (the process runs), ``/readyz`` (Redis and the database answer).

Prometheus metrics are on a port of their own (:mod:`ocrfleet_api.metrics`), not here."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from sqlalchemy import text

from ocrfleet_api.deps import ServicesDep
from ocrfleet_api.problems import PROBLEM, Problem, unavailable
from ocrfleet_api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness")
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Health, summary="Readiness: Redis and the database answer",
            responses={503: PROBLEM})
async def readyz(services: ServicesDep) -> Health:
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(services.redis.ping(), timeout=2)
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"unreachable: {exc.__class__.__name__}"
    try:
        await services.blocking.read(_ping_db, services)
        checks["database"] = "ok"
    except Problem:
        checks["database"] = f"no answer within {services.blocking.timeout_s:g} s"
    except Exception as exc:
        checks["database"] = f"unreachable: {exc.__class__.__name__}"
    bad = {k: v for k, v in checks.items() if v != "ok"}
    if bad:
        raise unavailable("not ready: " + ", ".join(f"{k} {v}" for k, v in bad.items()))
    return Health(status="ready", checks=checks)


def _ping_db(services) -> None:
    with services.store.engine.connect() as conn:
        conn.execute(text("SELECT 1"))

