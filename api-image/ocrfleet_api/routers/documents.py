"""``/v1/documents``: submit one document, check the cache by hash, read a result."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, Response

from ocrfleet.masking import MaskPolicy, mask_result
from ocrfleet.results import DocumentResult
from ocrfleet.reuse import find_reusable
from ocrfleet.store import ResultStore
from ocrfleet_api import metrics
from ocrfleet_api.auth import Principal, read_body
from ocrfleet_api.deps import (
    ServicesDep,
    StreamingTenantDep,
    TenantDep,
    authenticates_itself,
    parse_json,
    tenant_with_body,
)
from ocrfleet_api.idempotency import IdempotencyKey, fingerprint
from ocrfleet_api.problems import PROBLEM, RESPONSES, Problem
from ocrfleet_api.schemas import BatchAccepted, CacheCheck, DocumentAccepted, UrlSubmission
from ocrfleet_api.services import Services
from ocrfleet_api.submission import accept_documents, check_options, options_from_form
from ocrfleet_api.uploads import fetch_document, receive_form

router = APIRouter(prefix="/v1/documents", tags=["documents"], responses=RESPONSES)

UPLOAD_RESPONSES = {
    400: {**PROBLEM, "description": "Malformed multipart body"},
    409: {**PROBLEM, "description": "A request with this Idempotency-Key is still running"},
    413: {**PROBLEM, "description": "Over a cap: bytes, pixels or pages"},
    415: {**PROBLEM, "description": "Not a supported document type (by its magic bytes)"},
}
_SUBMIT_FORM = {
    "type": "object",
    "additionalProperties": False,
    "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "The document: PDF, PNG, JPEG, TIFF, BMP, WEBP."},
        "document_type": {"type": "string", "enum": ["auto", "id_card", "bank_statement", "generic"]},
        "priority": {"type": "string", "enum": ["high", "normal", "low"]},
        "mask_fields": {"type": "string", "description": "Comma-separated field names to mask."},
    },
}
UPLOAD_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": _SUBMIT_FORM},
    "application/json": {"schema": UrlSubmission.model_json_schema(ref_template="#/components/schemas/{model}")},
}}}


@router.post("", status_code=202, response_model=DocumentAccepted, openapi_extra=UPLOAD_BODY,
             responses=UPLOAD_RESPONSES, summary="Submit one document")
async def submit_document(
    request: Request, principal: StreamingTenantDep, services: ServicesDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Upload a document as ``multipart/form-data`` (the file in a part named ``file``), or send JSON
    with a ``url`` to fetch. Answers 202 with the document id and its status URL; a document this
    tenant has processed before is answered from the cache at once."""
    async def accept() -> DocumentAccepted:
        await services.gate.admit()
        accepted = await _receive_and_accept(request, principal, services)
        metrics.count_accepted([accepted])
        return accepted

    return await accept_once(request, principal, services, idempotency_key, accept)


async def accept_once(request: Request, principal: Principal, services: Services, idempotency_key: str | None,
                      accept: Callable[[], Awaitable[DocumentAccepted | BatchAccepted]]) -> JSONResponse:
    """Run a submission at most once per idempotency key and answer 202 with its status URL.

    The same key again gets the first answer back; a submission that fails releases its key
    (so the client may retry) and counts as rejected.
    """
    tenant = principal.tenant
    this = fingerprint(request.method, request.url.path, request.headers.get("content-length"),
                       principal.body_sha256)
    if idempotency_key is not None:
        stored = await services.idempotency.claim(tenant, idempotency_key, this)
        if stored is not None:
            return JSONResponse(stored.body, status_code=stored.status,
                                headers={"Idempotent-Replayed": "true", "Location": stored.body["status_url"]})
    try:
        accepted = await accept()
    except Exception as exc:
        if idempotency_key is not None:
            await services.idempotency.release(tenant, idempotency_key)
        metrics.UPLOADS_REJECTED.labels(getattr(exc, "code", "error")).inc()
        raise
    body = accepted.model_dump(mode="json")
    if idempotency_key is not None:
        await services.idempotency.complete(tenant, idempotency_key, this, 202, body)
    return JSONResponse(body, status_code=202, headers={"Location": accepted.status_url})


