"""The results store on real PostgreSQL (and SQLite): idempotent pages, tenant-scoped cache."""

from __future__ import annotations

import pytest

from ocrfleet.masking import MaskPolicy
from ocrfleet.results import DocumentError, PageResult, TextLine
from ocrfleet.reuse import find_reusable
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
    assert find_reusable(store, "acme", "a" * 64, MaskPolicy()).source == "d1"
    assert find_reusable(store, "other", "a" * 64, MaskPolicy()) is None
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


def test_the_read_models_of_the_api_and_the_worker(store):
    """Each query the API and the worker make on documents, by its store method."""
    import datetime as dt

    for n, (tenant, batch) in enumerate([("acme", "b1"), ("acme", "b1"), ("acme", None), ("other", "b2")]):
        store.add_document(DocumentRow(id=f"d{n}", tenant=tenant, sha256="c" * 64, job=batch,
                                       filename=f"{n}.png", mask_fields=["id_number"]))
    store.mark_processing("d0", attempt=2)
    assert store.succeeded_page_count("d0") is None
    store.save_result("d0", [page(1), page(2)], document_type="id_card", processing_ms=40.0)
    store.save_result("d1", [page(1)], document_type="id_card", processing_ms=0.0, cached_from="d0")
    store.mark_failed("d2", DocumentError(code="unsupported_type", message="no"))
    assert store.succeeded_page_count("d0") == 2 and store.succeeded_page_count("missing") is None
    assert store.mask_fields("d0") == ["id_number"] and store.mask_fields("missing") == []
    assert [r.id for r in store.processed_results("acme", "c" * 64, limit=5)] == ["d0"], "copies are no source"
    assert store.processed_results("acme", "c" * 64, exclude="d0", limit=5) == []
    assert store.batch_counts("b1") == {"succeeded": 2}
    assert store.batch_documents("b1", limit=10) == [("d0", "succeeded", "0.png"), ("d1", "succeeded", "1.png")]
    assert store.batch_documents("b1", limit=1, after="d0") == [("d1", "succeeded", "1.png")], "a cursor page"
    now = dt.datetime.now(dt.UTC)
    day = store.tenant_counts("acme", now - dt.timedelta(hours=1), now + dt.timedelta(hours=1))
    assert day.by_status == {"succeeded": 2, "failed": 1} and day.by_document_type == {"id_card": 2}
    assert (day.answered_from_cache, day.p95_processing_ms) == (1, 40.0)
    assert sorted(store.outcomes_since(now - dt.timedelta(hours=1))) == [
        ("failed", "unknown", 1), ("queued", "unknown", 1), ("succeeded", "id_card", 2)]


def test_a_result_answers_again_only_for_the_model_version_that_read_it(store):
    """ppocr-v6-small's result is no cache hit for a document the default (v4) would read, nor
    the other way round; a row stored before versions were recorded counts as the default's."""
    from sqlalchemy import update

    sha = "e" * 64
    store.add_document(DocumentRow(id="old", tenant="acme", sha256=sha))
    store.save_result("old", [page(1, "v4")], document_type="generic")
    with store.session() as s:  # as a row written before the model column existed
        s.execute(update(DocumentRow).where(DocumentRow.id == "old").values(model=None))
    assert store.get("old").model == "ppocr-v4"
    assert find_reusable(store, "acme", sha, MaskPolicy()).source == "old"
    assert find_reusable(store, "acme", sha, MaskPolicy(), model="ppocr-v6-small") is None
    store.add_document(DocumentRow(id="new", tenant="acme", sha256=sha))
    store.save_result("new", [page(1, "v6")], document_type="generic", model="ppocr-v6-small")
    reused = find_reusable(store, "acme", sha, MaskPolicy(), model="ppocr-v6-small")
    assert (reused.source, reused.model, reused.pages[0].lines[0].text) == ("new", "ppocr-v6-small", "v6")
    assert find_reusable(store, "acme", sha, MaskPolicy()).source == "old"
    with pytest.raises(ValueError, match="unknown model version 'ppocr-v5'; known: ppocr-v4, ppocr-v6-small"):
        store.save_result("new", [page(1)], document_type="generic", model="ppocr-v5")
