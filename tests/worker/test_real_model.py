"""The generated sample set through the real model: real Redis, real PostgreSQL, and the
PP-OCR networks in this process (LocalTorchEngine) or behind a real Triton server.

Slow (model conversion on a first run, CPU inference): ``pytest -m slow tests/worker``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ocrfleet_dev import docgen
from ocrfleet_worker.consumer import Pacing, Worker
from ocrfleet_worker.engine import LocalTorchEngine, TritonEngine
from ocrfleet_worker.pipeline import DocumentPipeline

from ocrfleet.blobs import LocalBlobStore
from ocrfleet.progress import JobProgress
from ocrfleet.queue import Task, WorkQueue

pytestmark = pytest.mark.slow

ID_FIELDS = ("name", "sex", "ethnicity", "birth_date", "address", "id_number")


def run_through_queue(engine, samples: Path, redis_client, store, tmp_path) -> dict[str, tuple[dict, object]]:
    """Enqueue every sample, run one worker until the queue is empty; {file: (truth, result)}."""
    blobs = LocalBlobStore(tmp_path / "blobs")
    queue = WorkQueue(redis_client, "real")
    queue.ensure_groups()
    progress = JobProgress(redis_client, "real")
    truths = {}
    for path in sorted(samples.glob("*.truth.json")):
        truth = json.loads(path.read_text())
        blob = blobs.put_bytes((samples / truth["file"]).read_bytes())
        queue.enqueue(Task(document_id=truth["file"], tenant="t", blob=blob.ref, sha256=blob.sha256, job="real"))
        truths[truth["file"]] = truth
    worker = Worker(queue=queue, store=store, progress=progress, blobs=blobs, pipeline=DocumentPipeline(engine),
                    consumer="real", pacing=Pacing(block_ms=50))
    stats = worker.run(until_idle=True)
    assert stats.succeeded == len(truths), stats
    return {name: (truth, store.get(name)) for name, truth in truths.items()}


def assert_id_cards_read_exactly(results) -> None:
    for name, (truth, result) in results.items():
        if truth["document_type"] != "id_card":
            continue
        assert result.document_type == "id_card", name
        page = result.pages[0]
        got = {f.name: f for f in page.fields}
        wrong = {k: (truth["fields"][k], got[k].value) for k in ID_FIELDS if got[k].value != truth["fields"][k]}
        assert not wrong, f"{name}: {wrong}\n{[ln.text for ln in page.lines]}"
        assert got["id_number"].valid and all(c.passed for c in page.checks), name


def test_local_torch_engine_reads_clean_id_cards_exactly(redis_client, store, tmp_path):
    from ocrfleet_worker.model.networks import TorchSettings

    engine = LocalTorchEngine(TorchSettings(device="cpu", threads=1))
    samples = tmp_path / "samples"
    docgen.generate(samples, 3, seed=11, kinds=("id_card",), clean_fraction=1.0)
    assert_id_cards_read_exactly(run_through_queue(engine, samples, redis_client, store, tmp_path))


def test_triton_engine_reads_cards_and_statements(redis_client, store, tmp_path):
    from ocrfleet_dev.triton import TritonServer

    samples = tmp_path / "samples"
    docgen.generate(samples, 3, seed=12, kinds=("id_card", "bank_statement"), clean_fraction=1.0)
    with TritonServer() as server:
        engine = TritonEngine(server.grpc_url)
        try:
            results = run_through_queue(engine, samples, redis_client, store, tmp_path)
        finally:
            engine.close()
    assert_id_cards_read_exactly(results)
    for name, (truth, result) in results.items():
        if truth["document_type"] == "bank_statement":
            page = result.pages[0]
            got = {f.name: f.value for f in page.fields}
            assert got["account_number"] == truth["fields"]["account_number"], name
            assert [(r["date"], r["amount"], r["balance"]) for r in page.rows] == [
                (r["date"], r["amount"], r["balance"]) for r in truth["rows"]], name
            assert page.checks[0].passed, page.checks[0].detail
