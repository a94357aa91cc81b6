"""The worker process: ``python -m ocrfleet_worker``.

Reads :class:`~ocrfleet_worker.settings.WorkerSettings` from the environment once, creates
the clients (Redis, the results store, the blob store, the OCR engine), hands them to a
:class:`~ocrfleet_worker.consumer.Worker` and runs it until SIGTERM or SIGINT, after which the
document in hand is finished and the process exits 0.
"""

from __future__ import annotations

import logging
import signal
import sys
import time

import redis

from ocrfleet.blobs import S3BlobStore, open_blob_store
from ocrfleet.errors import TemporaryError
from ocrfleet.progress import JobProgress
from ocrfleet.queue import WorkQueue
from ocrfleet.settings import command_line
from ocrfleet.store import ResultStore, make_engine
from ocrfleet_worker import metrics
from ocrfleet_worker.consumer import Pacing, Worker
from ocrfleet_worker.drain import DrainFiles
from ocrfleet_worker.pipeline import DocumentPipeline, PageReader
from ocrfleet_worker.settings import WorkerSettings

log = logging.getLogger("ocrfleet.worker")


def build_engine(settings: WorkerSettings) -> PageReader:
    """The OCR engine the settings name."""
    from ocrfleet_worker import engine as ocr_engine

    if settings.engine == "torch":
        return ocr_engine.LocalTorchEngine()
    wait_for_triton(ocr_engine.TritonNetworks(settings.triton_url), settings.triton_wait_s)
    return ocr_engine.TritonEngine(settings.triton_url)


def wait_for_triton(networks, timeout_s: float, *, interval_s: float = 1.0) -> None:
    """Wait until Triton answers with every model ready: in a pod the two containers start together."""
    deadline = time.monotonic() + timeout_s
    waited = False
    while not networks.ready():
        if time.monotonic() >= deadline:
            raise TemporaryError(f"Triton at {networks.url} was not ready within {timeout_s:.0f} s")
        if not waited:
            log.info("waiting for Triton at %s to load its models", networks.url)
            waited = True
        time.sleep(interval_s)
    networks.close()


def build_worker(settings: WorkerSettings, *, engine: PageReader | None = None) -> Worker:
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=max(30.0, settings.block_ms / 1000 + 10),
                                  socket_connect_timeout=5, health_check_interval=30)
    store = ResultStore(make_engine(settings.database_url))
    _create_schema(store)
    blobs = open_blob_store(settings)
    return Worker(
        queue=WorkQueue(client, settings.pool, max_attempts=settings.max_attempts,
                        claim_idle_ms=settings.claim_idle_ms),
        store=store,
        progress=JobProgress(client, settings.pool),
        blobs=blobs,
        sources=settings.source_access(blobs if isinstance(blobs, S3BlobStore) else None),
        pipeline=DocumentPipeline(engine or build_engine(settings), settings.decode_limits()),
        consumer=settings.consumer_name,
        pacing=Pacing(block_ms=settings.block_ms, reclaim_interval_s=settings.reclaim_interval_s,
                      backoff_base_s=settings.backoff_base_s, backoff_max_s=settings.backoff_max_s),
        drain=DrainFiles(settings.drain_file, settings.busy_file),
    )


def _create_schema(store: ResultStore) -> None:
    """Create missing tables; workers starting together may race, so one retry."""
    from sqlalchemy.exc import DBAPIError

    try:
        store.create_schema()
    except DBAPIError:
        store.create_schema()


def main(argv: list[str] | None = None, *, engine: PageReader | None = None) -> int:
    """Run until SIGTERM; ``engine`` replaces the one the settings name (the dev tooling's replay)."""
    command_line(sys.argv[1:] if argv is None else argv, program="python -m ocrfleet_worker",
                 summary="The ocrfleet worker: takes documents from its pool's queue, reads them through "
                 "Triton, stores their results.", settings=WorkerSettings)
    settings = WorkerSettings()
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    worker = build_worker(settings, engine=engine)
    metrics.serve(settings.metrics_host, settings.metrics_port)

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s: finishing the current document, then stopping", signal.Signals(signum).name)
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("worker %s consuming pool %s (engine %s)", settings.consumer_name, settings.pool,
             type(engine).__name__ if engine else settings.engine)
    worker.run()
    return 0
