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

    text: str = Field(description="The line's text as read (masked spans replaced by *).",
                      examples=["公民身份号码 110105199003070012"])
    confidence: float = Field(description="The recogniser's confidence, 0 to 1.", examples=[0.987])
    box: list[tuple[float, float]] = Field(
        default_factory=list, description="The line's four corners (x, y) in page pixels, clockwise from top left.",
        examples=[[[112.0, 640.0], [980.0, 640.0], [980.0, 690.0], [112.0, 690.0]]])


class ExtractedField(BaseModel):
    """A typed field pulled out of the page (an ID number, a statement period, ...)."""

    name: str = Field(description="The field's name (id_number, name, birth_date, account_number, ...).",
                      examples=["id_number"])
    value: str | None = Field(description="Its value, normalised; masked fields keep only the characters the "
                              "masking rule shows. Null when the field was looked for and not found.",
                              examples=["110***********12"])
    confidence: float = Field(0.0, description="Confidence of the lines it was read from, 0 to 1.", examples=[0.97])
    valid: bool | None = Field(None, description="Whether the field passed its rule (a check digit, a date); null "
                               "when there is no rule; false with the reason in note.", examples=[True])
    masked: bool = Field(False, description="True when the value is masked.", examples=[True])
    note: str | None = Field(None, description="Why a field is invalid or missing.",
                             examples=["check digit mismatch"])


class Check(BaseModel):
    """A consistency check over the page (check digit, running balance, ...)."""

    name: str = Field(description="What was checked.", examples=["running_balance"])
    passed: bool = Field(description="Whether it held.", examples=[True])
    detail: str = Field("", description="What did not add up, when it failed.",
                        examples=["row 4: 1,200.00 + 35.50 != 1,245.50"])


class PageResult(BaseModel):
    """One page: its size and orientation, its text lines, typed fields, table rows and checks."""

    page: int = Field(description="The page number, from 1.", examples=[1])
    width: int = Field(description="Page width in pixels, as read.", examples=[1240])
    height: int = Field(description="Page height in pixels, as read.", examples=[1754])
    rotation: int = Field(0, description="Degrees the page was turned clockwise to read it upright (0, 90, 180, "
                          "270).", examples=[0])
    document_type: str = Field("generic", description="What the page was read as: id_card, bank_statement or "
                               "generic.", examples=["id_card"])
    lines: list[TextLine] = Field(default_factory=list, description="Every recognised line, top to bottom.")
    fields: list[ExtractedField] = Field(default_factory=list, description="The typed fields of its document "
                                         "type.")
    rows: list[dict[str, Any]] = Field(default_factory=list, description="Table rows, e.g. a bank statement's "
                                       "transactions (date, description, amount, balance).",
                                       examples=[[{"date": "2025-01-03", "description": "工资", "amount": "8500.00",
                                                   "balance": "12034.50"}]])
    checks: list[Check] = Field(default_factory=list, description="Consistency checks over the page.")


class DocumentError(BaseModel):
    """Why a document failed."""

    code: str = Field(description="A stable code: invalid_document, document_too_large, unsupported_type, "
                      "source_refused, ...", examples=["invalid_document"])
    message: str = Field(description="What went wrong, for a person.",
                         examples=["page 2 could not be decoded as an image"])


class DocumentResult(BaseModel):
    """A document's state and, once processed, its pages."""

    document_id: str = Field(description="The document's id, as the submission answered it.",
                             examples=["3f2b9c1e8d7a4b6c9e0f1a2b3c4d5e6f"])
    tenant: str = Field(description="The tenant the document belongs to.", examples=["acme-loans"])
    status: DocumentStatus = Field(description="queued, processing, succeeded or failed.", examples=["succeeded"])
    sha256: str = Field(description="SHA-256 of the document's bytes, hex.",
                        examples=["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"])
    job: str | None = Field(None, description="The OcrJob (namespace.name) the document belongs to; for a document "
                            "of an API batch or a CLI run, that batch's or run's id.", examples=["loans.march"])
    """One field on the wire for an OcrJob, a batch or a CLI run (see :attr:`DocumentRow.job`)."""
    filename: str | None = Field(None, description="The name it was uploaded or listed under.",
                                 examples=["id-front.jpg"])
    document_type: str | None = Field(None, description="What the document was read as (the requested type, or "
                                      "the detected one for auto).", examples=["id_card"])
    pages: list[PageResult] = Field(default_factory=list, description="The pages, once processed.")
    error: DocumentError | None = Field(None, description="Why it failed, when status is failed.")
    cached: bool = Field(False, description="True when the result was answered from an earlier identical "
                         "document.", examples=[False])
    processing_ms: float | None = Field(None, description="Milliseconds from a worker taking it to its result "
                                        "being stored.", examples=[812.4])
    model: str | None = Field(None, description="The model version that read it, once succeeded (for a cached "
                              "answer, the version that read the earlier document).", examples=["ppocr-v4"])
