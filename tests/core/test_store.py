"""The results store on real PostgreSQL (and SQLite): idempotent pages, tenant-scoped cache."""

from __future__ import annotations

import pytest

from ocrfleet.results import DocumentError, PageResult, TextLine
from ocrfleet.store import Base, DocumentRow, ResultStore, make_engine


def page(n: int, text: str = "hello") -> PageResult:
    return PageResult(page=n, width=100, height=50, lines=[TextLine(text=text, confidence=0.9)])


def _exercise(store: ResultStore) -> None:
    store.add_document(DocumentRow(id="d1", tenant="acme", sha256="a" * 64))
    store.add_document(DocumentRow(id="d1", tenant="acme", sha256="a" * 64))  # a second add is a no-op
    store.mark_processing("d1")
    store.save_result("d1", [page(1), page(2)], document_type="generic")
    store.save_result("d1", [page(1, "again"), page(2)], document_type="generic")  # a retry overwrites
    doc = store.get("d1")
    assert doc.status == "succeeded" and [p.page for p in doc.pages] == [1, 2]
    assert doc.pages[0].lines[0].text == "again"
    assert store.get("d1", tenant="other") is None
    assert store.find_by_hash("acme", "a" * 64).document_id == "d1"
    assert store.find_by_hash("other", "a" * 64) is None
    store.add_document(DocumentRow(id="d2", tenant="acme", sha256="b" * 64))
    store.mark_failed("d2", DocumentError(code="invalid_document", message="truncated JPEG"))
    failed = store.get("d2")
    assert failed.status == "failed" and failed.error.message == "truncated JPEG"
    with pytest.raises(KeyError):
        store.save_result("missing", [], document_type="generic")


def test_store_on_postgresql(store):
    _exercise(store)


def test_store_on_sqlite(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'results.db'}")
    Base.metadata.create_all(engine)
    _exercise(ResultStore(engine))
