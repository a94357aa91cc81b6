"""What an OcrJob's source turns into on the queue: references, never bytes (pure).

* ``source.urls``: one document task per URL, straight from the spec;
* ``source.volume`` and ``source.s3``: one *listing* task carrying the source; a worker of
  the pool lists it where the documents are (the pool's volume, its object store) and
  enqueues the documents (:func:`ocrfleet.intake.enqueue_job`).

The operator never reads a document, a volume or a bucket: workers fetch each source with
the pool's own rules and credentials (:mod:`ocrfleet.sources`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace

from ocrfleet.intake import document_tasks, job_namespace
from ocrfleet.queue import Task


def job_key(meta: Mapping) -> str:
    """The job's name in Redis keys and queue messages (unique per namespace)."""
    return f"{meta['namespace']}.{meta['name']}"


def template(job: Mapping) -> Task:
    """The task every document of the job starts from (its id is the job's id namespace)."""
    meta, spec = job["metadata"], job["spec"]
    return Task(
        document_id=str(job_namespace(meta["uid"])), tenant=meta["namespace"], job=job_key(meta),
        namespace=meta["namespace"], document_type=spec.get("documentType", "auto"),
        mask_fields=tuple(spec.get("maskFields", [])), priority=spec.get("priority", "normal"),
        max_attempts=spec.get("maxAttemptsPerDocument", 0),
    )


def url_documents(job: Mapping) -> list[Task] | None:
    """The job's document tasks when its source is a URL list; None when a worker must list it."""
    urls = job["spec"]["source"].get("urls")
    return document_tasks(template(job), list(urls)) if urls is not None else None


def listing(job: Mapping) -> Task:
    """The one task that hands a volume or S3 source to a worker."""
    source = {k: v for k, v in job["spec"]["source"].items() if k in ("volume", "s3")}
    return replace(template(job), kind="listing", source=json.dumps(source, sort_keys=True))
