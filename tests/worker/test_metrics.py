"""The worker's Prometheus metrics, scraped from the real exposition while real documents go through
the consumer (real Redis and PostgreSQL, the replay engine)."""

from __future__ import annotations

import functools
import time

import pytest
from ocrfleet_dev import promscrape
from ocrfleet_dev.localproc import free_port
from ocrfleet_worker import metrics
from ocrfleet_worker.engine import TritonNetworks

from ocrfleet.queue import Task
from tests.worker.test_consumer import FlakyEngine, Harness, page_png


@pytest.fixture(scope="module")
def scrape():
    """Reads the exposition served on a free local port."""
    port = free_port()
    metrics.serve("127.0.0.1", port)
    return functools.partial(promscrape.scrape, f"http://127.0.0.1:{port}/metrics")


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_processed_document_shows_in_the_scrape(scrape, redis_client, store, tmp_path):
    before = scrape()
    h = Harness(redis_client, store, tmp_path)
    blob = h.blobs.put_bytes(page_png(1))
    h.queue.enqueue(Task(document_id="m1", tenant="acme", blob=blob.ref, sha256=blob.sha256, job="job1",
                         enqueued_at=time.time() - 2.0))
    h.submit("m2", b"definitely not an image")
    stats = h.worker().run(until_idle=True)
    assert (stats.succeeded, stats.failed) == (1, 1)
    after = scrape()

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("ocrfleet_worker_documents_total", outcome="succeeded") == 1
    assert delta("ocrfleet_worker_documents_total", outcome="failed") == 1
    assert delta("ocrfleet_worker_pages_total") == 1
    assert delta("ocrfleet_worker_document_seconds_count") == 1
    for stage in ("decode", "read", "extract"):  # the replay engine times no model stages of its own
        assert delta("ocrfleet_worker_stage_seconds_count", stage=stage) == 1, stage
        assert delta("ocrfleet_worker_stage_seconds_sum", stage=stage) >= 0
    assert delta("ocrfleet_worker_queue_wait_seconds_count") == 2
    assert delta("ocrfleet_worker_queue_wait_seconds_sum") >= 2.0
    assert delta("ocrfleet_worker_queue_wait_seconds_bucket", le="1.0") <= 1  # m1 waited 2 s at least


def test_retries_and_dead_letters_are_counted(scrape, redis_client, store, tmp_path):
    before = scrape()
    h = Harness(redis_client, store, tmp_path, FlakyEngine(failures=5), max_attempts=2)
    h.submit("r1", page_png(1))
    stats = h.worker().run(until_idle=True)
    assert (stats.retried, stats.dead_lettered) == (1, 1)
    after = scrape()
    assert value(after, "ocrfleet_worker_retries_total") - value(before, "ocrfleet_worker_retries_total") == 1
    assert value(after, "ocrfleet_worker_dead_letters_total") - value(before, "ocrfleet_worker_dead_letters_total") == 1
    assert (value(after, "ocrfleet_worker_documents_total", outcome="failed")
            - value(before, "ocrfleet_worker_documents_total", outcome="failed")) == 1


def test_model_stages_an_engine_times_are_recorded(scrape):
    from ocrfleet_worker.pipeline import DocumentPipeline

    class TimedRead:
        lines: list = []
        rotation = 0
        timings_ms = {"detect": 30.0, "classify": 5.0, "recognize": 120.0, "total": 160.0}

    class TimedEngine:
        def read_page(self, image):
            return TimedRead()

    done = DocumentPipeline(TimedEngine()).process(page_png(3))
    stages = dict(done.stage_seconds)
    assert stages["detect"] == pytest.approx(0.03) and stages["recognize"] == pytest.approx(0.12)
    assert "total" not in stages
    before = scrape()
    metrics.observe_document(len(done.pages), done.processing_ms / 1000, done.stage_seconds)
    after = scrape()
    assert (value(after, "ocrfleet_worker_stage_seconds_sum", stage="recognize")
            - value(before, "ocrfleet_worker_stage_seconds_sum", stage="recognize")) == pytest.approx(0.12)


def test_triton_round_trips_are_counted_by_model(scrape):
    """The gRPC client's calls, with a stand-in client: counted and timed by model and outcome."""
    import numpy as np
    from tritonclient.utils import InferenceServerException

    class Result:
        def as_numpy(self, _name):
            return np.zeros((1, 2), dtype=np.float32)

    class Client:
        fail = False

        def infer(self, model, inputs, model_version, outputs, client_timeout):
            assert model_version == "1"  # the default version's directory
            if self.fail:
                raise InferenceServerException("gone", status="StatusCode.UNAVAILABLE")
            return Result()

    networks = TritonNetworks.__new__(TritonNetworks)
    import tritonclient.grpc as grpcclient
    networks.url, networks.timeout_s, networks.max_batch_size, networks.version = "t:8001", 1.0, 8, "1"
    networks._grpc, networks.client = grpcclient, Client()
    before = scrape()
    networks.classify(np.zeros((10, 3, 48, 192), dtype=np.float32))  # two requests: 8 + 2
    networks.client.fail = True
    with pytest.raises(Exception, match="unavailable"):
        networks.detect(np.zeros((1, 32, 32, 3), dtype=np.uint8))
    after = scrape()

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("ocrfleet_worker_triton_requests_total", model="ocr_cls", outcome="ok") == 2
    assert delta("ocrfleet_worker_triton_request_seconds_count", model="ocr_cls") == 2
    assert delta("ocrfleet_worker_triton_requests_total", model="ocr_det", outcome="unavailable") == 1
