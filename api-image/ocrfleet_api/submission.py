"""Accepting documents: the API's side of :class:`ocrfleet.intake.Intake`.

Runs once everything about a request has been checked: the options (:func:`check_options`,
form fields by :func:`options_from_form`) and each document's bytes. :func:`accept_documents` hands the
staged documents to the shared intake (commit, then answer from the cache or record and
enqueue, the request whole or not at all) and answers each with its :class:`DocumentAccepted`.
A document's policy is the caller's floor (:attr:`Principal.mask`) plus the fields it asks for.
"""

from __future__ import annotations

import re

from ocrfleet.intake import Intake, NotQueued
from ocrfleet.keys import PRIORITIES
from ocrfleet.masking import MaskPolicy
from ocrfleet.results import DOCUMENT_TYPES
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


def accept_documents(intake: Intake, tenant: str, documents: list[ReceivedDocument], options: SubmitOptions, *,
                     floor: MaskPolicy, public_url: str, batch: str = "") -> list[DocumentAccepted]:
    """Commit, record and enqueue (or answer from the cache) every document; blocking I/O.

    ``batch``: the id of the API batch the documents are submitted in. A queue that refuses
    them is a 503: nothing of the request was queued.
    """
    assert all(d.info is not None for d in documents), "a document is accepted once it is complete"
    incoming = [intake.commit(d.staged, filename=d.filename, content_type=d.info.content_type) for d in documents]
    try:
        accepted = intake.accept(tenant, incoming, document_type=options.document_type, priority=options.priority,
                                 policy=floor | MaskPolicy.from_names(options.mask_fields), batch=batch)
    except NotQueued as exc:
        raise unavailable(str(exc)) from exc
    return [DocumentAccepted(document_id=a.document_id, status=a.status,
                             status_url=f"{public_url}/v1/documents/{a.document_id}", sha256=a.blob.sha256,
                             size_bytes=a.blob.size, content_type=d.info.content_type, pages=d.info.pages,
                             filename=d.filename, cached=a.cached)
            for a, d in zip(accepted, documents, strict=True)]
