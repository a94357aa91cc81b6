"""The clients and helpers one API process holds, built at start-up and closed at shutdown.

Nothing lives in module globals: :func:`ocrfleet_api.app.create_app` builds a
:class:`Services` in its lifespan (or takes one a test built) and routes reach it through
:mod:`ocrfleet_api.deps`. Redis is used two ways: an asyncio client for the per-request hot
path (rate limits, signatures, idempotency, queue depth) and a blocking client for the
shared core's :class:`~ocrfleet.queue.WorkQueue`, called from the thread pool together with
the blocking database work.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
import redis.asyncio

from ocrfleet.blobs import BlobStore, open_blob_store
from ocrfleet.intake import Intake
from ocrfleet.masking import MaskPolicy
from ocrfleet.progress import JobProgress
from ocrfleet.queue import WorkQueue
from ocrfleet.store import ResultStore, make_engine
from ocrfleet_api.auth import Authenticator
from ocrfleet_api.backpressure import QueueGate
from ocrfleet_api.blocking import Blocking
from ocrfleet_api.cache import ResultCache
from ocrfleet_api.idempotency import IdempotencyKeys
from ocrfleet_api.ratelimit import RateLimiter
from ocrfleet_api.settings import ApiSettings
from ocrfleet_api.tenants import TenantDirectory
from ocrfleet_api.uploads import UploadLimits
from ocrfleet_api.usage import UsageCounter

_MULTIPART_OVERHEAD = 64 * 1024
_DB_POOL_SIZE = 10
_REDIS_TIMEOUT_S = 5.0
"""Connections :func:`ocrfleet.store.make_engine` keeps open; blocking calls are bounded to it."""
"""Room for boundaries, part headers and form fields on top of the document bytes."""


@dataclass
class Services:
    settings: ApiSettings
    blocking: Blocking
    store: ResultStore
    blobs: BlobStore
    redis: redis.asyncio.Redis
    sync_redis: redis.Redis
    queue: WorkQueue
    progress: JobProgress
    directory: TenantDirectory
    auth: Authenticator
    limiter: RateLimiter
    gate: QueueGate
    idempotency: IdempotencyKeys
    intake: Intake
    results: ResultCache
    usage: UsageCounter
    upload_limits: UploadLimits
    batch_limits: UploadLimits

    @classmethod
    def build(cls, settings: ApiSettings) -> Services:
        store = ResultStore(make_engine(settings.database_url))
        blobs = open_blob_store(settings)
        # a Redis that hangs must not hang requests: every call gives up after REDIS_TIMEOUT_S
        aredis = redis.asyncio.Redis.from_url(settings.redis_url, max_connections=256, socket_timeout=_REDIS_TIMEOUT_S,
                                              socket_connect_timeout=_REDIS_TIMEOUT_S)
        sync_redis = redis.Redis.from_url(settings.redis_url, socket_timeout=_REDIS_TIMEOUT_S,
                                          socket_connect_timeout=_REDIS_TIMEOUT_S)
        queue = WorkQueue(sync_redis, settings.pool, max_attempts=settings.max_attempts,
                          claim_idle_ms=settings.claim_idle_ms)
        progress = JobProgress(sync_redis, settings.pool)
        master = settings.master_key()
        directory = TenantDirectory(store, master)
        blocking = Blocking(_DB_POOL_SIZE, timeout_s=settings.database_timeout_s)
        caps = dict(max_field_bytes=settings.max_field_bytes, max_pixels=settings.max_pixels,
                    max_pages=settings.max_pdf_pages, max_document_bytes=settings.max_upload_bytes)
        return cls(
            settings=settings, blocking=blocking, store=store, blobs=blobs, redis=aredis, sync_redis=sync_redis, queue=queue,
            progress=progress, directory=directory,
            auth=Authenticator(directory, aredis, blocking, pool=settings.pool, master_key=master, require_signatures=settings.require_signatures,
                               window_s=settings.signature_window_s, cache_s=settings.auth_cache_s,
                               mask_default=MaskPolicy.from_names(settings.mask_default),
                               miss_cache_s=settings.auth_miss_cache_s, failure_limit=settings.auth_failure_limit),
            limiter=RateLimiter(aredis, settings.pool, default_limit=settings.rate_limit_requests,
                                window_s=settings.rate_limit_window_s),
            gate=QueueGate(aredis, settings.pool, max_depth=settings.max_queue_depth,
                           cache_s=settings.queue_depth_cache_s, retry_after_s=settings.backpressure_retry_after_s),
            idempotency=IdempotencyKeys(aredis, settings.pool, ttl_s=settings.idempotency_ttl_s),
            intake=Intake(store=store, blobs=blobs, queue=queue, progress=progress),
            results=ResultCache(max_entries=settings.result_cache_entries, ttl_s=settings.result_cache_ttl_s),
            usage=UsageCounter(aredis, settings.pool),
            upload_limits=UploadLimits(max_body_bytes=settings.max_upload_bytes + _MULTIPART_OVERHEAD,
                                       max_documents=1, **caps),
            batch_limits=UploadLimits(max_body_bytes=settings.max_batch_bytes,
                                      max_documents=settings.max_batch_documents, **caps),
        )

    async def close(self) -> None:
        await self.redis.aclose()
        self.sync_redis.close()
        self.store.engine.dispose()
