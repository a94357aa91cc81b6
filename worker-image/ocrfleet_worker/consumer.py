"""The worker's consumer loop: take a document from the queue, store its result, then ack.

Every outcome is stored before its message is acknowledged, so a worker that dies at any
point loses nothing — its message stays pending and a live worker reclaims it (XAUTOCLAIM)
once it has idled past ``claim_idle_ms``. Storing is idempotent (a page has one row however
often it is written; counters move once per document), so a redelivered document whose
result was already stored is simply acknowledged.

Outcomes by error kind (:mod:`ocrfleet.errors`):

* the document is unusable (:class:`~ocrfleet.errors.PermanentError`): it fails at once
  with the error's code and message, and the worker moves on;
* anything else that goes wrong while processing it (:class:`~ocrfleet.errors.TemporaryError`,
  a database hiccup, an unexpected exception): after a backoff it is re-enqueued with the next
  attempt number, and after ``max_attempts`` it fails and goes to the dead-letter stream with
  its last error;
* Redis itself unreachable: nothing can be acked or re-enqueued, so the loop backs off and
  tries again; the message it held is reclaimed when Redis is back.

A document whose content this tenant already had processed (same SHA-256, same masking)
is answered from that result without inference. :meth:`Worker.stop` (SIGTERM) lets the
current document finish and then ends the loop.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from dataclasses import dataclass, replace

import redis
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from ocrfleet import intake
from ocrfleet.blobs import BlobStore
from ocrfleet.errors import PermanentError
from ocrfleet.progress import JobProgress
from ocrfleet.queue import Delivery, Task, WorkQueue
from ocrfleet.results import DocumentError, PageResult
from ocrfleet.sources import SourceAccess, list_source
from ocrfleet.sources import fetch as fetch_source
from ocrfleet.store import DocumentRow, ResultStore
from ocrfleet_worker.drain import DrainFiles
from ocrfleet_worker.masking import MaskPolicy, mask_page
from ocrfleet_worker.pipeline import DocumentPipeline

log = logging.getLogger("ocrfleet.worker")

QUEUE_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)
"""Redis is away: the loop backs off; held messages come back by reclaim."""


@dataclass(frozen=True)
class Pacing:
    """How the loop waits: for work, between reclaims, and after errors."""

    block_ms: int = 1000
    reclaim_interval_s: float = 5.0
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0

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
        """Process one delivery to a stored outcome, then ack (or re-enqueue) it."""
        task = delivery.task
        if task.kind == "listing":
            self._handle_listing(delivery)
            return
        try:
            pages = self._process(task)
        except PermanentError as exc:
            log.info("document %s failed: %s: %s", task.document_id, exc.code, exc)
            self._fail(task, DocumentError(code=exc.code, message=str(exc)))
            self.queue.ack(delivery)
            return
        except QUEUE_ERRORS:
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
        except QUEUE_ERRORS:
            raise
        except Exception as exc:
            self._retry(delivery, exc)
            return
        else:
            log.info("job %s: listed %d documents, %d enqueued now", listing.job, len(refs), added)
        self.queue.ack(delivery)

    def _process(self, task: Task) -> int:
        """Store the document's result; returns its page count."""
        with self.store.session() as s:
            row = s.get(DocumentRow, task.document_id)
            if row is not None and row.status == "succeeded":  # an earlier delivery died before its ack
                return row.page_count
        data = None
        if not task.blob:  # a job's document: fetched here, under the pool's source rules
            data = fetch_source(task.source, self.sources)
            blob = self.blobs.put_bytes(data)
            task = replace(task, blob=blob.ref, sha256=blob.sha256)
        self.store.add_document(_document_row(task))
        cached = self._cached_pages(task)
        if cached is not None:
            source, document_type, pages = cached
            self.store.save_result(task.document_id, pages, document_type=document_type, processing_ms=0.0,
                                   cached_from=source)
            self.stats.cached += 1
            self.stats.succeeded += 1
            return len(pages)
        self.store.mark_processing(task.document_id)
        if data is None:
            data = self.blobs.read(task.blob)
        done = self.pipeline.process(data, requested_type=task.document_type,
                                     mask=MaskPolicy.from_names(task.mask_fields))
        self.store.save_result(task.document_id, done.pages, document_type=done.document_type,
                               processing_ms=round(done.processing_ms, 1))
        self.stats.succeeded += 1
        self.stats.pages += len(done.pages)
        return len(done.pages)

    def _cached_pages(self, task: Task) -> tuple[str, str, list[PageResult]] | None:
        """Pages of this tenant's newest succeeded document with the same content.

        Usable when that document was masked the same way, or not at all (its pages are then
        masked by this task's policy); a result masked more than this task asks is not.
        """
        wanted = sorted(task.mask_fields)
        with self.store.session() as s:
            rows = s.scalars(
                select(DocumentRow)
                .where(DocumentRow.tenant == task.tenant, DocumentRow.sha256 == task.sha256,
                       DocumentRow.status == "succeeded", DocumentRow.id != task.document_id,
                       DocumentRow.cached_from.is_(None))
                .order_by(DocumentRow.finished_at.desc())
                .limit(5)
            ).all()
            candidates = [(r.id, r.document_type or "generic", sorted(r.mask_fields or [])) for r in rows]
        for source, document_type, masked in candidates:
            if masked == wanted or not masked:
                policy = MaskPolicy.from_names(task.mask_fields)
                pages = [mask_page(p, policy) for p in self.store.pages(source)]
                return source, document_type, pages
        return None

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

    def _give_up(self, delivery: Delivery, error: str) -> None:
        """The last attempt failed: store the failure, then dead-letter (in that order)."""
        if delivery.task.kind == "listing":
            self.progress.record_source_error(delivery.task.job, f"listing the source {error}")
        else:
            self._fail(delivery.task, DocumentError(code="attempts_exhausted", message=error))
        self.queue.dead_letter(delivery, error)
        self.stats.dead_lettered += 1

    def _fail(self, task: Task, error: DocumentError) -> None:
        self.store.add_document(_document_row(task))
        self.store.mark_failed(task.document_id, error)
        self.stats.failed += 1
        if task.job:
            self.progress.record_outcome(task.job, task.document_id, succeeded=False, now=time.time())


def _document_row(task: Task) -> DocumentRow:
    return DocumentRow(id=task.document_id, tenant=task.tenant, sha256=task.sha256, job=task.job or None,
                       filename=task.filename or None, requested_type=task.document_type,
                       mask_fields=list(task.mask_fields), status="queued")
