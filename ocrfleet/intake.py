"""Documents into the queue: the two ways in.

**Submitted documents** (the API's uploads and URL submissions, the CLI's files):
:meth:`Intake.commit` keeps each document's staged bytes, noting whether the blob store held
them before; :meth:`Intake.accept` then looks for an earlier result each may reuse
(:mod:`ocrfleet.reuse`; only for bytes held before: content nobody sent cannot have a
result) — a hit is answered at once with that result masked per the document's policy,
nothing enqueued — and records the document rows. The rows go first, so a worker never takes
a task whose document is unknown; then the tasks are enqueued together in one transaction:
a request goes in whole or not at all, so a client retrying a failed request never
duplicates part of it.

**An OcrJob's documents**: :func:`enqueue_job`, used by the operator (an OcrJob's URL list,
straight from its spec) and by the worker that takes a job's listing task (its volume or S3
source, listed where the documents are). Both build the same tasks with the same ids, so
whoever feeds a job, however often it is retried or restarted, a document enters the queue
once (the job's dedupe set) and the job's total is the number of documents its source names.
Their rows are recorded by the worker that takes each task.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, replace

from ocrfleet import keys
from ocrfleet.blobs import Blob, BlobStore, StagedBlob
from ocrfleet.errors import TemporaryError
from ocrfleet.lifecycle import DocumentStatus
from ocrfleet.masking import MaskPolicy
from ocrfleet.progress import JobProgress
from ocrfleet.queue import Task, WorkQueue
from ocrfleet.results import DocumentError
from ocrfleet.reuse import find_reusable
from ocrfleet.sources import filename_of
from ocrfleet.store import DocumentRow, ResultStore

log = logging.getLogger(__name__)

JOB_TENANT_PREFIX = "ocrjob:"


class NotQueued(TemporaryError):
    """The queue refused a request's documents: none of them went in, each is recorded failed."""

    code = "enqueue_failed"


@dataclass(frozen=True)
class Incoming:
    """A submitted document, its bytes in the blob store (:meth:`Intake.commit`)."""

    blob: Blob
    seen_before: bool
    """The store held these bytes before: an earlier result may answer the document."""
    filename: str | None = None
    content_type: str | None = None


@dataclass(frozen=True)
class Accepted:
    """A submitted document, recorded."""

    document_id: str
    blob: Blob
    cached: bool
    """Answered from an earlier identical document of the tenant; nothing was enqueued."""

    @property
    def status(self) -> DocumentStatus:
        return DocumentStatus.SUCCEEDED if self.cached else DocumentStatus.QUEUED


@dataclass(frozen=True)
class Intake:
    """Records submitted documents and enqueues them. The clients are created by the caller."""

    store: ResultStore
    blobs: BlobStore
    queue: WorkQueue
    progress: JobProgress

    def commit(self, staged: StagedBlob, *, filename: str | None = None,
               content_type: str | None = None) -> Incoming:
        """Keep a staged document's bytes; blocking I/O."""
        # Content-addressed: a blob that was not there before is content no tenant has sent,
        # so no result can exist for it and accepting it skips the cache lookup.
        seen_before = self.blobs.exists(f"sha256:{staged.sha256}")
        return Incoming(blob=staged.commit(), seen_before=seen_before, filename=filename,
                        content_type=content_type)

    def accept(self, tenant: str, documents: list[Incoming], *, document_type: str = "auto",
               priority: str = "normal", policy: MaskPolicy, batch: str = "",
               model: str | None = None) -> list[Accepted]:
        """Record and enqueue (or answer from an earlier result) every document; blocking I/O.

        ``batch`` names the API batch or CLI run the documents are counted in (its total and
        enqueued counters, :class:`~ocrfleet.progress.JobProgress`); ``model``, the version the
        pool's workers read with (an earlier result by another version answers nothing). Raises
        :class:`NotQueued` when the queue refuses the tasks.
        """
        if batch:
            self.progress.set_total(batch, len(documents))
        accepted, tasks, rows, answered = [], [], [], []
        for incoming in documents:
            blob = incoming.blob
            document_id = uuid.uuid4().hex
            reused = find_reusable(self.store, tenant, blob.sha256, policy, requested_type=document_type,
                                   model=model) if incoming.seen_before else None
            rows.append(DocumentRow(
                id=document_id, tenant=tenant, sha256=blob.sha256, job=batch or None, filename=incoming.filename,
                content_type=incoming.content_type, size_bytes=blob.size, requested_type=document_type,
                mask_fields=policy.names(), status=DocumentStatus.QUEUED))
            if reused is not None:
                answered.append((document_id, reused))
            else:
                tasks.append(Task(document_id=document_id, tenant=tenant, blob=blob.ref, sha256=blob.sha256,
                                  job=batch, filename=incoming.filename or "", document_type=document_type,
                                  mask_fields=tuple(policy.names()), priority=priority))
            accepted.append(Accepted(document_id=document_id, blob=blob, cached=reused is not None))
        self.store.add_documents(rows)  # one statement for the whole request
        for document_id, reused in answered:
            self.store.save_result(document_id, reused.pages, document_type=reused.document_type,
                                   processing_ms=0.0, cached_from=reused.source, model=reused.model)
        if tasks:
            self._enqueue(tasks)
            if batch:
                self.progress.record_enqueued(batch, len(tasks))
        return accepted

    def _enqueue(self, tasks: list[Task]) -> None:
        """Enqueue every task or none; when none went in, their documents are marked failed."""
        try:
            self.queue.enqueue_all(tasks)
        except Exception as exc:
            log.warning("enqueueing %d documents failed: %s", len(tasks), exc)
            for task in tasks:
                self.store.mark_failed(task.document_id, DocumentError(
                    code=NotQueued.code, message="the queue was unavailable; the document was not queued, "
                    "submit it again"))
            raise NotQueued("the queue is unavailable; nothing of this request was queued, retry shortly") \
                from exc


