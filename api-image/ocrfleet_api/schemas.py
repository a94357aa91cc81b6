"""Request and response bodies of the HTTP API (the OpenAPI document is generated from these)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ocrfleet.keys import PRIORITIES
from ocrfleet.lifecycle import DocumentStatus
from ocrfleet.results import DOCUMENT_TYPES, DocumentResult

SHA256_PATTERN = r"^[0-9a-fA-F]{64}$"
_TYPE_DOC = f"one of {', '.join(DOCUMENT_TYPES)}"
_PRIORITY_DOC = f"one of {', '.join(PRIORITIES)}"


_ID = "3f2b9c1e8d7a4b6c9e0f1a2b3c4d5e6f"
_SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
_STATUS_URL = f"https://ocr.example.com/v1/documents/{_ID}"


class SubmitOptions(BaseModel):
    """How to process a document; sent as form fields next to the file, or in a URL submission."""

    document_type: str = Field("auto", description=f"The document type, {_TYPE_DOC}.", examples=["id_card"])
    priority: str = Field("normal", description=f"Queue priority, {_PRIORITY_DOC}.", examples=["high"])
    mask_fields: list[str] = Field(default_factory=list, description="Extracted fields to mask (e.g. id_number), "
                                   "on top of the tenant's policy; 'all' masks every sensitive field; at most 32.",
                                   examples=[["id_number", "name"]])


class UrlSubmission(SubmitOptions):
    """A document the API fetches from a URL under one of its allowed prefixes."""

    url: str = Field(..., max_length=2048, description="Where the API fetches the document from.",
                     examples=["https://files.example.com/loans/2025-03/id-front.jpg"])


class DocumentAccepted(BaseModel):
    """A document taken in: where to read its status, and what was received."""

    document_id: str = Field(description="The document's id.", examples=[_ID])
    status: DocumentStatus = Field(description="queued, or succeeded when answered from the cache.",
                                   examples=["queued"])
    status_url: str = Field(description="Where to read its status and result (also the Location header).",
                            examples=[_STATUS_URL])
    sha256: str = Field(description="SHA-256 of the bytes received, hex.", examples=[_SHA])
    size_bytes: int = Field(description="Bytes received.", examples=[284113])
    content_type: str = Field(description="The type its magic bytes show.", examples=["image/jpeg"])
    pages: int | None = Field(None, description="PDF pages as far as the header shows.", examples=[3])
    filename: str | None = Field(None, description="The upload's filename.", examples=["id-front.jpg"])
    cached: bool = Field(False, description="Answered from an earlier identical document of this tenant.",
                         examples=[False])


class CacheCheck(SubmitOptions):
    """A content hash and the options its upload would be sent with."""

    sha256: str = Field(..., pattern=SHA256_PATTERN, description="SHA-256 of the document's bytes, hex.",
                        examples=[_SHA])


class BatchAccepted(BaseModel):
    """A batch taken in: every document of it, each with its id."""

    batch_id: str = Field(description="The batch's id.", examples=["b7e0c2d4f6a8490b8c1d2e3f4a5b6c7d"])
    status_url: str = Field(description="Where to read the batch's progress (also the Location header).",
                            examples=["https://ocr.example.com/v1/batches/b7e0c2d4f6a8490b8c1d2e3f4a5b6c7d"])
    total: int = Field(description="Documents in the batch.", examples=[12])
    documents: list[DocumentAccepted] = Field(description="Each document, in the order of its part.")


class BatchDocument(BaseModel):
    """One document of a batch, as listed in its progress."""

    document_id: str = Field(description="The document's id (read it at /v1/documents/{document_id}).",
                             examples=[_ID])
    status: DocumentStatus = Field(description="queued, processing, succeeded or failed.", examples=["succeeded"])
    filename: str | None = Field(None, description="The part's filename.", examples=["statement-p1.pdf"])


class BatchStatus(BaseModel):
    """A batch's progress: counts by status, and one page of its documents."""

    batch_id: str = Field(description="The batch's id.", examples=["b7e0c2d4f6a8490b8c1d2e3f4a5b6c7d"])
    total: int = Field(description="Documents in the batch.", examples=[12])
    queued: int = Field(description="Waiting for a worker.", examples=[3])
    processing: int = Field(description="With a worker now.", examples=[2])
    succeeded: int = Field(description="Done, with a result.", examples=[6])
    failed: int = Field(description="Done, with an error.", examples=[1])
    finished: bool = Field(description="True once every document is succeeded or failed.", examples=[False])
    documents: list[BatchDocument] = Field(description="One page of the batch's documents, in id order.")
    next: str | None = Field(None, description="Pass as `after` for the next page of documents; null on the last "
                             "page.", examples=[None])


class TenantStats(BaseModel):
    """One tenant's numbers for one UTC day."""

    tenant: str = Field(description="The tenant.", examples=["acme-loans"])
    day: str = Field(description="The UTC day, YYYY-MM-DD.", examples=["2025-03-31"])
    documents: int = Field(description="Documents submitted that day.", examples=[18250])
    by_status: dict[str, int] = Field(description="Those documents by status.",
                                      examples=[{"succeeded": 18100, "failed": 50, "queued": 100}])
    by_document_type: dict[str, int] = Field(description="Succeeded documents by the type they were read as.",
                                             examples=[{"id_card": 9000, "bank_statement": 9100}])
    answered_from_cache: int = Field(description="Uploads answered from an earlier identical document.",
                                     examples=[420])
    cache_checks: int = Field(description="check-cache calls.", examples=[5000])
    cache_check_hits: int = Field(description="check-cache calls answered with a result.", examples=[1200])
    cache_hit_rate: float | None = Field(None, description="Cache hits over cache checks plus uploads.",
                                         examples=[0.07])
    success_rate: float | None = Field(None, description="Succeeded over finished documents.", examples=[0.997])
    p95_processing_ms: float | None = Field(None, description="95th percentile of processing_ms over the day's "
                                            "succeeded, not cached documents.", examples=[1450.0])


class JobResults(BaseModel):
    """One page of an OcrJob's results."""

    job: str = Field(description="The job: namespace.name.", examples=["loans.march"])
    documents: list[DocumentResult] = Field(description="The page's documents in id order, masked.")
    next: str | None = Field(None, description="Pass as `after` for the next page; null on the last page.",
                             examples=[_ID])


class Health(BaseModel):
    """Whether this API process can serve, and each dependency's state."""

    status: str = Field(description="ok (/healthz: the process runs) or ready (/readyz: its dependencies answer).",
                        examples=["ready"])
    checks: dict[str, str] = Field(default_factory=dict, description="Each dependency /readyz asked (redis, "
                                   "database) and its state.", examples=[{"redis": "ok", "database": "ok"}])
