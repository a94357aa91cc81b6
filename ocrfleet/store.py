"""The results store (SQLAlchemy): PostgreSQL in a cluster, SQLite as the embedded default.

Two tables: ``documents`` (one row per submitted document, with its content hash and state)
and ``pages`` (one row per document page, keyed by ``(document_id, page)`` so a retry
overwrites instead of duplicating). A document seen before by the same tenant is found by
``(tenant, sha256)`` and answered without inference.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    create_engine,
    delete,
    event,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from ocrfleet.results import DocumentError, DocumentResult, PageResult


class Base(DeclarativeBase):
    """Declarative base shared by every ocrfleet table (the API adds its tenant tables here)."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class DocumentRow(Base):
    __tablename__ = "documents"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128))
    sha256: Mapped[str] = mapped_column(String(64))
    job: Mapped[str | None] = mapped_column(String(256), default=None)
    filename: Mapped[str | None] = mapped_column(String(512), default=None)
    content_type: Mapped[str | None] = mapped_column(String(64), default=None)
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)
    document_type: Mapped[str | None] = mapped_column(String(32), default=None)
    requested_type: Mapped[str] = mapped_column(String(32), default="auto")
    mask_fields: Mapped[list] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    page_count: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cached_from: Mapped[str | None] = mapped_column(String(64), default=None)
    processing_ms: Mapped[float | None] = mapped_column(Float, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), default=None)

    __table_args__ = (
        Index("ix_documents_tenant_sha256", "tenant", "sha256"),
        Index("ix_documents_job", "job"),
        Index("ix_documents_tenant_created", "tenant", "created_at"),
    )


class PageRow(Base):
    __tablename__ = "pages"

    document_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True
    )
    page: Mapped[int] = mapped_column(Integer, primary_key=True)
    document_type: Mapped[str] = mapped_column(String(32))
    result: Mapped[str] = mapped_column(Text)
    """The page's :class:`~ocrfleet.results.PageResult` as JSON (masked per the document's policy)."""


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL and foreign keys so several processes can share it."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn, _record):  # pragma: no cover - trivial
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


class ResultStore:
    """Documents and their page results. The engine is created by the caller and passed in."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)

    def create_schema(self) -> None:
        Base.metadata.create_all(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions.begin() as s:
            yield s

    # -- writes ------------------------------------------------------------------------------

    def add_document(self, row: DocumentRow) -> None:
        """Record a submitted document (status ``queued``); a second add of the same id is a no-op."""
        with self.session() as s:
            if s.get(DocumentRow, row.id) is None:
                s.add(row)

    def mark_processing(self, document_id: str) -> None:
        with self.session() as s:
            doc = s.get(DocumentRow, document_id)
            if doc is not None and doc.status not in ("succeeded", "failed"):
                doc.status = "processing"
                doc.attempts = (doc.attempts or 0) + 1

    def save_result(self, document_id: str, pages: list[PageResult], *, document_type: str,
                    processing_ms: float | None = None, cached_from: str | None = None) -> None:
        """Store every page of a document and mark it succeeded, in one transaction.

        Idempotent: a retry replaces the earlier pages, so each page has exactly one row.
        """
        with self.session() as s:
            doc = s.get(DocumentRow, document_id)
            if doc is None:
                raise KeyError(f"unknown document {document_id!r}")
            s.execute(delete(PageRow).where(PageRow.document_id == document_id))
            for p in pages:
                s.add(PageRow(document_id=document_id, page=p.page, document_type=p.document_type,
                              result=p.model_dump_json()))
            doc.status = "succeeded"
            doc.document_type = document_type
            doc.page_count = len(pages)
            doc.error_code = doc.error_message = None
            doc.processing_ms = processing_ms
            doc.cached_from = cached_from
            doc.finished_at = utcnow()

    def mark_failed(self, document_id: str, error: DocumentError) -> None:
        with self.session() as s:
            doc = s.get(DocumentRow, document_id)
            if doc is None:
                raise KeyError(f"unknown document {document_id!r}")
            doc.status = "failed"
            doc.error_code, doc.error_message = error.code, error.message
            doc.finished_at = utcnow()

    # -- reads -------------------------------------------------------------------------------

    def get(self, document_id: str, *, tenant: str | None = None) -> DocumentResult | None:
        """A document with its pages; with ``tenant``, only if it belongs to that tenant."""
        with self.session() as s:
            doc = s.get(DocumentRow, document_id)
            if doc is None or (tenant is not None and doc.tenant != tenant):
                return None
            return self._to_result(s, doc)

    def find_by_hash(self, tenant: str, sha256: str) -> DocumentResult | None:
        """The newest succeeded document of ``tenant`` with this content hash."""
        with self.session() as s:
            doc = s.scalars(
                select(DocumentRow)
                .where(DocumentRow.tenant == tenant, DocumentRow.sha256 == sha256,
                       DocumentRow.status == "succeeded")
                .order_by(DocumentRow.finished_at.desc())
                .limit(1)
            ).first()
            return None if doc is None else self._to_result(s, doc)

    def job_documents(self, job: str, *, tenant: str, limit: int, after: str = ""
                      ) -> list[tuple[DocumentResult, list[str]]]:
        """One page of an OcrJob's documents in id order (ids after ``after``), each with its mask fields."""
        with self.session() as s:
            docs = s.scalars(
                select(DocumentRow)
                .where(DocumentRow.job == job, DocumentRow.tenant == tenant, DocumentRow.id > after)
                .order_by(DocumentRow.id)
                .limit(limit)
            ).all()
            return [(self._to_result(s, d), list(d.mask_fields or [])) for d in docs]

    def pages(self, document_id: str) -> list[PageResult]:
        with self.session() as s:
            rows = s.scalars(select(PageRow).where(PageRow.document_id == document_id).order_by(PageRow.page))
            return [PageResult.model_validate(json.loads(r.result)) for r in rows]

    @staticmethod
    def _to_result(s: Session, doc: DocumentRow) -> DocumentResult:
        rows = s.scalars(select(PageRow).where(PageRow.document_id == doc.id).order_by(PageRow.page))
        return DocumentResult(
            document_id=doc.id,
            tenant=doc.tenant,
            status=doc.status,  # type: ignore[arg-type]
            sha256=doc.sha256,
            job=doc.job,
            filename=doc.filename,
            document_type=doc.document_type,
            pages=[PageResult.model_validate(json.loads(r.result)) for r in rows],
            error=DocumentError(code=doc.error_code, message=doc.error_message or "") if doc.error_code else None,
            cached=doc.cached_from is not None,
            processing_ms=doc.processing_ms,
        )
