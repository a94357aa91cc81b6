"""Request and response bodies of the HTTP API (the OpenAPI document is generated from these)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ocrfleet.keys import PRIORITIES
from ocrfleet.lifecycle import DocumentStatus
from ocrfleet.results import DOCUMENT_TYPES, DocumentResult

SHA256_PATTERN = r"^[0-9a-fA-F]{64}$"
_TYPE_DOC = f"one of {', '.join(DOCUMENT_TYPES)}"
_PRIORITY_DOC = f"one of {', '.join(PRIORITIES)}"


class SubmitOptions(BaseModel):
    """How to process a document; sent as form fields next to the file, or in a URL submission."""

    document_type: str = Field("auto", description=f"The document type, {_TYPE_DOC}.")
    priority: str = Field("normal", description=f"Queue priority, {_PRIORITY_DOC}.")
    mask_fields: list[str] = Field(default_factory=list,
                                   description="Extracted fields to mask (e.g. id_number); at most 32.")


class UrlSubmission(SubmitOptions):
    url: str = Field(..., max_length=2048, description="Where the API fetches the document from.")


class DocumentAccepted(BaseModel):
    document_id: str
    status: DocumentStatus
    status_url: str
    sha256: str
    size_bytes: int
    content_type: str
    pages: int | None = Field(None, description="PDF pages as far as the header shows.")
    filename: str | None = None
    cached: bool = Field(False, description="Answered from an earlier identical document of this tenant.")


class CacheCheck(SubmitOptions):
    """A content hash and the options its upload would be sent with."""

    sha256: str = Field(..., pattern=SHA256_PATTERN, description="SHA-256 of the document's bytes, hex.")


class BatchAccepted(BaseModel):
    batch_id: str
    status_url: str
    total: int
    documents: list[DocumentAccepted]


class BatchDocument(BaseModel):
    document_id: str
    status: DocumentStatus
    filename: str | None = None


class BatchStatus(BaseModel):
    batch_id: str
    total: int
    queued: int
    processing: int
    succeeded: int
    failed: int
    finished: bool
    documents: list[BatchDocument]


class TenantStats(BaseModel):
    """One tenant's numbers for one UTC day."""

    tenant: str
    day: str
    documents: int
    by_status: dict[str, int]
    by_document_type: dict[str, int]
    answered_from_cache: int
    cache_checks: int
    cache_check_hits: int
    cache_hit_rate: float | None = Field(None, description="Cache hits over cache checks plus uploads.")
    success_rate: float | None = Field(None, description="Succeeded over finished documents.")
    p95_processing_ms: float | None = None


class JobResults(BaseModel):
    """One page of an OcrJob's results."""

    job: str = Field(description="The job: namespace.name.")
    documents: list[DocumentResult]
    next: str | None = Field(None, description="Pass as `after` for the next page; null on the last page.")


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
