"""``/healthz`` (the process runs), ``/readyz`` (Redis and the database answer), ``/metrics``."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, Response
from sqlalchemy import text

from ocrfleet_api import metrics
from ocrfleet_api.deps import ServicesDep
from ocrfleet_api.problems import ProblemDetails, unavailable
from ocrfleet_api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness")
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Health, summary="Readiness: Redis and the database answer",
            responses={503: {"model": ProblemDetails, "content": {"application/problem+json": {}}}})
async def readyz(services: ServicesDep) -> Health:
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(services.redis.ping(), timeout=2)
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"unreachable: {exc.__class__.__name__}"
    try:
        await asyncio.wait_for(services.blocking(_ping_db, services), timeout=5)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable: {exc.__class__.__name__}"
    bad = {k: v for k, v in checks.items() if v != "ok"}
    if bad:
        raise unavailable("not ready: " + ", ".join(f"{k} {v}" for k, v in bad.items()))
    return Health(status="ready", checks=checks)


def _ping_db(services) -> None:
    with services.store.engine.connect() as conn:
        conn.execute(text("SELECT 1"))


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
async def prometheus_metrics(services: ServicesDep) -> Response:
    with contextlib.suppress(Exception):  # an unreachable Redis must not hide every other metric
        metrics.QUEUE_DEPTH.set(await services.gate.depth())
    await services.blocking(metrics.refresh_outcomes, services.store)
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
