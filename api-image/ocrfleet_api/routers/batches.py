"""``/v1/batches``: many documents in one request, and their progress."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

from ocrfleet.lifecycle import DocumentStatus
from ocrfleet_api import metrics
from ocrfleet_api.auth import Principal
from ocrfleet_api.deps import ServicesDep, StreamingTenantDep, TenantDep
from ocrfleet_api.idempotency import IdempotencyKey
from ocrfleet_api.problems import PROBLEM, RESPONSES, Problem
from ocrfleet_api.routers.documents import UPLOAD_RESPONSES, accept_once
from ocrfleet_api.schemas import BatchAccepted, BatchDocument, BatchStatus, SubmitOptions
from ocrfleet_api.services import Services
from ocrfleet_api.submission import accept_documents, options_from_form
from ocrfleet_api.tables import BatchRow
from ocrfleet_api.uploads import ReceivedDocument, receive_form

router = APIRouter(prefix="/v1/batches", tags=["batches"], responses=RESPONSES)

_BATCH_FORM = {
    "type": "object",
    "additionalProperties": False,
    "required": ["files"],
    "properties": {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"},
                  "description": "The documents, one part each (parts named 'files')."},
        "document_type": {"type": "string", "enum": ["auto", "id_card", "bank_statement", "generic"]},
        "priority": {"type": "string", "enum": ["high", "normal", "low"]},
        "mask_fields": {"type": "string", "description": "Comma-separated field names to mask."},
    },
}
_BATCH_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": _BATCH_FORM}}}}


@router.post("", status_code=202, response_model=BatchAccepted, openapi_extra=_BATCH_BODY,
             responses=UPLOAD_RESPONSES, summary="Submit many documents at once")
async def submit_batch(
    request: Request, principal: StreamingTenantDep, services: ServicesDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Upload several documents as ``multipart/form-data`` parts named ``files``; the options apply
    to each. Every document is checked before any is kept: one bad document refuses the batch."""
    async def accept() -> BatchAccepted:
        await services.gate.admit()
        form = await receive_form(request, services.blobs, services.batch_limits, body_sha256=principal.body_sha256)
        try:
            if not form.documents:
                raise Problem(422, "no_document", "the batch carries no document; send each file in a part "
                              "named 'files' (with a filename)")
            options = options_from_form(form.fields)
            await services.gate.admit(len(form.documents))
            return await services.blocking(_accept_batch, services, principal, form.documents, options)
        finally:
            form.discard()

    return await accept_once(request, principal, services, idempotency_key, accept)


def _accept_batch(services: Services, principal: Principal, documents: list[ReceivedDocument],
                  options: SubmitOptions) -> BatchAccepted:
    tenant = principal.tenant
    batch_id = uuid.uuid4().hex
    with services.store.session() as s:
        s.add(BatchRow(id=batch_id, tenant=tenant, total=len(documents)))
    accepted = accept_documents(services.intake, tenant, documents, options, floor=principal.mask,
                                public_url=services.settings.public_url, batch=batch_id)
    metrics.count_accepted(accepted)
    return BatchAccepted(batch_id=batch_id, status_url=f"{services.settings.public_url}/v1/batches/{batch_id}",
                         total=len(accepted), documents=accepted)


@router.get("/{batch_id}", response_model=BatchStatus, summary="A batch's progress, its documents paged",
            responses={404: {**PROBLEM, "description": "No such batch for this tenant"}})
async def get_batch(
    batch_id: Annotated[str, Path(description="The id its submission answered.")],
    principal: TenantDep, services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="Documents per page.")] = 100,
    after: Annotated[str, Query(max_length=64, description="The `next` of the previous page.")] = "",
) -> BatchStatus:
    """Counts by status (queued, processing, succeeded, failed) and one page of the batch's
    documents in id order; ``next`` leads to the following page."""
    status = await services.blocking.read(_batch_status, services, principal.tenant, batch_id, limit, after)
    if status is None:
        raise Problem(404, "batch_not_found", f"no batch {batch_id!r} for this tenant")
    return status


def _batch_status(services: Services, tenant: str, batch_id: str, limit: int, after: str) -> BatchStatus | None:
    if len(batch_id) > 64:
        return None
    with services.store.session() as s:
        batch = s.get(BatchRow, batch_id)
        if batch is None or batch.tenant != tenant:
            return None
    counts = services.store.batch_counts(batch_id)
    docs = services.store.batch_documents(batch_id, limit=limit, after=after)
    done = sum(n for status, n in counts.items() if status.finished)
    return BatchStatus(
        batch_id=batch_id, total=batch.total, queued=counts.get(DocumentStatus.QUEUED, 0),
        processing=counts.get(DocumentStatus.PROCESSING, 0), succeeded=counts.get(DocumentStatus.SUCCEEDED, 0),
        failed=counts.get(DocumentStatus.FAILED, 0), finished=done >= batch.total,
        documents=[BatchDocument(document_id=i, status=st, filename=f) for i, st, f in docs],
        next=docs[-1][0] if len(docs) == limit else None,
    )
