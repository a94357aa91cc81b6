"""The FastAPI application, built by :func:`create_app` from an :class:`ApiSettings`.

Tests pass their own settings (or ready-made :class:`Services`); ``uvicorn`` builds it with
:func:`app_from_env` (``--factory``), one per worker process.
"""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import asynccontextmanager

from fastapi import FastAPI

from ocrfleet import __version__
from ocrfleet_api import metrics, openapi, problems
from ocrfleet_api.bodycap import BodyCapMiddleware
from ocrfleet_api.metrics import MetricsMiddleware
from ocrfleet_api.ratelimit import QuotaHeaders
from ocrfleet_api.routers import batches, documents, health, ocrjobs, stats
from ocrfleet_api.services import Services
from ocrfleet_api.settings import ApiSettings

DESCRIPTION = """Submit documents for OCR, check the content-hash cache, and read structured results.

Authenticate with an API key (`Authorization: Bearer ofk_...` or `X-API-Key`); a tenant may
require each request to be signed as well (the `X-Ocrfleet-*` schemes). Every error is an RFC 9457
problem document (`application/problem+json`); answers carry the tenant's rate-limit quota
(`RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`). Long lists are paged with a cursor:
pass a page's `next` as `after`."""


def create_app(settings: ApiSettings | None = None, *, services: Services | None = None) -> FastAPI:
    settings = settings or ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        own = services is None
        app.state.services = running = services or Services.build(settings)
        background = [asyncio.create_task(running.usage.run()), asyncio.create_task(metrics.keep_fresh(running))]
        try:
            yield
        finally:
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if own:
                await running.close()

    app = FastAPI(title="ocrfleet API", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  generate_unique_id_function=openapi.operation_id)
    app.openapi = lambda: openapi.document(app)
    app.state.settings = settings
    problems.install(app)
    for router in (documents.router, batches.router, ocrjobs.router, stats.router, health.router):
        app.include_router(router)
    app.add_middleware(BodyCapMiddleware, limit=settings.max_json_bytes)
    app.add_middleware(QuotaHeaders)
    app.add_middleware(MetricsMiddleware)
    return app


def app_from_env() -> FastAPI:
    """The uvicorn factory: settings from ``OCRFLEET_*`` environment variables."""
    return create_app(ApiSettings())
