"""The results store (SQLAlchemy): PostgreSQL in a cluster, SQLite as the embedded default.

Two tables: ``documents`` (one row per submitted document, with its content hash and state)
and ``pages`` (one row per document page, keyed by ``(document_id, page)`` so a retry
overwrites instead of duplicating). A document seen before by the same tenant is found by
``(tenant, sha256)`` and answered without inference.

Every query on these tables is a method of :class:`ResultStore`; a document's state moves only
along :data:`ocrfleet.lifecycle.MOVES`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

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
    func,
    inspect,
    or_,
    select,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from ocrfleet import models
from ocrfleet.lifecycle import DocumentStatus, can_move
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
    """The OcrJob (``namespace.name``) of the document; for an API batch's or a CLI run's document,
    the batch's or run's id. One column holds both (stored rows and the ``job`` of API answers
    carry batch ids), so an OcrJob's documents are told apart by their tenant
    (:func:`ocrfleet.intake.job_tenant`)."""
    filename: Mapped[str | None] = mapped_column(String(512), default=None)
    content_type: Mapped[str | None] = mapped_column(String(64), default=None)
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)
    document_type: Mapped[str | None] = mapped_column(String(32), default=None)
    requested_type: Mapped[str] = mapped_column(String(32), default="auto")
    mask_fields: Mapped[list] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default=DocumentStatus.QUEUED)
    error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    page_count: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    """The queue's attempt number of the latest try (:attr:`ocrfleet.queue.Delivery.attempt`)."""
    cached_from: Mapped[str | None] = mapped_column(String(64), default=None)
    model: Mapped[str | None] = mapped_column(String(64), default=None)
    """The model version that read it (:mod:`ocrfleet.models`; a cached answer carries its
    source's); null on rows stored before versions were recorded, which the default read."""
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


CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT_MS = 30_000


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL and foreign keys so several processes can share it.

    PostgreSQL connections give up connecting after ``CONNECT_TIMEOUT_S``, the server cancels a
    statement after ``STATEMENT_TIMEOUT_MS``, TCP keepalives find a vanished server, and a
    checkout waits at most ``CONNECT_TIMEOUT_S`` for a free connection: a slow or partitioned
    database becomes an error the caller handles, not a hang.
    """
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
    connect_args = {"connect_timeout": CONNECT_TIMEOUT_S, "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
                    "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10, pool_timeout=CONNECT_TIMEOUT_S,
                         connect_args=connect_args)


def _value_or_default(row: DocumentRow, column):
    """The row's value for ``column``, or the column's Python-side default where it is unset."""
    value = getattr(row, column.key)
    if value is None and column.default is not None:
        return column.default.arg(None) if column.default.is_callable else column.default.arg
    return value


def _dialect_insert(engine: Engine):
    """The INSERT construct of the engine's dialect, which has ``on_conflict_do_nothing``."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif engine.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise ValueError(f"unsupported database {engine.dialect.name!r}: ocrfleet stores in PostgreSQL or SQLite")
    return insert


