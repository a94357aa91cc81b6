"""Accepting documents: keep the staged blobs, answer from the cache or enqueue.

Runs once everything about a request has been checked. For each document: commit its blob,
look for an earlier identical document of the same tenant (only when the blob existed before:
content nobody sent cannot have a result) (a hit is answered at once, copying
that result, with nothing enqueued), record the document row, then enqueue its task. The row
goes first so a worker never takes a task whose document is unknown.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from ocrfleet.blobs import BlobStore
from ocrfleet.keys import PRIORITIES
from ocrfleet.progress import JobProgress
from ocrfleet.queue import Task, WorkQueue
from ocrfleet.results import DOCUMENT_TYPES, DocumentError
from ocrfleet.store import DocumentRow, ResultStore
from ocrfleet_api.problems import Problem, unavailable
from ocrfleet_api.schemas import DocumentAccepted, SubmitOptions
from ocrfleet_api.uploads import ReceivedDocument

_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


FORM_FIELDS = ("document_type", "priority", "mask_fields")


def options_from_form(fields: dict[str, str]) -> SubmitOptions:
    """Options sent as form fields; ``mask_fields`` is comma-separated. Unknown fields are refused
    (a misspelt ``mask_field`` must not silently leave an ID number unmasked)."""
    unknown = sorted(set(fields) - set(FORM_FIELDS))
    if unknown:
        raise Problem(422, "invalid_request", f"unknown form fields {unknown[:3]}; the fields are "
                      f"{', '.join(FORM_FIELDS)} and the file part(s)")
    masks = [m.strip() for m in fields.get("mask_fields", "").split(",") if m.strip()]
    return check_options(SubmitOptions(document_type=fields.get("document_type", "auto") or "auto",
                                       priority=fields.get("priority", "normal") or "normal",
                                       mask_fields=masks[:33]))


def check_options(options: SubmitOptions) -> SubmitOptions:
    if options.document_type not in DOCUMENT_TYPES:
        raise Problem(422, "invalid_request", f"document_type {options.document_type!r} is unknown; "
                      f"use one of {', '.join(DOCUMENT_TYPES)}")
    if options.priority not in PRIORITIES:
        raise Problem(422, "invalid_request", f"priority {options.priority!r} is unknown; "
                      f"use one of {', '.join(PRIORITIES)}")
    if len(options.mask_fields) > 32:
        raise Problem(422, "invalid_request", "at most 32 mask_fields")
    bad = [m for m in options.mask_fields if not _FIELD_NAME.match(m)]
    if bad:
        raise Problem(422, "invalid_request", f"mask_fields {bad[:3]} are not field names (lowercase, "
                      "digits and '_')")
    return options


@dataclass
class Intake:
    store: ResultStore
    blobs: BlobStore
    queue: WorkQueue
    progress: JobProgress
    public_url: str = ""

    def status_url(self, document_id: str) -> str:
        return f"{self.public_url}/v1/documents/{document_id}"

    def accept(self, tenant: str, documents: list[ReceivedDocument], options: SubmitOptions, *,
               job: str = "") -> list[DocumentAccepted]:
        """Commit, record and enqueue (or answer from the cache) every document; blocking I/O."""
        accepted = []
        for received in documents:
            info = received.info
            assert info is not None
            # Content-addressed: a blob that was not there before is content no tenant has sent,
            # so no result can exist for it and the cache lookup is skipped.
            seen_before = self.blobs.exists(f"sha256:{received.staged.sha256}")
            blob = received.staged.commit()
            document_id = uuid.uuid4().hex
            row = DocumentRow(id=document_id, tenant=tenant, sha256=blob.sha256, job=job or None,
                              filename=received.filename, content_type=info.content_type, size_bytes=blob.size,
                              requested_type=options.document_type, mask_fields=list(options.mask_fields),
                              status="queued")
            cached = self.store.find_by_hash(tenant, blob.sha256) if seen_before else None
            if cached is not None and options.document_type not in ("auto", cached.document_type):
                cached = None  # asked to read it as another type: process it anew
            self.store.add_document(row)
            if cached is not None:
                self.store.save_result(document_id, cached.pages, document_type=cached.document_type or "generic",
                                       processing_ms=0.0, cached_from=cached.document_id)
            else:
                task = Task(document_id=document_id, tenant=tenant, blob=blob.ref, sha256=blob.sha256, job=job,
                            filename=received.filename or "", document_type=options.document_type,
                            mask_fields=tuple(options.mask_fields), priority=options.priority)
                try:
                    self.queue.enqueue(task)
                except Exception as exc:
                    self.store.mark_failed(document_id, DocumentError(code="enqueue_failed", message=str(exc)))
                    raise unavailable("the queue (Redis) refused the document; retry shortly") from exc
            accepted.append(DocumentAccepted(
                document_id=document_id, status="succeeded" if cached else "queued",
                status_url=self.status_url(document_id), sha256=blob.sha256, size_bytes=blob.size,
                content_type=info.content_type, pages=info.pages, filename=received.filename,
                cached=cached is not None))
        return accepted
