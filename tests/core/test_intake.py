"""The intake of submitted documents on real Redis and PostgreSQL: rows first, the batch whole or
not at all, and an earlier result answering identical content."""

from __future__ import annotations

import datetime as dt

import pytest

from ocrfleet.blobs import LocalBlobStore
from ocrfleet.intake import Intake, NotQueued
from ocrfleet.lifecycle import DocumentStatus
from ocrfleet.masking import MaskPolicy
from ocrfleet.progress import JobProgress
from ocrfleet.queue import WorkQueue
from ocrfleet.results import ExtractedField, PageResult
from ocrfleet.store import DocumentRow


@pytest.fixture
def intake(store, redis_client, tmp_path):
    queue = WorkQueue(redis_client, "c")
    queue.ensure_groups()
    return Intake(store=store, blobs=LocalBlobStore(tmp_path / "blobs"), queue=queue,
                  progress=JobProgress(redis_client, "c"))


def incoming(intake: Intake, data: bytes, name: str):
    staged = intake.blobs.stage(None)
    staged.write(data)
    return intake.commit(staged, filename=name, content_type="image/png")


def test_a_batch_is_recorded_then_enqueued_and_counted(intake):
    docs = [incoming(intake, b"one", "1.png"), incoming(intake, b"two", "2.png")]
    assert not any(d.seen_before for d in docs)
    accepted = intake.accept("acme", docs, document_type="id_card", priority="high",
                             policy=MaskPolicy.from_names(["id_number"]), batch="b1")
    assert [a.status for a in accepted] == [DocumentStatus.QUEUED] * 2 and not any(a.cached for a in accepted)
    tasks = [d.task for d in intake.queue.read("w", count=10)]
    assert [t.document_id for t in tasks] == [a.document_id for a in accepted]
    assert {(t.job, t.priority, t.document_type, t.mask_fields) for t in tasks} == {
        ("b1", "high", "id_card", ("id_number",))}
    rows = [intake.store.get(a.document_id) for a in accepted]
    assert [(r.status, r.job, r.filename) for r in rows] == [("queued", "b1", "1.png"), ("queued", "b1", "2.png")]
    counts = intake.progress.read("b1")
    assert (counts.total, counts.enqueued) == (2, 2)
    assert intake.store.batch_counts("b1") == {DocumentStatus.QUEUED: 2}


def test_content_seen_before_is_answered_from_its_masked_earlier_result(intake):
    [first] = intake.accept("acme", [incoming(intake, b"card", "a.png")], policy=MaskPolicy())
    page = PageResult(page=1, width=10, height=10, document_type="id_card",
                      fields=[ExtractedField(name="id_number", value="1234567890123456")])
    intake.store.save_result(first.document_id, [page], document_type="id_card", processing_ms=5.0)
    intake.queue.read("w", count=10)
    again = incoming(intake, b"card", "b.png")
    assert again.seen_before
    [hit] = intake.accept("acme", [again], policy=MaskPolicy.from_names(["id_number"]))
    assert hit.cached and hit.status == DocumentStatus.SUCCEEDED
    assert intake.queue.read("w", count=10) == [], "nothing enqueued for a cache hit"
    result = intake.store.get(hit.document_id)
    assert result.cached and result.status == "succeeded" and result.processing_ms == 0.0
    assert result.pages[0].fields[0].masked and result.pages[0].fields[0].value != "1234567890123456"
    [other_tenant] = intake.accept("globex", [incoming(intake, b"card", "c.png")], policy=MaskPolicy())
    assert not other_tenant.cached, "another tenant's result is never reused"


def test_a_queue_that_refuses_the_batch_leaves_none_of_it_queued_and_each_failed(intake, redis_client):
    docs = [incoming(intake, b"x", "x.png"), incoming(intake, b"y", "y.png")]
    redis_client.config_set("maxmemory", 1)
    try:
        with pytest.raises(NotQueued, match="nothing of this request was queued"):
            intake.accept("acme", docs, policy=MaskPolicy())
    finally:
        redis_client.config_set("maxmemory", 0)
    assert intake.queue.depth().total == 0
    assert intake.store.outcomes_since(an_hour_ago()) == [(DocumentStatus.FAILED, "unknown", 2)]
    with intake.store.session() as s:
        assert {r.error_code for r in s.query(DocumentRow)} == {"enqueue_failed"}


def an_hour_ago() -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
