"""The consumer loop against real Redis and real PostgreSQL (in process, replay engine)."""

from __future__ import annotations

import io
import time

import pytest
from ocrfleet_dev.replay_engine import ReplayEngine, ReplayRead
from ocrfleet_worker.consumer import Pacing, Worker
from ocrfleet_worker.pipeline import DocumentPipeline
from PIL import Image, ImageDraw

from ocrfleet.blobs import LocalBlobStore
from ocrfleet.errors import TemporaryError
from ocrfleet.progress import JobProgress
from ocrfleet.queue import Task, WorkQueue
from ocrfleet.store import DocumentRow
from tests.worker.hostile import encrypted_pdf, png_bomb
from tests.worker.test_id_card import card

CLUSTER = "t"
FAST = Pacing(block_ms=20, reclaim_interval_s=0.05, backoff_base_s=0.01, backoff_max_s=0.02)


def page_png(n: int, size=(160, 60)) -> bytes:
    img = Image.new("L", size, 255)
    ImageDraw.Draw(img).text((5, 5), f"doc {n}", fill=0)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


class FlakyEngine(ReplayEngine):
    """Fails the first ``failures`` reads with a temporary error (Triton still loading)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def read_page(self, image):
        if self.failures > 0:
            self.failures -= 1
            raise TemporaryError("the model server is still loading")
        return super().read_page(image)


class Harness:
    def __init__(self, redis_client, store, tmp_path, engine=None, *, max_attempts=3, claim_idle_ms=60_000,
                 pool=CLUSTER):
        self.redis = redis_client
        self.store = store
        self.blobs = LocalBlobStore(tmp_path / "blobs")
        self.queue = WorkQueue(redis_client, pool, max_attempts=max_attempts, claim_idle_ms=claim_idle_ms)
        self.queue.ensure_groups()
        self.progress = JobProgress(redis_client, pool)
        self.engine = engine or ReplayEngine()

    def worker(self, name="w1") -> Worker:
        return Worker(queue=self.queue, store=self.store, progress=self.progress, blobs=self.blobs,
                      pipeline=DocumentPipeline(self.engine), consumer=name, pacing=FAST)

    def submit(self, doc_id: str, data: bytes, *, tenant="acme", job="job1", **kw) -> Task:
        blob = self.blobs.put_bytes(data)
        task = Task(document_id=doc_id, tenant=tenant, blob=blob.ref, sha256=blob.sha256, job=job, **kw)
        self.queue.enqueue(task)
        self.progress.record_enqueued(job)
        return task


@pytest.fixture
def harness(redis_client, store, tmp_path):
    return Harness(redis_client, store, tmp_path)


def test_documents_are_stored_then_acked_and_counted_once(harness):
    for n in range(3):
        harness.submit(f"d{n}", page_png(n))
    stats = harness.worker().run(until_idle=True)
    assert stats.succeeded == 3
    for n in range(3):
        doc = harness.store.get(f"d{n}")
        assert doc.status == "succeeded" and len(doc.pages) == 1
        assert doc.pages[0].lines[0].text.startswith("page ")
    assert harness.queue.depth().total == 0
    counts = harness.progress.read("job1")
    assert (counts.succeeded, counts.failed, counts.pages) == (3, 0, 3)


def test_hostile_documents_fail_alone_and_the_worker_keeps_going(harness):
    bad = {
        "empty": b"",
        "text": b"definitely not an image",
        "truncated-jpeg": _jpeg()[:400],
        "bomb": png_bomb(10_000, 10_000),
        "wide": _png(20_000, 200),
        "encrypted": encrypted_pdf(),
    }
    harness.submit("good-before", page_png(1))
    for name, data in bad.items():
        harness.submit(name, data)
    harness.submit("good-after", page_png(2))
    stats = harness.worker().run(until_idle=True)
    assert (stats.succeeded, stats.failed, stats.retried) == (2, len(bad), 0)
    codes = {name: harness.store.get(name).error.code for name in bad}
    assert codes == {"empty": "empty_document", "text": "unsupported_type", "truncated-jpeg": "truncated_document",
                     "bomb": "document_too_large", "wide": "document_too_large", "encrypted": "encrypted_document"}
    assert "password" in harness.store.get("encrypted").error.message
    assert harness.store.get("good-after").status == "succeeded"
    assert harness.queue.dead_letters() == []  # a bad document is a result, not a dead letter
    assert harness.progress.read("job1").failed == len(bad)


def test_temporary_errors_are_retried_with_the_next_attempt(redis_client, store, tmp_path):
    h = Harness(redis_client, store, tmp_path, FlakyEngine(failures=2), max_attempts=3)
    h.submit("d", page_png(1))
    stats = h.worker().run(until_idle=True)
    assert (stats.retried, stats.succeeded) == (2, 1)
    with store.session() as s:
        assert s.get(DocumentRow, "d").attempts == 3


def test_after_max_attempts_the_document_is_dead_lettered_with_its_last_error(redis_client, store, tmp_path):
    h = Harness(redis_client, store, tmp_path, FlakyEngine(failures=3), max_attempts=2)
    h.submit("d", page_png(1))
    h.submit("next", page_png(2))
    stats = h.worker().run(until_idle=True)
    assert stats.dead_lettered == 1
    doc = h.store.get("d")
    assert doc.status == "failed" and doc.error.code == "attempts_exhausted"
    assert "still loading" in doc.error.message
    [dead] = h.queue.dead_letters()
    assert dead["document_id"] == "d" and "still loading" in dead["error"]
    assert h.store.get("next").status == "succeeded"  # d1, next1, d2 failed; next2 found the engine back
    assert h.progress.read("job1").failed == 1


def test_same_content_is_answered_from_the_cache_without_inference(harness):
    harness.engine.learn(page_png(7), [ReplayRead(lines=card())])
    harness.submit("first", page_png(7))
    harness.worker().run(until_idle=True)
    calls = harness.engine.calls
    harness.submit("again", page_png(7), job="job2", mask_fields=("id_number",))
    harness.submit("other-tenant", page_png(7), tenant="globex")
    stats = harness.worker().run(until_idle=True)
    assert harness.engine.calls == calls + 1  # only the other tenant's copy was read
    again = harness.store.get("again")
    assert again.cached and again.pages[0].fields[-1].value == "110***********2X"
    assert "11010519491231002X" not in " ".join(ln.text for ln in again.pages[0].lines)
    assert not harness.store.get("other-tenant").cached
    assert stats.cached == 1
    # A masked result never answers a request that wants the number unmasked.
    harness.submit("unmasked", page_png(7), job="job3")
    harness.worker().run(until_idle=True)
    unmasked = harness.store.get("unmasked")
    assert unmasked.pages[0].fields[-1].value == "11010519491231002X"


def test_a_dead_workers_message_is_reclaimed_and_processed_once(redis_client, store, tmp_path):
    h = Harness(redis_client, store, tmp_path, claim_idle_ms=50)
    h.submit("d", page_png(1))
    [taken] = h.queue.read("dead-worker", count=1)  # taken, never acked: its worker "died"
    assert taken.task.document_id == "d"
    worker = h.worker("alive")
    deadline = time.monotonic() + 10
    while _status(h.store, "d") != "succeeded" and time.monotonic() < deadline:
        worker.poll()
    assert _status(h.store, "d") == "succeeded"
    assert h.queue.depth().total == 0
    assert h.progress.read("job1").succeeded == 1


def test_a_message_whose_result_was_stored_before_the_crash_is_just_acked(harness):
    harness.submit("d", page_png(1))
    harness.worker().run(until_idle=True)
    calls = harness.engine.calls
    # The same message delivered again (the worker died between storing and acking).
    task = harness.store.get("d")
    harness.queue.enqueue(Task(document_id="d", tenant="acme", blob=f"sha256:{task.sha256}",
                               sha256=task.sha256, job="job1"))
    harness.worker().run(until_idle=True)
    assert harness.engine.calls == calls
    assert harness.progress.read("job1").succeeded == 1


def test_poison_message_redelivered_past_max_attempts_is_dead_lettered(redis_client, store, tmp_path):
    h = Harness(redis_client, store, tmp_path, max_attempts=2, claim_idle_ms=10)
    h.submit("poison", page_png(1))
    h.queue.read("dies-1", count=1)
    deadline = time.monotonic() + 5
    while not h.queue.reclaim("dies-2", count=1)[0] and time.monotonic() < deadline:
        pass  # the second worker takes it over (and "dies" too)
    worker = h.worker("w")
    while _status(h.store, "poison") != "failed":
        assert time.monotonic() < deadline + 5
        worker.poll()
    assert "workers that stopped" in h.store.get("poison").error.message
    assert h.queue.dead_letters()[0]["document_id"] == "poison"


def test_stop_finishes_nothing_new(harness):
    harness.submit("d", page_png(1))
    worker = harness.worker()
    worker.stop()
    worker.run()
    assert harness.store.get("d") is None
    assert harness.queue.depth().waiting == 1


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (400, 300), (200, 100, 50)).save(buf, format="JPEG")
    return buf.getvalue()


def _png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (w, h), 255).save(buf, format="PNG")
    return buf.getvalue()


def _status(store, doc_id: str) -> str | None:
    doc = store.get(doc_id)
    return doc.status if doc else None
