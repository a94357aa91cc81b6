"""A job's documents as the worker takes them: it lists volume and S3 sources itself, fetches
each document under the pool's rules, and a bad source fails its job or document, never the worker."""

from __future__ import annotations

import json
import uuid

from ocrfleet_worker.consumer import Worker
from ocrfleet_worker.pipeline import DocumentPipeline

from ocrfleet import intake
from ocrfleet.queue import Task
from ocrfleet.sources import SourceAccess
from tests.worker.test_consumer import FAST, Harness, page_png

JOB_UID = str(uuid.uuid4())


def listing(source: dict, **kw) -> Task:
    return Task(document_id=JOB_UID, tenant="loans", job="loans.statements", kind="listing",
                source=json.dumps(source), **kw)


def worker(h: Harness, access: SourceAccess) -> Worker:
    return Worker(queue=h.queue, store=h.store, progress=h.progress, blobs=h.blobs,
                  pipeline=DocumentPipeline(h.engine), consumer="w1", pacing=FAST, sources=access)


def test_a_volume_listing_becomes_one_result_per_file_exactly_once(redis_client, store, tmp_path):
    h = Harness(redis_client, store, tmp_path)
    inbox = tmp_path / "volume" / "inbox"
    inbox.mkdir(parents=True)
    for n in range(4):
        (inbox / f"page-{n}.png").write_bytes(page_png(n))
    (inbox / "notes.txt").write_text("not a document of this job")
    access = SourceAccess(max_bytes=1 << 20, volume_root=tmp_path / "volume")
    intake.enqueue_listing(h.queue, listing({"volume": {"path": "inbox", "glob": "*.png"}}))
    assert not intake.enqueue_listing(h.queue, listing({"volume": {"path": "inbox", "glob": "*.png"}})), \
        "a job's listing is enqueued once"

    stats = worker(h, access).run(until_idle=True)

    counts = h.progress.read("loans.statements")
    assert (counts.total, counts.enqueued, counts.succeeded, counts.failed) == (4, 4, 4, 0)
    assert stats.succeeded == 4
    ids = [t.document_id for t in intake.document_tasks(listing({}), [f"volume:inbox/page-{n}.png" for n in range(4)])]
    for n, document_id in enumerate(ids):  # the ids the operator would compute for the same refs
        result = h.store.get(document_id)
        assert result.status == "succeeded" and result.filename == f"page-{n}.png" and result.job == "loans.statements"
        assert result.sha256 and h.blobs.exists(f"sha256:{result.sha256}")
    # a listing delivered again (its worker died before the ack) adds nothing
    intake.enqueue_job(h.queue, h.progress, "loans.statements",
                       intake.document_tasks(listing({}), [f"volume:inbox/page-{n}.png" for n in range(4)]))
    assert h.queue.depth().total == 0 and h.progress.read("loans.statements").enqueued == 4


def test_a_source_that_cannot_be_listed_fails_the_job_with_its_reason(redis_client, store, tmp_path):
    h = Harness(redis_client, store, tmp_path)
    (tmp_path / "volume").mkdir()
    access = SourceAccess(max_bytes=1 << 20, volume_root=tmp_path / "volume")
    intake.enqueue_listing(h.queue, listing({"volume": {"path": "inbox/2099"}}))
    worker(h, access).run(until_idle=True)
    assert "not a directory" in h.progress.source_error("loans.statements")
    assert h.progress.read("loans.statements").total == 0, "no fake document is counted for the listing"
    assert h.queue.dead_letters() == []


def test_a_refused_or_missing_document_fails_alone(redis_client, store, tmp_path):
    h = Harness(redis_client, store, tmp_path)
    (tmp_path / "volume" / "inbox").mkdir(parents=True)
    (tmp_path / "volume" / "inbox" / "ok.png").write_bytes(page_png(1))
    access = SourceAccess(max_bytes=1 << 20, volume_root=tmp_path / "volume")
    refs = ["volume:inbox/ok.png", "volume:../etc/passwd", "volume:inbox/gone.png", "https://elsewhere.example/x.png"]
    tasks = intake.document_tasks(listing({}), refs)
    intake.enqueue_job(h.queue, h.progress, "loans.statements", tasks)
    stats = worker(h, access).run(until_idle=True)
    assert (stats.succeeded, stats.failed, stats.retried) == (1, 3, 0)
    codes = [h.store.get(t.document_id).error.code for t in tasks[1:]]
    assert codes == ["source_refused", "source_not_found", "source_refused"]
    counts = h.progress.read("loans.statements")
    assert (counts.total, counts.succeeded, counts.failed) == (4, 1, 3)
