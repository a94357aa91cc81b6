"""Worker processes killed and Redis restarted mid-run: every page ends with exactly one result.

Real worker processes (``python -m ocrfleet_worker``, replay engine with simulated inference
time), real Redis (AOF, fsync always) and real PostgreSQL.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from ocrfleet_dev.localproc import RedisServer
from PIL import Image, ImageDraw
from sqlalchemy import func, select

from ocrfleet import keys
from ocrfleet.blobs import LocalBlobStore
from ocrfleet.progress import JobProgress
from ocrfleet.queue import Task, WorkQueue
from ocrfleet.store import DocumentRow, PageRow

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = "crash"


def two_page_tiff(n: int) -> bytes:
    frames = []
    for p in range(2):
        img = Image.new("L", (96, 32), 255)
        ImageDraw.Draw(img).text((3, 10), f"{n}/{p}", fill=0)
        frames.append(img)
    buf = io.BytesIO()
    frames[0].save(buf, format="TIFF", save_all=True, append_images=frames[1:])
    return buf.getvalue()


class WorkerProcess:
    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "ocrfleet_dev.worker"], cwd=ROOT, stdout=out,
                                         stderr=subprocess.STDOUT,
                                         env={**os.environ, **env, "OCRFLEET_CONSUMER_NAME": name})

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])


@pytest.fixture
def fleet(store, postgres_url, tmp_path):
    """Start worker processes against a given Redis; everything is stopped afterwards."""
    started: list[WorkerProcess] = []
    blobs = LocalBlobStore(tmp_path / "blobs")

    def start(name: str, redis_url: str, **extra: str) -> WorkerProcess:
        env = {
            "OCRFLEET_CLUSTER": CLUSTER, "OCRFLEET_REDIS_URL": redis_url, "OCRFLEET_DATABASE_URL": postgres_url,
            "OCRFLEET_BLOB_ROOT": str(blobs.root), "OCRFLEET_REPLAY_DELAY_MS": "15",
            "OCRFLEET_CLAIM_IDLE_MS": "1000", "OCRFLEET_RECLAIM_INTERVAL_S": "0.3", "OCRFLEET_BLOCK_MS": "200",
            "OCRFLEET_BACKOFF_BASE_S": "0.1", "OCRFLEET_BACKOFF_MAX_S": "0.5",
            "OCRFLEET_METRICS_PORT": "0",  # several workers on one host: no exposition to bind
            **extra,
        }
        worker = WorkerProcess(name, env, tmp_path)
        started.append(worker)
        return worker

    start.blobs = blobs  # type: ignore[attr-defined]
    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait(10)


def enqueue(queue: WorkQueue, progress: JobProgress, blobs: LocalBlobStore, numbers) -> None:
    for n in numbers:
        blob = blobs.put_bytes(two_page_tiff(n))
        queue.enqueue(Task(document_id=f"doc-{n:03d}", tenant="acme", blob=blob.ref, sha256=blob.sha256,
                           job="crash-job"))
        progress.record_enqueued("crash-job")


def stored(store) -> tuple[int, int]:
    """(documents succeeded, page rows)."""
    with store.session() as s:
        docs = s.scalar(select(func.count()).select_from(DocumentRow).where(DocumentRow.status == "succeeded"))
        pages = s.scalar(select(func.count()).select_from(PageRow))
    return docs, pages


def wait_for(condition, timeout: float, what: str, workers=()) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {w.name}\n{w.tail()}" for w in workers)
            raise AssertionError(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.05)  # polling a condition across processes


def assert_exactly_one_result_per_page(store, n_docs: int) -> None:
    with store.session() as s:
        rows = s.execute(select(PageRow.document_id, PageRow.page, PageRow.result)).all()
        docs = s.scalars(select(DocumentRow)).all()
    assert len(docs) == n_docs and all(d.status == "succeeded" for d in docs)
    assert sorted((r.document_id, r.page) for r in rows) == [
        (f"doc-{n:03d}", p) for n in range(n_docs) for p in (1, 2)
    ]
    # Each stored page is that document's page (the replay engine names the page it read).
    assert len({r.result for r in rows}) == len(rows)


def test_sigkill_mid_run_over_200_pages_loses_and_duplicates_nothing(redis_client, redis_server, store, fleet):
    queue = WorkQueue(redis_client, CLUSTER)
    queue.ensure_groups()
    progress = JobProgress(redis_client, CLUSTER)
    enqueue(queue, progress, fleet.blobs, range(100))  # 100 documents x 2 pages
    victim = fleet("victim", redis_server.url)

    held: dict = {}

    def victim_is_mid_document() -> bool:
        # read what the victim holds in the same moment as the check: it moves on quickly
        pending = redis_client.xpending_range(keys.stream(CLUSTER), keys.CONSUMER_GROUP, "-", "+", 10,
                                              consumername="victim")
        if stored(store)[0] < 30 or len(pending) != 1:
            return False
        entries = redis_client.xrange(keys.stream(CLUSTER), pending[0]["message_id"], pending[0]["message_id"])
        if not entries:  # acked meanwhile
            return False
        held.update(message_id=pending[0]["message_id"], document_id=Task.from_fields(entries[0][1]).document_id)
        return True

    wait_for(victim_is_mid_document, 60, "the victim to be mid-document", [victim])
    held_doc = held["document_id"]
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(10)
    rescuers = [fleet("rescuer-1", redis_server.url), fleet("rescuer-2", redis_server.url)]
    wait_for(lambda: stored(store)[0] == 100, 90, "all documents", rescuers)
    wait_for(lambda: queue.depth().total == 0, 30, "the queue to drain", rescuers)

    assert_exactly_one_result_per_page(store, 100)
    counts = progress.read("crash-job")
    assert (counts.succeeded, counts.failed, counts.pages) == (100, 0, 200)  # counted once each
    assert queue.dead_letters() == []
    # The document the victim held when it died was finished by a rescuer: its message was
    # reclaimed (a second delivery) and is gone from the stream (acked).
    with store.session() as s:
        assert s.get(DocumentRow, held_doc).attempts >= 2 or victim_stored_it_first(held_doc, s)
    assert redis_client.xrange(keys.stream(CLUSTER), held["message_id"], held["message_id"]) == []
    for worker in rescuers:
        worker.proc.send_signal(signal.SIGTERM)
        assert worker.proc.wait(15) == 0, worker.tail()


def victim_stored_it_first(doc_id: str, session) -> bool:
    """The kill can land between storing and acking; the rescuer then only acks."""
    return session.get(DocumentRow, doc_id).attempts == 1 and session.get(DocumentRow, doc_id).status == "succeeded"


def test_redis_restarted_mid_run_loses_nothing_accepted(store, fleet, tmp_path):
    (tmp_path / "redis").mkdir()
    with RedisServer(tmp_path / "redis") as server:
        client = redis.Redis.from_url(server.url)
        queue = WorkQueue(client, CLUSTER)
        queue.ensure_groups()
        progress = JobProgress(client, CLUSTER)
        enqueue(queue, progress, fleet.blobs, range(60))
        worker = fleet("survivor", server.url)
        wait_for(lambda: stored(store)[0] >= 20, 60, "20 documents", [worker])

        server.restart()  # SIGKILL, then start again on the same port from the AOF
        client = redis.Redis.from_url(server.url)
        queue, progress = WorkQueue(client, CLUSTER), JobProgress(client, CLUSTER)
        enqueue(queue, progress, fleet.blobs, range(60, 100))  # accepted after the restart
        wait_for(lambda: stored(store)[0] == 100, 90, "all documents", [worker])
        wait_for(lambda: queue.depth().total == 0, 30, "the queue to drain", [worker])

        assert_exactly_one_result_per_page(store, 100)
        counts = progress.read("crash-job")
        assert (counts.enqueued, counts.succeeded, counts.pages) == (100, 100, 200)
        assert worker.proc.poll() is None, "the worker must ride out the restart"
        worker.proc.send_signal(signal.SIGTERM)
        assert worker.proc.wait(15) == 0, worker.tail()
        client.close()


def test_sigterm_finishes_the_current_document_and_exits(redis_client, redis_server, store, fleet):
    queue = WorkQueue(redis_client, CLUSTER)
    queue.ensure_groups()
    progress = JobProgress(redis_client, CLUSTER)
    enqueue(queue, progress, fleet.blobs, range(5))
    worker = fleet("slow", redis_server.url, OCRFLEET_REPLAY_DELAY_MS="1500")

    def mid_document() -> bool:
        with store.session() as s:
            return s.scalar(select(func.count()).select_from(DocumentRow)
                            .where(DocumentRow.status == "processing")) == 1

    wait_for(mid_document, 60, "the worker to start a document", [worker])
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(20) == 0, worker.tail()
    assert stored(store) == (1, 2)  # the document in hand was finished...
    assert queue.depth().in_flight == 0 and queue.depth().waiting == 4  # ...and nothing else taken