def job_tenant(namespace: str) -> str:
    """The tenant an OcrJob's documents belong to: its namespace, in a space of its own.

    ``ocrjob:<namespace>`` cannot be an API tenant's name (those have no ``:``), so an API
    tenant named like a namespace never sees, reuses or is counted with that namespace's jobs.
    API keys read a namespace's job results only when their tenant was granted it.
    """
    return f"{JOB_TENANT_PREFIX}{namespace}"


def job_namespace(job_uid: str) -> uuid.UUID:
    """The UUID namespace of a job's document ids (its Kubernetes uid)."""
    try:
        return uuid.UUID(job_uid)
    except ValueError:
        return uuid.uuid5(uuid.NAMESPACE_URL, job_uid)


def document_tasks(listing: Task, refs: list[str]) -> list[Task]:
    """One document task per source ref, in order, with ids stable across restarts.

    ``listing`` is the job's template: its ``document_id`` is the job's id namespace and its
    other fields (tenant, job, hints, attempts) are every document's.
    """
    ns = uuid.UUID(listing.document_id)
    now = time.time()
    return [replace(listing, document_id=str(uuid.uuid5(ns, f"{i}:{ref}")), source=ref, kind="document",
                    filename=filename_of(ref) or f"doc-{i}", attempt=1, enqueued_at=now)
            for i, ref in enumerate(refs)]


BATCH = 500
"""Tasks enqueued per round trip: a job of 10,000 URLs goes in as 20 bounded steps."""


def enqueue_job(queue: WorkQueue, progress: JobProgress, job: str, tasks: list[Task], *,
                batch: int = BATCH) -> int:
    """Set the job's total and enqueue the tasks not enqueued yet, ``batch`` at a time, each
    counted in the step that enqueues it (so progress shows while a big job is fed, and a feed
    killed midway never leaves a task in without its count); returns how many went in now."""
    dedupe = keys.job_enqueued(queue.cluster, job)
    queue.ensure_groups()
    progress.set_total(job, len(tasks))
    seen = {m.decode() if isinstance(m, bytes) else m for m in queue.redis.smembers(dedupe)}
    fresh = [t for t in tasks if t.document_id not in seen]
    added = 0
    for start in range(0, len(fresh), batch):
        added += queue.enqueue_new(fresh[start:start + batch], dedupe_set=dedupe,
                                   count_in=progress.enqueued_counter(job))
    return added


def enqueue_listing(queue: WorkQueue, listing: Task) -> bool:
    """Hand a job's volume or S3 source to a worker to list (once per job)."""
    queue.ensure_groups()
    return queue.enqueue(listing, dedupe_set=keys.job_enqueued(queue.cluster, listing.job)) is not None