class ResultStore:
    """Documents and their page results. The engine is created by the caller and passed in."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)

    def create_schema(self) -> None:
        """Create missing tables, and add columns a newer release declares to older tables.

        A pool's database outlives releases (its volume is kept), so a column added since is
        added to the table in place; added columns are nullable, so old rows stay valid.
        """
        Base.metadata.create_all(self.engine)
        existing = inspect(self.engine)
        with self.engine.begin() as conn:
            for table in Base.metadata.sorted_tables:
                have = {c["name"] for c in existing.get_columns(table.name)}
                for column in table.columns:
                    if column.name not in have:
                        kind = column.type.compile(dialect=self.engine.dialect)
                        conn.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions.begin() as s:
            yield s

    # -- writes ------------------------------------------------------------------------------

    def add_document(self, row: DocumentRow) -> None:
        """Record a submitted document (status ``queued``); a second add of the same id is a no-op."""
        self.add_documents([row])

    def add_documents(self, rows: list[DocumentRow]) -> None:
        """Record submitted documents in one statement (``INSERT ... ON CONFLICT DO NOTHING``: an id
        already recorded is left as it is), without the ORM's read-before-write."""
        if not rows:
            return
        values = [{c.key: _value_or_default(row, c) for c in DocumentRow.__table__.columns} for row in rows]
        insert = _dialect_insert(self.engine)
        with self.engine.begin() as conn:
            conn.execute(insert(DocumentRow.__table__).values(values).on_conflict_do_nothing(index_elements=["id"]))

    def mark_processing(self, document_id: str, *, attempt: int = 1) -> bool:
        """A worker starts try ``attempt`` of the document; False (nothing changes) once it is
        finished or when it is unknown."""
        with self.session() as s:
            doc = s.get(DocumentRow, document_id)
            if doc is None or not can_move(doc.status, DocumentStatus.PROCESSING):
                return False
            doc.status = DocumentStatus.PROCESSING
            doc.attempts = max(doc.attempts or 0, attempt)
            return True

    def save_result(self, document_id: str, pages: list[PageResult], *, document_type: str,
                    processing_ms: float | None = None, cached_from: str | None = None,
                    model: str | None = None) -> bool:
        """Store every page of a document and mark it succeeded, in one transaction.

        Idempotent: a retry replaces the earlier pages, so each page has exactly one row.
        """
        with self.session() as s:
            doc = s.get(DocumentRow, document_id)
            if doc is None:
                raise KeyError(f"unknown document {document_id!r}")
            if not can_move(doc.status, DocumentStatus.SUCCEEDED):
                return False
            s.execute(delete(PageRow).where(PageRow.document_id == document_id))
            for p in pages:
                s.add(PageRow(document_id=document_id, page=p.page, document_type=p.document_type,
                              result=p.model_dump_json()))
            doc.status = DocumentStatus.SUCCEEDED
            doc.document_type = document_type
            doc.page_count = len(pages)
            doc.error_code = doc.error_message = None
            doc.processing_ms = processing_ms
            doc.cached_from = cached_from
            doc.model = models.check(model)
            doc.finished_at = utcnow()
            return True

    def mark_failed(self, document_id: str, error: DocumentError) -> bool:
        """Mark the document failed with ``error``."""
        with self.session() as s:
            doc = s.get(DocumentRow, document_id)
            if doc is None:
                raise KeyError(f"unknown document {document_id!r}")
            if not can_move(doc.status, DocumentStatus.FAILED):
                return False
            doc.status = DocumentStatus.FAILED
            doc.error_code, doc.error_message = error.code, error.message
            doc.finished_at = utcnow()
            return True

    # -- reads -------------------------------------------------------------------------------

    def get(self, document_id: str, *, tenant: str | None = None) -> DocumentResult | None:
        """A document with its pages; with ``tenant``, only if it belongs to that tenant."""
        with self.session() as s:
            doc = s.get(DocumentRow, document_id)
            if doc is None or (tenant is not None and doc.tenant != tenant):
                return None
            return self._to_result(s, doc)

    def mask_fields(self, document_id: str) -> list[str]:
        """The names of the fields the document's policy masks (none for an unknown document)."""
        with self.session() as s:
            return list(s.scalar(select(DocumentRow.mask_fields).where(DocumentRow.id == document_id)) or [])

    def succeeded_page_count(self, document_id: str) -> int | None:
        """The page count of a document whose result is stored; None while it has none."""
        with self.session() as s:
            doc = s.get(DocumentRow, document_id)
            return doc.page_count if doc is not None and doc.status == DocumentStatus.SUCCEEDED else None

    def processed_results(self, tenant: str, sha256: str, *, exclude: str = "", limit: int,
                          model: str | None = None) -> list[DocumentRow]:
        """The tenant's newest ``limit`` succeeded documents with this content that were really
        processed (not answered from another's result) by model version ``model`` (the default
        without one), ``exclude`` left out; rows without pages."""
        model = models.check(model)
        by_model = DocumentRow.model == model
        if model == models.DEFAULT:
            by_model = or_(by_model, DocumentRow.model.is_(None))
        with self.session() as s:
            return list(s.scalars(
                select(DocumentRow)
                .where(DocumentRow.tenant == tenant, DocumentRow.sha256 == sha256,
                       DocumentRow.status == DocumentStatus.SUCCEEDED, DocumentRow.id != exclude,
                       DocumentRow.cached_from.is_(None), by_model)
                .order_by(DocumentRow.finished_at.desc())
                .limit(limit)
            ).all())

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

    def batch_counts(self, batch: str) -> dict[DocumentStatus, int]:
        """How many of a batch's (or a CLI run's) documents are in each state."""
        with self.session() as s:
            rows = s.execute(select(DocumentRow.status, func.count()).where(DocumentRow.job == batch)
                             .group_by(DocumentRow.status)).all()
        return {DocumentStatus(status): int(n) for status, n in rows}

    def batch_documents(self, batch: str, *, limit: int, after: str = ""
                        ) -> list[tuple[str, DocumentStatus, str | None]]:
        """One page of a batch's documents in id order (ids after ``after``): id, state and filename."""
        with self.session() as s:
            rows = s.execute(select(DocumentRow.id, DocumentRow.status, DocumentRow.filename)
                             .where(DocumentRow.job == batch, DocumentRow.id > after)
                             .order_by(DocumentRow.id).limit(limit)).all()
        return [(i, DocumentStatus(status), filename) for i, status, filename in rows]

    def tenant_counts(self, tenant: str, start: dt.datetime, end: dt.datetime) -> TenantCounts:
        """The tenant's documents created in ``[start, end)``, counted.

        The p95 is read with an ordered ``OFFSET`` query, which PostgreSQL and SQLite both answer
        from the tenant's index.
        """
        scope = (DocumentRow.tenant == tenant, DocumentRow.created_at >= start, DocumentRow.created_at < end)
        succeeded = DocumentRow.status == DocumentStatus.SUCCEEDED
        with self.session() as s:
            by_status = s.execute(
                select(DocumentRow.status, func.count()).where(*scope).group_by(DocumentRow.status)).all()
            by_type = s.execute(
                select(func.coalesce(DocumentRow.document_type, "unknown"), func.count())
                .where(*scope, succeeded).group_by(DocumentRow.document_type)).all()
            cached = s.scalar(select(func.count()).where(*scope, DocumentRow.cached_from.is_not(None))) or 0
            timed = (*scope, succeeded, DocumentRow.processing_ms.is_not(None), DocumentRow.cached_from.is_(None))
            n = s.scalar(select(func.count()).where(*timed)) or 0
            p95 = None
            if n:
                p95 = s.scalar(select(DocumentRow.processing_ms).where(*timed).order_by(DocumentRow.processing_ms)
                               .offset(min(n - 1, int(0.95 * n))).limit(1))
        return TenantCounts(by_status={DocumentStatus(k): int(v) for k, v in by_status},
                            by_document_type={k: int(v) for k, v in by_type},
                            answered_from_cache=int(cached), p95_processing_ms=p95)

    def outcomes_since(self, start: dt.datetime) -> list[tuple[DocumentStatus, str, int]]:
        """Documents created since ``start`` (every tenant's), counted by state and document type."""
        with self.session() as s:
            rows = s.execute(
                select(DocumentRow.status, func.coalesce(DocumentRow.document_type, "unknown"), func.count())
                .where(DocumentRow.created_at >= start)
                .group_by(DocumentRow.status, DocumentRow.document_type)).all()
        return [(DocumentStatus(status), document_type, int(n)) for status, document_type, n in rows]

    @staticmethod
    def _to_result(s: Session, doc: DocumentRow) -> DocumentResult:
        rows = s.scalars(select(PageRow).where(PageRow.document_id == doc.id).order_by(PageRow.page))
        return DocumentResult(
            document_id=doc.id,
            tenant=doc.tenant,
            status=DocumentStatus(doc.status),
            sha256=doc.sha256,
            job=doc.job,
            filename=doc.filename,
            document_type=doc.document_type,
            pages=[PageResult.model_validate(json.loads(r.result)) for r in rows],
            error=DocumentError(code=doc.error_code, message=doc.error_message or "") if doc.error_code else None,
            cached=doc.cached_from is not None,
            processing_ms=doc.processing_ms,
            model=(doc.model or models.DEFAULT) if doc.status == DocumentStatus.SUCCEEDED else None,
        )


@dataclass(frozen=True)
class TenantCounts:
    """A tenant's documents of one span of time (:meth:`ResultStore.tenant_counts`)."""

    by_status: dict[DocumentStatus, int]
    by_document_type: dict[str, int]
    """Succeeded documents by the type they were read as."""
    answered_from_cache: int
    p95_processing_ms: float | None
    """Over documents really processed (not answered from the cache); None when there are none."""
