"""The result schema: what a document's OCR produces, page by page.

These models are the JSON that the API returns, the worker stores and the CLI writes as JSONL.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ocrfleet.lifecycle import DocumentStatus

DOCUMENT_TYPES = ("auto", "id_card", "bank_statement", "generic")


class TextLine(BaseModel):
    """One recognised line: text, confidence and its quadrilateral (x, y) in page pixels."""

    text: str
    confidence: float
    box: list[tuple[float, float]] = Field(default_factory=list)


class ExtractedField(BaseModel):
    """A typed field pulled out of the page (an ID number, a statement period, ...)."""

    name: str
    value: str | None
    confidence: float = 0.0
    valid: bool | None = None
    """None when there is no rule to check; False when a check failed (see ``note``)."""
    masked: bool = False
    note: str | None = None


class Check(BaseModel):
    """A consistency check over the page (check digit, running balance, ...)."""

    name: str
    passed: bool
    detail: str = ""


class PageResult(BaseModel):
    page: int
    width: int
    height: int
    rotation: int = 0
    """Degrees the page was turned to read upright (0, 90, 180, 270)."""
    document_type: str = "generic"
    lines: list[TextLine] = Field(default_factory=list)
    fields: list[ExtractedField] = Field(default_factory=list)
    rows: list[dict[str, Any]] = Field(default_factory=list)
    """Table rows, e.g. a bank statement's transactions."""
    checks: list[Check] = Field(default_factory=list)


class DocumentError(BaseModel):
    code: str
    message: str


class DocumentResult(BaseModel):
    """A document's state and, once processed, its pages."""

    document_id: str
    tenant: str
    status: DocumentStatus
    sha256: str
    job: str | None = None
    """The OcrJob (``namespace.name``) the document belongs to; for a document of an API batch or a
    CLI run, that batch's or run's id (one field on the wire, see :attr:`DocumentRow.job`)."""
    filename: str | None = None
    document_type: str | None = None
    pages: list[PageResult] = Field(default_factory=list)
    error: DocumentError | None = None
    cached: bool = False
    """True when the result was answered from an earlier identical document."""
    processing_ms: float | None = None
