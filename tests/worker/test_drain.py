"""Drain-safe termination: the drain file stops new work, the busy file marks work in hand."""

from __future__ import annotations

from ocrfleet_dev.replay_engine import ReplayEngine
from ocrfleet_worker.consumer import Worker
from ocrfleet_worker.drain import DrainFiles
from ocrfleet_worker.pipeline import DocumentPipeline

from tests.worker.test_consumer import FAST, Harness, page_png


class WatchingEngine(ReplayEngine):
    """Records whether the busy file existed while each page was read."""

    def __init__(self, busy_file) -> None:
        super().__init__()
        self.busy_file = busy_file
        self.busy_seen: list[bool] = []

    def read_page(self, image):
        self.busy_seen.append(self.busy_file.exists())
        return super().read_page(image)


def drained_worker(harness: Harness, drain: DrainFiles) -> Worker:
    return Worker(queue=harness.queue, store=harness.store, progress=harness.progress, blobs=harness.blobs,
                  pipeline=DocumentPipeline(harness.engine), consumer="w1", pacing=FAST, drain=drain)


def test_busy_file_exists_exactly_while_a_document_is_in_hand(redis_client, store, tmp_path):
    drain = DrainFiles(tmp_path / "run" / "drain", tmp_path / "run" / "busy")
    harness = Harness(redis_client, store, tmp_path, WatchingEngine(drain.busy_file))
    for n in range(2):
        harness.submit(f"d{n}", page_png(n))
    stats = drained_worker(harness, drain).run(until_idle=True)
    assert stats.succeeded == 2
    assert harness.engine.busy_seen == [True, True]
    assert not drain.busy_file.exists()


def test_a_drain_file_stops_the_worker_before_it_takes_work(redis_client, store, tmp_path):
    drain = DrainFiles(tmp_path / "drain", tmp_path / "busy")
    drain.drain_file.touch()
    harness = Harness(redis_client, store, tmp_path)
    harness.submit("d0", page_png(0))
    worker = drained_worker(harness, drain)
    stats = worker.run()  # returns on its own: no stop() from outside
    assert worker.stopping and stats.succeeded == 0
    assert harness.queue.depth().total == 1, "the waiting document stays for another worker"
