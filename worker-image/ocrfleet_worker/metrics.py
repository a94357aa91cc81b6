"""Prometheus metrics of one worker: documents, pages, stage latencies, Triton round-trips,
retries, dead letters and queue wait.

Served on a port of their own (``OCRFLEET_METRICS_PORT``, 9400; 0 serves none) by
:func:`serve`, from a thread of the worker process. The page pipeline stays pure: it hands back
how long each stage took (:attr:`~ocrfleet_worker.pipeline.ProcessedDocument.stage_seconds`)
and the consumer records them here (:func:`observe_document`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server

from ocrfleet.lifecycle import DocumentStatus

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

DOCUMENTS = Counter("ocrfleet_worker_documents_total", "Documents finished by this worker, by outcome",
                    ["outcome"])
PAGES = Counter("ocrfleet_worker_pages_total", "Pages read by this worker")
STAGE_SECONDS = Histogram("ocrfleet_worker_stage_seconds",
                          "Time per pipeline stage: decode (per document), read, detect, classify, recognize "
                          "and extract (per page), mask (per document)", ["stage"], buckets=_LATENCY_BUCKETS)
DOCUMENT_SECONDS = Histogram("ocrfleet_worker_document_seconds", "Time to process one document (all stages)",
                             buckets=_LATENCY_BUCKETS)
TRITON_REQUESTS = Counter("ocrfleet_worker_triton_requests_total", "Inference requests sent to Triton, by model "
                          "and outcome (ok, or the error kind)", ["model", "outcome"])
TRITON_SECONDS = Histogram("ocrfleet_worker_triton_request_seconds", "Triton inference round-trip time by model",
                           ["model"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                                               5, 10, 30, 60))
RETRIES = Counter("ocrfleet_worker_retries_total", "Documents given back to the queue for another attempt")
DEAD_LETTERS = Counter("ocrfleet_worker_dead_letters_total", "Documents moved to the dead-letter stream after "
                       "their last attempt")
QUEUE_WAIT = Histogram("ocrfleet_worker_queue_wait_seconds", "Time from a document's enqueueing to the start of "
                       "its processing", buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200, 21600,
                                                  86400))

OUTCOMES = (DocumentStatus.SUCCEEDED.value, DocumentStatus.FAILED.value)
for _outcome in OUTCOMES:  # both series exist from the start (a rate needs its zero)
    DOCUMENTS.labels(_outcome)


def document_finished(status: DocumentStatus) -> None:
    DOCUMENTS.labels(status.value).inc()


def observe_document(pages: int, seconds: float, stage_seconds: Iterable[tuple[str, float]]) -> None:
    """One processed document: its pages, its total time and each stage's time."""
    PAGES.inc(pages)
    DOCUMENT_SECONDS.observe(seconds)
    for stage, s in stage_seconds:
        STAGE_SECONDS.labels(stage).observe(s)


def queue_wait(enqueued_at: float, *, now: float | None = None) -> None:
    """From ``enqueued_at`` (epoch seconds; 0: unknown, a task from before it was carried) to now."""
    if enqueued_at > 0:
        QUEUE_WAIT.observe(max(0.0, (time.time() if now is None else now) - enqueued_at))


def triton_request(model: str, seconds: float, outcome: str = "ok") -> None:
    TRITON_REQUESTS.labels(model, outcome).inc()
    TRITON_SECONDS.labels(model).observe(seconds)


def serve(host: str, port: int) -> None:
    """The exposition on ``host:port`` (``/metrics``), from a thread of this process; port 0: none."""
    if port:
        start_http_server(port, addr=host, registry=REGISTRY)
