"""The worker's consumer loop: take a document from the queue, store its result, then ack.

Every outcome is stored before its message is acknowledged, so a worker that dies at any
point loses nothing — its message stays pending and a live worker reclaims it (XAUTOCLAIM)
once it has idled past ``claim_idle_ms``. Storing is idempotent (a page has one row however
often it is written; counters move once per document), so a redelivered document whose
result was already stored is simply acknowledged.

Outcomes by error kind (:mod:`ocrfleet.errors`):

* the document is unusable (:class:`~ocrfleet.errors.PermanentError`): it fails at once
  with the error's code and message, and the worker moves on;
* a dependency is away (:data:`OUTAGES`: Redis, the database, Triton or the object store
  unreachable): the document is not at fault, so the worker holds it, backs off and tries it
  again, spending none of its attempts, for as long as the outage lasts;
* anything else that goes wrong while processing it (another
  :class:`~ocrfleet.errors.TemporaryError`, an unexpected exception): after a backoff it is
  re-enqueued with the next attempt number, and after ``max_attempts`` it fails and goes to
  the dead-letter stream with its last error.

While a worker holds a message it renews its claim every ``claim_idle_ms / 3`` (a heartbeat,
:meth:`WorkQueue.extend`), so a slow document or a long wait is never reclaimed from a live
worker; only a worker that died stops renewing.

A document whose content this tenant already had processed is answered from that result
without inference (:mod:`ocrfleet.reuse`). :meth:`Worker.stop` (SIGTERM) lets the
current document finish and then ends the loop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import redis
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from ocrfleet import intake
from ocrfleet.blobs import BlobStore
from ocrfleet.errors import DependencyUnavailable, PermanentError
from ocrfleet.lifecycle import DocumentStatus
from ocrfleet.masking import MaskPolicy
from ocrfleet.progress import JobProgress
from ocrfleet.queue import Delivery, Task, WorkQueue
from ocrfleet.results import DocumentError
from ocrfleet.reuse import find_reusable
from ocrfleet.sources import SourceAccess, list_source
from ocrfleet.sources import fetch as fetch_source
from ocrfleet.store import DocumentRow, ResultStore
from ocrfleet_worker import metrics
from ocrfleet_worker.drain import DrainFiles
from ocrfleet_worker.pipeline import DocumentPipeline

log = logging.getLogger("ocrfleet.worker")

QUEUE_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)
"""Redis is away: the loop backs off; held messages come back by reclaim."""

OUTAGES = (*QUEUE_ERRORS, DependencyUnavailable, OperationalError, InterfaceError)
"""A dependency is away (Redis, the database, Triton, the object store): wait, do not spend attempts."""


@dataclass(frozen=True)
class Pacing:
    """How the loop waits: for work, between reclaims, and after errors."""

    block_ms: int = 1000
    reclaim_interval_s: float = 5.0
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    outage_max_s: float = 10.0
    """The longest wait between two tries of a document held through an outage."""

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter for the ``attempt``-th consecutive failure."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** max(attempt - 1, 0))
        return ceiling * random.uniform(0.5, 1.0)


@dataclass
class WorkerStats:
    succeeded: int = 0
    failed: int = 0
    cached: int = 0
    retried: int = 0
    dead_lettered: int = 0
    pages: int = 0
    outage_waits: int = 0


class Worker:
    """One consumer of a pool's queue. Clients and the pipeline are created by the caller."""

    def __init__(self, *, queue: WorkQueue, store: ResultStore, progress: JobProgress,
                 blobs: BlobStore, pipeline: DocumentPipeline, consumer: str,
                 pacing: Pacing | None = None, drain: DrainFiles | None = None,
                 sources: SourceAccess | None = None) -> None:
        self.queue = queue
        self.store = store
        self.progress = progress
        self.blobs = blobs
        self.pipeline = pipeline
        self.consumer = consumer
        self.pacing = pacing or Pacing()
        self.drain = drain or DrainFiles()
        self.sources = sources or SourceAccess(max_bytes=pipeline.limits.max_bytes)
        self.stats = WorkerStats()
        self._stopping = threading.Event()
        self._next_reclaim = 0.0

    # -- the loop ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Take no new work; the document in hand is finished first (SIGTERM)."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run(self, *, until_idle: bool = False) -> WorkerStats:
        """Consume until :meth:`stop`; with ``until_idle``, also until the queue is empty."""
        failures = 0
        ready = False
        while not self.stopping:
            if self.drain.draining():
                log.info("drain file %s present: taking no new work", self.drain.drain_file)
                self.stop()
                break
            try:
                if not ready:
                    self.queue.ensure_groups()
                    ready = True
                handled = self.poll()
                failures = 0
                if until_idle and handled == 0 and self.queue.depth().total == 0:
                    break
            except QUEUE_ERRORS as exc:
                failures += 1
                delay = self.pacing.backoff(failures)
                log.warning("queue unavailable (%s); retrying in %.1f s", exc, delay)
                self._stopping.wait(delay)
            except SQLAlchemyError as exc:
                failures += 1
                delay = self.pacing.backoff(failures)
                log.warning("results store unavailable (%s); retrying in %.1f s", exc, delay)
                self._stopping.wait(delay)
        log.info("worker %s stopped: %s", self.consumer, self.stats)
        return self.stats

    def poll(self) -> int:
        """Reclaim what dead workers left (when due), then read and handle new work."""
        handled = 0
        now = time.monotonic()
        if now >= self._next_reclaim:
            self._next_reclaim = now + self.pacing.reclaim_interval_s
            handled += self.reclaim()
        if self.stopping:
            return handled
        for delivery in self.queue.read(self.consumer, count=1, block_ms=self.pacing.block_ms):
            with self.drain.busy():
                self.handle(delivery)
            handled += 1
        return handled

    def reclaim(self) -> int:
        """Take over entries idle past the claim timeout, one at a time; returns how many."""
        handled = 0
        while not self.stopping:
            fresh, exhausted = self.queue.reclaim(self.consumer, count=1)
            for delivery in exhausted:
                self._give_up(delivery, f"delivered {delivery.deliveries} times to workers that stopped "
                                        "before finishing it (does this document crash the worker?)")
            for delivery in fresh:
                log.info("reclaimed %s (delivery %d)", delivery.task.document_id, delivery.deliveries)
                with self.drain.busy():
                    self.handle(delivery)
            if not fresh and not exhausted:
                break
            handled += len(fresh) + len(exhausted)
        return handled

    # -- one document ------------------------------------------------------------------------

    def handle(self, delivery: Delivery) -> None:
        """Bring one delivery to a stored outcome and ack (or re-enqueue) it, holding it through
        dependency outages and renewing its claim all along."""
        outages = 0
        if delivery.task.kind == "document" and delivery.task.attempt <= 1 and delivery.deliveries <= 1:
            metrics.queue_wait(delivery.task.enqueued_at)  # to its first start, not a retry's
        with self._heartbeat(delivery):
            while True:
                try:
                    self._settle(delivery)
                    return
                except OUTAGES as exc:
                    outages += 1
                    self.stats.outage_waits += 1
                    if self.stopping:
                        with contextlib.suppress(*OUTAGES):
                            self.queue.release(delivery)  # unspent; else reclaimed once Redis is back
                        return
                    delay = min(self.pacing.backoff(outages), self.pacing.outage_max_s)
                    log.warning("document %s waits for a dependency (%s: %s); trying it again in %.1f s, "
                                "no attempt spent", delivery.task.document_id, type(exc).__name__, exc, delay)
                    self._stopping.wait(delay)

    @contextlib.contextmanager
    def _heartbeat(self, delivery: Delivery) -> Iterator[None]:
        """Renew the claim on ``delivery`` every third of the claim timeout until the block ends."""
        done = threading.Event()
        interval = self.queue.claim_idle_ms / 3000

        def beat() -> None:
            while not done.wait(interval):
                try:
                    if not self.queue.extend(delivery, self.consumer):
                        log.warning("document %s was reclaimed from this worker", delivery.task.document_id)
                except QUEUE_ERRORS:
                    pass  # Redis is away: nobody can reclaim it either

        thread = threading.Thread(target=beat, name=f"heartbeat-{delivery.message_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def _settle(self, delivery: Delivery) -> None:
        task = delivery.task
        if task.kind == "listing":
            self._handle_listing(delivery)
            return
        try:
            pages = self._process(task, attempt=delivery.attempt)
        except PermanentError as exc:
            log.info("document %s failed: %s: %s", task.document_id, exc.code, exc)
            self._fail(task, DocumentError(code=exc.code, message=str(exc)))
            self.queue.ack(delivery)
            return
        except OUTAGES:
            raise
        except Exception as exc:  # temporary, or a bug that may be specific to this document
            self._retry(delivery, exc)
            return
        if pages is not None and task.job:
            self.progress.record_outcome(task.job, task.document_id, succeeded=True, pages=pages,
                                         now=time.time())
        self.queue.ack(delivery)

    def _handle_listing(self, delivery: Delivery) -> None:
        """List a job's volume or S3 source and enqueue its documents (once each, counted once).

        A source that cannot be listed fails the job with the reason (its status says what to
        fix); a temporary error is retried like a document's.
        """
        listing = delivery.task
        try:
            refs = list_source(json.loads(listing.source), self.sources)
            added = intake.enqueue_job(self.queue, self.progress, listing.job,
                                       intake.document_tasks(listing, refs))
        except PermanentError as exc:
            log.info("job %s: its source cannot be listed: %s", listing.job, exc)
            self.progress.record_source_error(listing.job, str(exc))
        except OUTAGES:
            raise
        except Exception as exc:
            self._retry(delivery, exc)
            return
        else:
            log.info("job %s: listed %d documents, %d enqueued now", listing.job, len(refs), added)
        self.queue.ack(delivery)

    def _process(self, task: Task, *, attempt: int) -> int:
        """Store the document's result (``attempt``: which try this is); returns its page count."""
        stored = self.store.succeeded_page_count(task.document_id)
        if stored is not None:  # an earlier delivery died before its ack
            return stored
        data = None
        if not task.blob:  # a job's document: fetched here, under the pool's source rules
            data = fetch_source(task.source, self.sources)
            blob = self.blobs.put_bytes(data)
            task = replace(task, blob=blob.ref, sha256=blob.sha256)
        self.store.add_document(_document_row(task))
        policy = MaskPolicy.from_names(task.mask_fields)
        model = getattr(self.pipeline.engine, "model", None)  # the version this worker reads with
        reused = find_reusable(self.store, task.tenant, task.sha256, policy, requested_type=task.document_type,
                               exclude=task.document_id, model=model)
        if reused is not None:
            self.store.save_result(task.document_id, reused.pages, document_type=reused.document_type,
                                   processing_ms=0.0, cached_from=reused.source, model=reused.model)
            self.stats.cached += 1
            self.stats.succeeded += 1
            metrics.document_finished(DocumentStatus.SUCCEEDED)
            return len(reused.pages)
        self.store.mark_processing(task.document_id, attempt=attempt)
        if data is None:
            data = self.blobs.read(task.blob)
        done = self.pipeline.process(data, requested_type=task.document_type, mask=policy)
        self.store.save_result(task.document_id, done.pages, document_type=done.document_type,
                               processing_ms=round(done.processing_ms, 1), model=model)
        self.stats.succeeded += 1
        self.stats.pages += len(done.pages)
        metrics.document_finished(DocumentStatus.SUCCEEDED)
        metrics.observe_document(len(done.pages), done.processing_ms / 1000, done.stage_seconds)
        return len(done.pages)

    def _retry(self, delivery: Delivery, exc: Exception) -> None:
        task = delivery.task
        error = f"{type(exc).__name__}: {exc}"
        if task.attempt >= self.queue.attempts_of(task):
            self._give_up(delivery, f"failed {task.attempt} times; last error: {error}")
            return
        delay = self.pacing.backoff(task.attempt)
        log.warning("document %s attempt %d failed (%s); retrying in %.1f s", task.document_id,
                    task.attempt, error, delay)
        self._stopping.wait(delay)  # on SIGTERM, re-enqueue at once instead of waiting
        self.queue.retry(delivery, error)
        self.stats.retried += 1
        metrics.RETRIES.inc()

    def _give_up(self, delivery: Delivery, error: str) -> None:
        """The last attempt failed: store the failure, then dead-letter (in that order)."""
        if delivery.task.kind == "listing":
            self.progress.record_source_error(delivery.task.job, f"listing the source {error}")
        else:
            self._fail(delivery.task, DocumentError(code="attempts_exhausted", message=error))
        self.queue.dead_letter(delivery, error)
        self.stats.dead_lettered += 1
        metrics.DEAD_LETTERS.inc()

    def _fail(self, task: Task, error: DocumentError) -> None:
        self.store.add_document(_document_row(task))
        self.store.mark_failed(task.document_id, error)
        self.stats.failed += 1
        metrics.document_finished(DocumentStatus.FAILED)
        if task.job:
            self.progress.record_outcome(task.job, task.document_id, succeeded=False, now=time.time())


def _document_row(task: Task) -> DocumentRow:
    return DocumentRow(id=task.document_id, tenant=task.tenant, sha256=task.sha256, job=task.job or None,
                       filename=task.filename or None, requested_type=task.document_type,
                       mask_fields=list(task.mask_fields), status=DocumentStatus.QUEUED)
