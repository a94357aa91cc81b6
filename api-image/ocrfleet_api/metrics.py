"""Prometheus metrics: requests, latency, queue depth, cache checks, uploads and outcomes.

They are served on a port of their own (``OCRFLEET_METRICS_PORT``, 9090), never on the
tenants' port: :func:`serve` starts the exposition server in the process that runs uvicorn.
With several uvicorn workers the metrics are shared through ``PROMETHEUS_MULTIPROC_DIR`` (set
by :mod:`ocrfleet_api.__main__`) and the exposition merges every worker's files. The queue
depth and today's outcomes are refreshed by each worker every ``REFRESH_S``
(:func:`keep_fresh`). Request metrics are recorded by a plain ASGI middleware, labelled by
route template (never the raw path, which would explode the label set).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import time

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client import multiprocess as prom_multiprocess

from ocrfleet.lifecycle import DocumentStatus

REQUESTS = Counter("ocrfleet_api_requests_total", "HTTP requests by route and status",
                   ["method", "route", "status"])
LATENCY = Histogram("ocrfleet_api_request_seconds", "HTTP request latency by route", ["method", "route"],
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
QUEUE_DEPTH = Gauge("ocrfleet_queue_depth", "Documents waiting or in flight in the pool's queue",
                    multiprocess_mode="mostrecent")
CACHE_CHECKS = Counter("ocrfleet_api_cache_checks_total", "check-cache requests by result", ["result"])
DOCUMENTS_ACCEPTED = Counter("ocrfleet_api_documents_accepted_total", "Documents accepted, by how",
                             ["how"])
UPLOADS_REJECTED = Counter("ocrfleet_api_uploads_rejected_total", "Uploads refused, by problem code", ["code"])
OUTCOMES = Gauge("ocrfleet_documents_today", "Today's documents by status and document type",
                 ["status", "document_type"], multiprocess_mode="mostrecent")


REFRESH_S = 15.0


def count_accepted(accepted) -> None:
    """Count accepted documents by how: answered from the cache, or queued."""
    for a in accepted:
        DOCUMENTS_ACCEPTED.labels("cache" if a.cached else DocumentStatus.QUEUED.value).inc()


def registry() -> CollectorRegistry:
    """Every metric (merged over workers in multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        merged = CollectorRegistry()
        prom_multiprocess.MultiProcessCollector(merged)
        return merged
    return REGISTRY


def serve(host: str, port: int) -> None:
    """The exposition on ``host:port`` (``/metrics``), from a thread of this process."""
    start_http_server(port, addr=host, registry=registry())


async def keep_fresh(services, interval_s: float = REFRESH_S) -> None:
    """Refresh the gauges read from Redis and the database until cancelled."""
    while True:
        with contextlib.suppress(Exception):  # an unreachable Redis must not stop the others
            QUEUE_DEPTH.set(await services.gate.depth())
        with contextlib.suppress(Exception):
            await services.blocking.read(refresh_outcomes, services.store)
        await asyncio.sleep(interval_s)


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            REQUESTS.labels(method, template, str(status)).inc()
            LATENCY.labels(method, template).observe(time.perf_counter() - start)


_OUTCOMES_TTL_S = 30.0
_outcomes_read_at = -1e9


def refresh_outcomes(store) -> None:
    """Blocking: today's documents by status and type from the store, at most every 30 s."""
    global _outcomes_read_at
    now = time.monotonic()
    if now - _outcomes_read_at < _OUTCOMES_TTL_S:
        return
    start = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    try:
        rows = store.outcomes_since(start)
    except Exception:  # an unreachable database must not hide every other metric
        return
    OUTCOMES.clear()
    for status, document_type, n in rows:
        OUTCOMES.labels(status.value, document_type).set(n)
    _outcomes_read_at = now
