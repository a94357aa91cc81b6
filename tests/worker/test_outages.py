"""Dependency outages, slow documents and malformed entries, against real Redis and PostgreSQL.

* PostgreSQL stopped mid-run, Triton unreachable: the worker waits the outage out holding its
  document, and every document succeeds on its first attempt; none is dead-lettered.
* A document slower than the claim timeout is not reclaimed from the live worker that holds
  it (its claim is renewed), so it is inferred once.
* Malformed stream entries go to the dead letters with a reason; the documents behind them
  are processed and no worker crashes.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest
from ocrfleet_dev.localproc import PostgresServer, free_port
from ocrfleet_dev.replay_engine import ReplayEngine
from ocrfleet_worker.consumer import Pacing, Worker
from ocrfleet_worker.engine import TritonEngine, TritonNetworks
from ocrfleet_worker.pipeline import DocumentPipeline

from ocrfleet import keys
from ocrfleet.errors import DependencyUnavailable
from ocrfleet.queue import WorkQueue
from ocrfleet.store import Base, DocumentRow, ResultStore, make_engine
from tests.worker.test_consumer import CLUSTER, Harness, page_png

QUICK = Pacing(block_ms=20, reclaim_interval_s=0.05, backoff_base_s=0.05, backoff_max_s=0.2, outage_max_s=0.5)


def statuses(store: ResultStore) -> dict[str, tuple[str, int]]:
    with store.session() as s:
        return {d.id: (d.status, d.attempts) for d in s.query(DocumentRow)}


def run_in_thread(worker: Worker) -> threading.Thread:
    thread = threading.Thread(target=worker.run, kwargs={"until_idle": True}, daemon=True)
    thread.start()
    return thread


class OutageEngine(ReplayEngine):
    """Our engine seam: unreachable (as Triton answers when it is down) until ``back_at``."""

    def __init__(self, back_at: float) -> None:
        super().__init__()
        self.back_at = back_at

    def read_page(self, image):
        if time.monotonic() < self.back_at:
            raise DependencyUnavailable("Triton at 127.0.0.1:8001 is unavailable for ocr_det: failed to connect")
        return super().read_page(image)


def test_a_postgresql_outage_mid_run_fails_no_document(redis_client, tmp_path):
    with PostgresServer() as pg:
        engine = make_engine(pg.url)
        Base.metadata.create_all(engine)
        store = ResultStore(engine)
        h = Harness(redis_client, store, tmp_path, ReplayEngine(delay_s=0.3))
        for n in range(5):
            h.submit(f"d{n}", page_png(n))
        worker = Worker(queue=h.queue, store=store, progress=h.progress, blobs=h.blobs,
                        pipeline=DocumentPipeline(h.engine), consumer="w1", pacing=QUICK)
        thread = run_in_thread(worker)
        deadline = time.monotonic() + 30
        while worker.stats.succeeded < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        pg.process.proc.send_signal(signal.SIGINT)  # fast shutdown: every session is cut at once
        pg.process.proc.wait(30)
        time.sleep(6)  # the database stays away for 6 s in the middle of the run
        pg.start()
        thread.join(60)
        assert not thread.is_alive(), "the worker did not finish after the database came back"
        assert worker.stats.succeeded == 5 and worker.stats.outage_waits > 0, worker.stats
        assert worker.stats.retried == 0 and worker.stats.dead_lettered == 0 and not h.queue.dead_letters()
        assert {s for s, _ in statuses(store).values()} == {"succeeded"}
        assert h.progress.read("job1").succeeded == 5
        engine.dispose()


def test_a_triton_outage_is_waited_out_without_spending_attempts(redis_client, store, tmp_path):
    h = Harness(redis_client, store, tmp_path, OutageEngine(back_at=time.monotonic() + 3), max_attempts=2)
    for n in range(8):
        h.submit(f"t{n}", page_png(n))
    worker = Worker(queue=h.queue, store=store, progress=h.progress, blobs=h.blobs,
                    pipeline=DocumentPipeline(h.engine), consumer="w1", pacing=QUICK)
    stats = worker.run(until_idle=True)
    assert stats.succeeded == 8 and stats.dead_lettered == 0 and stats.retried == 0, stats
    assert stats.outage_waits > 2 and not h.queue.dead_letters()
    assert set(statuses(store).values()) == {("succeeded", 1)}, "each document's one attempt, however long it waited"


def test_an_unreachable_triton_server_is_an_outage_not_a_bad_document():
    """The real tritonclient against a port where nothing listens: DependencyUnavailable."""
    import numpy as np

    url = f"127.0.0.1:{free_port()}"
    with pytest.raises(DependencyUnavailable, match="unavailable"):
        TritonEngine(url, timeout_s=5)
    # past start-up: the server goes away mid-run
    with pytest.raises(DependencyUnavailable, match="unavailable"):
        TritonNetworks(url, timeout_s=5).detect(np.zeros((1, 32, 32, 3), dtype=np.uint8))


def test_a_document_slower_than_the_claim_timeout_stays_with_its_live_worker(redis_client, store, tmp_path):
    slow = ReplayEngine(delay_s=3.5)  # over three claim timeouts of 1 s
    h = Harness(redis_client, store, tmp_path, slow, claim_idle_ms=1000, max_attempts=2)
    h.submit("slow", page_png(1))
    holder = h.worker("holder")
    other = Worker(queue=WorkQueue(redis_client, CLUSTER, max_attempts=2, claim_idle_ms=1000), store=store,
                   progress=h.progress, blobs=h.blobs, pipeline=DocumentPipeline(ReplayEngine()),
                   consumer="thief", pacing=Pacing(block_ms=20, reclaim_interval_s=0.1))
    [delivery] = h.queue.read("holder", count=1)
    stop = threading.Event()

    def steal() -> None:
        while not stop.is_set():
            other.reclaim()
            time.sleep(0.1)

    thief = threading.Thread(target=steal, daemon=True)
    thief.start()
    holder.handle(delivery)
    stop.set()
    thief.join(5)
    assert slow.calls == 1, "the document was inferred once, by its holder"
    assert other.stats.succeeded == 0 and other.stats.dead_lettered == 0 and not h.queue.dead_letters()
    assert statuses(store)["slow"][0] == "succeeded" and h.queue.depth().total == 0


def test_malformed_entries_are_dead_lettered_and_the_documents_behind_them_processed(redis_client, store, tmp_path):
    h = Harness(redis_client, store, tmp_path)
    stream = keys.stream(CLUSTER, "normal")
    redis_client.xadd(stream, {"hello": "world"})
    redis_client.xadd(stream, {"document_id": "x", "tenant": "acme", "attempt": "not-a-number"})
    redis_client.xadd(stream, {"document_id": "y", "tenant": "acme", "mask_fields": "{broken"})
    h.submit("good-1", page_png(1))
    # a malformed entry already pending with a consumer that died: found again by reclaim
    redis_client.xadd(stream, {"document_id": "", "tenant": ""})
    h.queue.redis.xreadgroup(keys.CONSUMER_GROUP, "dead", {stream: ">"}, count=10)  # everything so far
    h.submit("good-2", page_png(2))
    worker = h.worker()
    worker.queue.claim_idle_ms = 1
    stats = worker.run(until_idle=True)
    assert stats.succeeded == 2, stats
    dead = h.queue.dead_letters()
    reasons = [d["error"] for d in dead if "malformed entry" in d["error"]]
    assert len(reasons) == 4, dead
    assert any("missing field 'document_id'" in r for r in reasons)
    assert any("not-a-number" in r for r in reasons)
    assert h.queue.depth().total == 0
