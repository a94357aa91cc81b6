"""A job's documents into the queue: each enqueued exactly once, each counted once.

Used by the operator (an OcrJob's URL list, straight from its spec) and by the worker that
takes a job's listing task (its volume or S3 source, listed where the documents are). Both
build the same tasks with the same ids, so whoever feeds a job, however often it is retried
or restarted, a document enters the queue once (the job's dedupe set) and the job's total
is the number of documents its source names.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import replace

from ocrfleet import keys
from ocrfleet.progress import JobProgress
from ocrfleet.queue import Task, WorkQueue
from ocrfleet.sources import filename_of


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


def enqueue_job(queue: WorkQueue, progress: JobProgress, job: str, tasks: list[Task]) -> int:
    """Set the job's total and enqueue the tasks not enqueued yet; returns how many went in now."""
    dedupe = keys.job_enqueued(queue.cluster, job)
    queue.ensure_groups()
    progress.set_total(job, len(tasks))
    seen = {m.decode() if isinstance(m, bytes) else m for m in queue.redis.smembers(dedupe)}
    added = 0
    for task in tasks:
        if task.document_id not in seen and queue.enqueue(task, dedupe_set=dedupe):
            progress.record_enqueued(job)
            added += 1
    return added


def enqueue_listing(queue: WorkQueue, listing: Task) -> bool:
    """Hand a job's volume or S3 source to a worker to list (once per job)."""
    queue.ensure_groups()
    return queue.enqueue(listing, dedupe_set=keys.job_enqueued(queue.cluster, listing.job)) is not None
