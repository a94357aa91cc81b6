"""What an OcrJob's source turns into on the queue: references, never bytes (pure).

* ``source.urls``: one document task per URL, straight from the spec;
* ``source.volume`` and ``source.s3``: one *listing* task carrying the source; a worker of
  the pool lists it where the documents are (the pool's volume, its object store) and
  enqueues the documents (:func:`ocrfleet.intake.enqueue_job`).

The operator never reads a document, a volume or a bucket: workers fetch each source with
the pool's own rules and credentials (:mod:`ocrfleet.sources`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import replace

from ocrfleet import keys
from ocrfleet.intake import document_tasks, job_namespace, job_tenant
from ocrfleet.masking import MaskPolicy
from ocrfleet.queue import Task


def job_key(meta: Mapping) -> str:
    """The job's name in Redis keys and queue messages (:func:`ocrfleet.keys.ocrjob`)."""
    return keys.ocrjob(meta["namespace"], meta["name"])


_NOT_THE_WORK = ("suspend", "ttlSecondsAfterFinished")
"""Spec fields that change when or how long a job runs, not what it processes."""


def spec_digest(job: Mapping) -> str:
    """What the job processes, as a digest of its (CRD-defaulted) spec: the same manifest applied
    again has the same digest, whatever its uid and whenever it is suspended."""
    work = {k: v for k, v in job["spec"].items() if k not in _NOT_THE_WORK}
    return hashlib.sha256(json.dumps(work, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def template(job: Mapping, cluster: Mapping) -> Task:
    """The task every document of the job starts from (its id is the job's id namespace).

    Its masking is the pool's default plus the job's ``maskFields``. Both objects are read as
    the API server returns them, with the CRDs' defaults applied."""
    meta, spec = job["metadata"], job["spec"]
    policy = MaskPolicy.from_names(cluster["spec"]["masking"]["default"]) | MaskPolicy.from_names(
        spec["maskFields"])
    return Task(
        document_id=str(job_namespace(meta["uid"])), tenant=job_tenant(meta["namespace"]), job=job_key(meta),
        namespace=meta["namespace"], document_type=spec["documentType"],
        mask_fields=tuple(policy.names()), priority=spec["priority"],
        max_attempts=spec["maxAttemptsPerDocument"],
    )


def url_documents(job: Mapping, cluster: Mapping) -> list[Task] | None:
    """The job's document tasks when its source is a URL list; None when a worker must list it."""
    urls = job["spec"]["source"].get("urls")
    return document_tasks(template(job, cluster), list(urls)) if urls is not None else None


def listing(job: Mapping, cluster: Mapping) -> Task:
    """The one task that hands a volume or S3 source to a worker."""
    source = {k: v for k, v in job["spec"]["source"].items() if k in ("volume", "s3")}
    return replace(template(job, cluster), kind="listing", source=json.dumps(source, sort_keys=True))