async def _receive_and_accept(request: Request, principal, services: Services) -> DocumentAccepted:
    if request.headers.get("content-type", "").startswith("application/json"):
        submission = parse_json(UrlSubmission, await read_body(request, principal))
        options = check_options(submission)
        received = await fetch_document(submission.url, services.blobs, services.upload_limits,
                                        allowed_prefixes=services.settings.url_fetch_prefixes,
                                        timeout_s=services.settings.url_fetch_timeout_s)
        documents = [received]
    else:
        form = await receive_form(request, services.blobs, services.upload_limits,
                                  body_sha256=principal.body_sha256)
        documents = form.documents
        try:
            if not documents:
                raise Problem(422, "no_document", "the request carries no document; send the file in a part "
                              "named 'file' (with a filename)")
            options = options_from_form(form.fields)
        except BaseException:
            form.discard()
            raise
    try:
        [accepted] = await services.blocking(accept_documents, services.intake, principal.tenant, documents,
                                             options, floor=principal.mask, public_url=services.settings.public_url)
    finally:
        for d in documents:
            d.staged.discard()
    return accepted


@router.post("/check-cache", response_model=DocumentResult, summary="Look up a result by content hash",
             responses={404: {**PROBLEM, "description": "Not processed before: upload the document"}},
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": CacheCheck.model_json_schema()}}}})
@authenticates_itself
async def check_cache(request: Request) -> Response:
    """The result an upload of this content would be answered with at once: an earlier identical
    document of this tenant, masked per the tenant's policy plus ``mask_fields``; or 404 so the
    client uploads it. Costs 64 bytes instead of a multi-megabyte upload."""
    principal = await tenant_with_body(request)
    services: Services = request.app.state.services
    check = parse_json(CacheCheck, await request.body())
    sha256 = check.sha256.lower()
    options = check_options(check)
    policy = principal.mask | MaskPolicy.from_names(options.mask_fields)
    key = (principal.tenant, sha256, options.document_type, *policy.names())
    body = services.results.get(key)
    if body is None:
        result = await services.blocking.read(_reusable, services.store, principal.tenant, sha256, policy,
                                         options.document_type)
        if result is not None:
            body = result.model_dump_json().encode()
            services.results.put(key, body)
    services.usage.record_cache_check(principal.tenant, body is not None)
    (CACHE_HIT if body is not None else CACHE_MISS).inc()
    if body is None:
        raise Problem(404, "not_cached", "no processed document of this tenant has this SHA-256; upload it "
                      "to POST /v1/documents")
    return Response(body, media_type="application/json")


CACHE_HIT, CACHE_MISS = metrics.CACHE_CHECKS.labels("hit"), metrics.CACHE_CHECKS.labels("miss")


@router.get("/{document_id}", response_model=DocumentResult, summary="A document's status and result",
            responses={404: {**PROBLEM, "description": "No such document for this tenant"}})
async def get_document(document_id: Annotated[str, Path(description="The id its submission answered.")],
                       principal: TenantDep, services: ServicesDep) -> DocumentResult:
    """Status and, once processed, the structured result page by page, masked per the document's policy."""
    result = await services.blocking.read(_load, services.store, principal.tenant, document_id, principal.mask)
    if result is None:
        raise Problem(404, "document_not_found", f"no document {document_id!r} for this tenant")
    return result


def _reusable(store: ResultStore, tenant: str, sha256: str, policy: MaskPolicy,
              requested_type: str) -> DocumentResult | None:
    reused = find_reusable(store, tenant, sha256, policy, requested_type=requested_type)
    return reused.result if reused is not None else None


def _load(store: ResultStore, tenant: str, document_id: str, floor: MaskPolicy) -> DocumentResult | None:
    if len(document_id) > 64:
        return None
    result = store.get(document_id, tenant=tenant)
    if result is None:
        return None
    return mask_result(result, floor | MaskPolicy.from_names(store.mask_fields(document_id)))
