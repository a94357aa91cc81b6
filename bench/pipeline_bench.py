"""The data plane end to end: enqueue → stored result, beside the reference pipeline, in one run.

One labelled document set (:mod:`ocrfleet_dev.docgen`: Chinese ID cards, Chinese and English bank
statements, generic pages; clean and degraded, as PNG, JPEG and PDF files) goes through the
whole worker path for every configuration:

- real Redis (:class:`ocrfleet_dev.localproc.RedisServer`, AOF on), the real results store
  (PostgreSQL via :class:`ocrfleet_dev.localproc.PostgresServer`, or SQLite), a real Triton server
  (:class:`ocrfleet_dev.triton.TritonServer`, rendered with the configuration's batch
  settings and torch threads) and real worker processes (``python -m ocrfleet_worker``);
- configurations: 1 and 2 workers x Triton dynamic batching on and off;
- the reference pipeline (``rapidocr_onnxruntime.RapidOCR``, 2 threads, in a process of its
  own) reads the same files (decoded by the worker's own decoder) in alternating blocks: a
  block of documents by the reference, the same block through the data plane, the next block
  the other way round ... so both see the same background load (this machine is shared), and each configuration's
  pages/s is reported as a ratio to the reference's measured in its own blocks.

Documents are fed closed-loop: one per worker is enqueued and not yet stored, and the next is
enqueued as soon as one is stored, so every worker is busy and the latency (enqueue → stored,
from the task's ``enqueued_at`` and the document row's ``finished_at``) is not a queue backlog. Each configuration has its own
tenant, so the content-hash cache never answers a document seen by an earlier configuration.

Recorded per configuration: pages/s and the ratio, p50/p95 latency per document, the worker's
processing time per document, peak RSS of every worker process and of Triton (server and its
python-backend stubs; psutil, sampled every 100 ms), the batches Triton formed and its
server-side queue and compute time per model, the thread counts, and CER (against the
generator's truth lines) and field accuracy (exact, whitespace ignored) by document type and by
clean/degraded — for the reference, CER only. A stage profile (decode, detection, direction,
recognition, Triton round-trips, store) of the worker path follows the configurations.

    python -m bench.pipeline_bench [--pages 24] [--store postgres|sqlite] [--workers 1,2] [--batching on,off]

Prints tables and saves ``bench/results/pipeline_bench_<UTC time>.json`` and
``bench/results/pipeline_bench_latest.json``. Run on demand, never in tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
from ocrfleet_dev import docgen
from ocrfleet_dev.accuracy import edit_distance, normalise

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
KINDS = ("id_card", "bank_statement", "generic")
REFERENCE_THREADS = 2


# -- the labelled set --------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    path: Path
    truth: dict

    @property
    def group(self) -> str:
        """The document type (statements by language) — the rows of the accuracy tables."""
        kind = self.truth["kind"]
        return f"{kind}_{self.truth['language']}" if kind == "bank_statement" else kind

    @property
    def degraded(self) -> bool:
        return bool(self.truth["degradations"])

    @property
    def page_count(self) -> int:
        return len(self.truth["pages"])


def make_set(directory: Path, count: int, seed: int) -> list[Sample]:
    paths = docgen.generate(directory, count, seed=seed, kinds=KINDS, clean_fraction=0.5)
    samples = []
    for path in paths:
        truth = json.loads(path.read_text())
        samples.append(Sample(directory / truth["file"], truth))
    return samples


# -- scoring -----------------------------------------------------------------------------------

def truth_text(page: dict) -> str:
    """A truth page's lines joined in reading order (the order the worker stores lines in)."""
    from ocrfleet_worker.model import order

    boxes = [np.asarray(line["box"], np.float32) for line in page["lines"]]
    return "".join(page["lines"][i]["text"] for i in order.reading_order(boxes))


@dataclass
class Tally:
    """Character errors and field matches, summed over a group of pages."""

    errors: int = 0
    characters: int = 0
    fields_right: int = 0
    fields: int = 0
    pages: int = 0

    def add_text(self, truth: str, read: str) -> None:
        truth, read = normalise(truth), normalise(read)
        self.errors += edit_distance(truth, read)
        self.characters += len(truth)
        self.pages += 1

    def add_fields(self, truth: dict[str, str], read: dict[str, str | None]) -> None:
        for name, value in truth.items():
            self.fields += 1
            self.fields_right += normalise(str(value)) == normalise(read.get(name) or "")

    def summary(self, *, with_fields: bool = True) -> dict:
        out = {"pages": self.pages, "cer": round(self.errors / max(1, self.characters), 4)}
        if with_fields:
            out |= {"fields": self.fields,
                    "field_accuracy": round(self.fields_right / self.fields, 4) if self.fields else None}
        return out


class Scorer:
    """Tallies by document type, by clean/degraded, by both, and overall."""

    def __init__(self) -> None:
        self.tallies: dict[str, Tally] = {}
        self.missed_fields: dict[str, int] = {}

    def _groups(self, sample: Sample) -> list[Tally]:
        state = "degraded" if sample.degraded else "clean"
        keys = ("all", sample.group, state, f"{sample.group}/{state}")
        return [self.tallies.setdefault(k, Tally()) for k in keys]

    def add(self, sample: Sample, page_index: int, text: str, fields: dict[str, str | None] | None) -> None:
        truth = sample.truth["pages"][page_index]
        expected = truth_text(truth)
        for tally in self._groups(sample):
            tally.add_text(expected, text)
            if fields is not None:
                tally.add_fields(truth["fields"], fields)
        if fields is not None:
            for name, value in truth["fields"].items():
                if normalise(str(value)) != normalise(fields.get(name) or ""):
                    key = f"{sample.group}:{name}"
                    self.missed_fields[key] = self.missed_fields.get(key, 0) + 1

    def report(self, *, with_fields: bool = True) -> dict:
        out = {k: self.tallies[k].summary(with_fields=with_fields) for k in sorted(self.tallies)}
        if with_fields:
            out["missed_fields"] = dict(sorted(self.missed_fields.items()))
        return out


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0}
    return {"p50": round(float(np.percentile(values, 50)), 3), "p95": round(float(np.percentile(values, 95)), 3)}


# -- memory ------------------------------------------------------------------------------------


class PeakRss:
    """Samples the RSS of named process trees every ``interval`` seconds; keeps the peaks (MiB)."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.roots: dict[str, int] = {}
        self.peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def watch(self, name: str, pid: int) -> None:
        self.roots[name] = pid

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            for name, pid in list(self.roots.items()):
                try:
                    root = psutil.Process(pid)
                    rss = sum(p.memory_info().rss for p in (root, *root.children(recursive=True)))
                except psutil.Error:
                    continue
                self.peaks[name] = max(self.peaks.get(name, 0.0), rss / 2**20)
            self._stop.wait(self.interval)

    def report(self) -> dict[str, float]:
        return {k: round(v, 1) for k, v in sorted(self.peaks.items())}


# -- the reference pipeline --------------------------------------------------------------------


def _reference_process(files: list[str], threads: int, connection) -> None:
    """In a process of its own: decode files as the worker does, read every page with RapidOCR.

    Receives lists of file indices and answers each with ``[{seconds, texts}]``; ``None`` ends it.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import cv2
    from ocrfleet_worker.documents import DecodeLimits, decode
    from rapidocr_onnxruntime import RapidOCR

    ocr = RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1)
    limits = DecodeLimits()
    warm = decode(Path(files[0]).read_bytes(), limits).pages[0].image
    ocr(cv2.cvtColor(warm, cv2.COLOR_RGB2BGR))
    connection.send("ready")
    while (indices := connection.recv()) is not None:
        documents = []
        for index in indices:
            started = time.perf_counter()
            texts = []
            for page in decode(Path(files[index]).read_bytes(), limits).pages:
                result, _elapse = ocr(cv2.cvtColor(page.image, cv2.COLOR_RGB2BGR))
                texts.append("".join(r[1] for r in result or []))
            documents.append({"seconds": time.perf_counter() - started, "texts": texts})
        connection.send(documents)


class Reference:
    """The reference pipeline in its own process, reading blocks of the set on request."""

    def __init__(self, samples: list[Sample], threads: int = REFERENCE_THREADS) -> None:
        self.samples = samples
        self.threads = threads
        context = multiprocessing.get_context("spawn")
        self._connection, theirs = context.Pipe()
        self.process = context.Process(target=_reference_process,
                                       args=([str(s.path) for s in samples], threads, theirs), daemon=True)
        self.process.start()
        if self._connection.recv() != "ready":
            raise RuntimeError("the reference process did not start")

    def read(self, indices: list[int]) -> tuple[float, list[dict]]:
        """Read the samples at ``indices`` one after another; (wall seconds, per document results)."""
        started = time.perf_counter()
        self._connection.send(indices)
        documents = self._connection.recv()
        return time.perf_counter() - started, documents

    def stop(self) -> None:
        self._connection.send(None)
        self.process.join(30)


def reference_summary(samples: list[Sample], seconds: float, documents: list[dict], peak_rss: float | None,
                      threads: int) -> dict:
    scorer = Scorer()
    for sample, document in zip(samples, documents, strict=True):
        for index, text in enumerate(document["texts"]):
            scorer.add(sample, index, text, None)
    pages = sum(len(d["texts"]) for d in documents)
    return {
        "threads": threads,
        "pages": pages,
        "seconds": round(seconds, 2),
        "pages_per_s": round(pages / seconds, 4),
        "latency_s": percentiles([d["seconds"] for d in documents]),
        "peak_rss_mib": peak_rss,
        "accuracy": scorer.report(with_fields=False),
    }


# -- the data plane ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    workers: int
    batching: bool
    triton_threads: int
    worker_threads: int
    max_batch_size: int = 8
    max_queue_delay_us: int = 100_000

    @property
    def name(self) -> str:
        return f"{self.workers}w_batching_{'on' if self.batching else 'off'}"


@dataclass
class Services:
    redis_url: str
    database_url: str
    blob_root: Path
    store_kind: str
    log_dir: Path
    blobs: dict[str, object] = field(default_factory=dict)


def start_worker(name: str, config: Config, cluster: str, services: Services, triton_url: str) -> subprocess.Popen:
    threads = str(config.worker_threads)
    env = {
        **os.environ,
        "OCRFLEET_CLUSTER": cluster, "OCRFLEET_REDIS_URL": services.redis_url,
        "OCRFLEET_DATABASE_URL": services.database_url, "OCRFLEET_BLOB_ROOT": str(services.blob_root),
        "OCRFLEET_ENGINE": "triton", "OCRFLEET_TRITON_URL": triton_url, "OCRFLEET_CONSUMER_NAME": name,
        "OCRFLEET_BLOCK_MS": "50", "OCRFLEET_LOG_LEVEL": "WARNING",
        "OCRFLEET_METRICS_PORT": "0",  # several workers on one host: no exposition port to share
        # the worker's own numeric work (OpenCV, numpy) gets its share of the cores
        "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
        "OPENCV_FOR_THREADS_NUM": threads, "OMP_WAIT_POLICY": "PASSIVE",
    }
    log = open(services.log_dir / f"{cluster}-{name}.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-m", "ocrfleet_worker"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)


def _triton_server_stats(server) -> dict[str, dict[str, float]]:
    """Per model: requests, executions, and server-side queue and compute time (ms, summed)."""
    import httpx

    response = httpx.get(f"{server.http_url}/v2/models/stats", timeout=5.0)
    response.raise_for_status()
    out = {}
    for entry in response.json().get("model_stats", []):
        stats = entry.get("inference_stats", {})

        def ms(key: str, stats=stats) -> float:
            return int(stats.get(key, {}).get("ns", 0)) / 1e6

        out[entry["name"]] = {
            "requests": int(stats.get("success", {}).get("count", 0)),
            "executions": int(entry.get("execution_count", 0)),
            "queue_ms": ms("queue"),
            "compute_ms": ms("compute_input") + ms("compute_infer") + ms("compute_output"),
        }
    return out


def _stats_delta(before: dict, after: dict) -> dict:
    out = {}
    for model, a in sorted(after.items()):
        b = before.get(model, {})
        d = {k: a[k] - b.get(k, 0) for k in a}
        out[model] = {"requests": d["requests"], "executions": d["executions"],
                      "requests_per_execution": round(d["requests"] / max(1, d["executions"]), 2),
                      "queue_ms_total": round(d["queue_ms"], 1), "compute_ms_total": round(d["compute_ms"], 1)}
    return out


def run_config(config: Config, samples: list[Sample], services: Services, redis_client, store,
               reference: Reference, *, block: int = 4, profile_pages: int = 0) -> dict:
    """One configuration: its own Triton, its own worker processes, every sample through the queue.

    The set goes in blocks of ``block`` documents, each read first by the reference and then by
    the data plane, so both see the same background load; pages/s sums the blocks' times.
    """
    from ocrfleet_dev.triton import TritonServer, TritonServerOptions
    from ocrfleet_worker.triton_repository import TritonModelSettings
    from sqlalchemy import select

    from ocrfleet.progress import JobProgress
    from ocrfleet.queue import Task, WorkQueue
    from ocrfleet.store import DocumentRow

    cluster = f"bench-{config.name}-{uuid.uuid4().hex[:6]}".replace("_", "-")
    tenant, job = cluster, f"{cluster}-job"
    settings = TritonModelSettings(dynamic_batching=config.batching, torch_threads=config.triton_threads,
                                   max_batch_size=config.max_batch_size,
                                   max_queue_delay_us=config.max_queue_delay_us)
    queue = WorkQueue(redis_client, cluster)
    queue.ensure_groups()
    progress = JobProgress(redis_client, cluster)
    enqueued_at: dict[str, float] = {}
    reference_s, busy_s = 0.0, 0.0
    reference_docs: list[dict] = []
    profile = None
    with TritonServer(TritonServerOptions(settings=settings)) as server, PeakRss() as memory:
        memory.watch("triton", server.process.proc.pid)
        workers = [start_worker(f"worker-{i + 1}", config, cluster, services, server.grpc_url)
                   for i in range(config.workers)]
        for i, proc in enumerate(workers):
            memory.watch(f"worker-{i + 1}", proc.pid)
        try:
            def enqueue(sample: Sample, *, tenant_: str, job_: str) -> str:
                blob = services.blobs[sample.path.name]
                doc_id = uuid.uuid4().hex
                enqueued_at[doc_id] = time.time()
                queue.enqueue(Task(document_id=doc_id, tenant=tenant_, blob=blob.ref, sha256=blob.sha256,
                                   job=job_, filename=sample.path.name, enqueued_at=enqueued_at[doc_id]))
                return doc_id

            def wait_done(job_: str, n: int, timeout: float) -> None:
                deadline = time.monotonic() + timeout
                while progress.read(job_).done < n:
                    for i, proc in enumerate(workers):
                        if proc.poll() is not None:
                            log = services.log_dir / f"{cluster}-worker-{i + 1}.log"
                            tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
                            raise RuntimeError(f"worker-{i + 1} exited with {proc.returncode}; its log ends:\n{tail}")
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{job_}: {progress.read(job_).done}/{n} done after {timeout:.0f} s")
                    time.sleep(0.01)  # polling Redis counters written by other processes

            # warm-up: every worker connects and every model sees its first request (own tenant, no cache)
            warm_job = f"{job}-warmup"
            for i in range(2 * config.workers):
                enqueue(samples[i % len(samples)], tenant_=f"{tenant}-warmup", job_=warm_job)
            wait_done(warm_job, 2 * config.workers, 300)

            stats_before = _triton_server_stats(server)
            window = config.workers
            ids: list[str] = []
            for number, start in enumerate(range(0, len(samples), block)):
                indices = list(range(start, min(start + block, len(samples))))

                def by_reference(indices=indices) -> None:
                    nonlocal reference_s
                    seconds, documents = reference.read(indices)
                    reference_s += seconds
                    reference_docs.extend(documents)

                def by_data_plane(indices=indices) -> None:
                    nonlocal busy_s
                    block_ids: list[str] = []
                    block_started = time.time()
                    for i in indices:
                        block_ids.append(enqueue(samples[i], tenant_=tenant, job_=job))
                        wait_done(job, len(ids) + len(block_ids) - window + 1, 600)
                    wait_done(job, len(ids) + len(block_ids), 600)
                    with store.session() as s:
                        last = max(s.get(DocumentRow, i).finished_at.timestamp() for i in block_ids)
                    busy_s += last - block_started
                    ids.extend(block_ids)

                for run in ((by_reference, by_data_plane) if number % 2 == 0 else (by_data_plane, by_reference)):
                    run()
            stats_after = _triton_server_stats(server)
            if config.workers == 1 and not config.batching and profile_pages:
                profile = profile_stages(samples[:profile_pages], server, store)
        finally:
            for proc in workers:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in workers:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        peaks = memory.report()
        startup_s = round(server.startup_s or 0.0, 2)

    with store.session() as s:
        rows = {r.id: r for r in s.scalars(select(DocumentRow).where(DocumentRow.id.in_(ids)))}
        s.expunge_all()
    failed = [i for i in ids if rows[i].status != "succeeded"]
    scorer = Scorer()
    pages = 0
    processing = []
    for sample, doc_id in zip(samples, ids, strict=True):
        result = store.get(doc_id)
        pages += len(result.pages)
        processing.append((rows[doc_id].processing_ms or 0.0) / 1000)
        for index, page in enumerate(result.pages[: sample.page_count]):
            scorer.add(sample, index, "".join(line.text for line in page.lines),
                       {f.name: f.value for f in page.fields})
    latencies = [rows[i].finished_at.timestamp() - enqueued_at[i] for i in ids]
    elapsed = busy_s
    return {
        "config": config.__dict__ | {"name": config.name, "in_flight_window": window},
        "triton_settings": settings.model_dump(),
        "triton_startup_s": startup_s,
        "documents": len(ids),
        "failed": len(failed),
        "pages": pages,
        "seconds": round(elapsed, 2),
        "pages_per_s": round(pages / elapsed, 4),
        "latency_s": percentiles(latencies),
        "processing_s": percentiles(processing),
        "peak_rss_mib": peaks,
        "triton_models": _stats_delta(stats_before, stats_after),
        "accuracy": scorer.report(),
        "stage_profile": profile,
        "reference": reference_summary(samples, reference_s, reference_docs, None, reference.threads),
        "ratio_to_reference": round(pages / elapsed / (sum(len(d["texts"]) for d in reference_docs) / reference_s), 3),
    }


# -- where the time goes -----------------------------------------------------------------------


class TimedNetworks:
    """The engine's networks with every request timed (client side: encode, gRPC, server, decode)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def _timed(self, role: str, batch: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        try:
            return getattr(self.inner, role)(batch)
        finally:
            self.seconds[role] = self.seconds.get(role, 0.0) + time.perf_counter() - started
            self.calls[role] = self.calls.get(role, 0) + 1

    def detect(self, batch: np.ndarray) -> np.ndarray:
        return self._timed("detect", batch)

    def classify(self, batch: np.ndarray) -> np.ndarray:
        return self._timed("classify", batch)

    def recognize(self, batch: np.ndarray) -> np.ndarray:
        return self._timed("recognize", batch)


def profile_stages(samples: list[Sample], server, store) -> dict:
    """The worker path's stages, one document at a time in this process, against ``server``.

    Per page (median ms): decode; detection, direction and recognition as the pipeline times them
    (pre/post-processing included), the Triton round-trips inside each (and how many), Triton's
    own queue and compute time, field extraction; per document: the store's writes.
    """
    from ocrfleet_worker.documents import DecodeLimits, decode
    from ocrfleet_worker.engine import TritonEngine
    from ocrfleet_worker.pipeline import engine_image, page_result

    from ocrfleet.store import DocumentRow

    engine = TritonEngine(server.grpc_url)
    timed = TimedNetworks(engine.pipeline.networks)
    engine.pipeline.networks = timed
    limits = DecodeLimits()
    per_page: dict[str, list[float]] = {}
    per_document: dict[str, list[float]] = {}
    before = _triton_server_stats(server)
    pages = 0

    def note(table: dict[str, list[float]], key: str, seconds: float) -> None:
        table.setdefault(key, []).append(seconds * 1000)

    for sample in samples:
        data = sample.path.read_bytes()
        tick = time.perf_counter()
        decoded = decode(data, limits)
        note(per_document, "decode", time.perf_counter() - tick)
        results = []
        for page in decoded.pages:
            seconds_before, calls_before = dict(timed.seconds), dict(timed.calls)
            tick = time.perf_counter()
            read = engine.read_page(engine_image(page.image))
            note(per_page, "read_page", time.perf_counter() - tick)
            for stage in ("detect", "classify", "recognize"):
                per_page.setdefault(stage, []).append(read.timings_ms.get(stage, 0.0))
                rt = timed.seconds.get(stage, 0.0) - seconds_before.get(stage, 0.0)
                note(per_page, f"{stage}_triton_roundtrips", rt)
                per_page.setdefault(f"{stage}_requests", []).append(
                    (timed.calls.get(stage, 0) - calls_before.get(stage, 0)) / 1000)
            tick = time.perf_counter()
            results.append(page_result(page.index, page.image, read))
            note(per_page, "classify_and_extract_fields", time.perf_counter() - tick)
            pages += 1
        doc_id = f"profile-{uuid.uuid4().hex}"
        tick = time.perf_counter()
        store.add_document(DocumentRow(id=doc_id, tenant="profile", sha256=uuid.uuid4().hex, status="queued"))
        store.mark_processing(doc_id)
        store.save_result(doc_id, results, document_type=results[0].document_type, processing_ms=0.0)
        note(per_document, "store_writes", time.perf_counter() - tick)
    server_side = _stats_delta(before, _triton_server_stats(server))
    engine.close()
    median = {k: round(statistics.median(v), 1) for k, v in per_page.items() if not k.endswith("_requests")}
    requests = {k.removesuffix("_requests"): round(statistics.mean(v) * 1000, 1)
                for k, v in per_page.items() if k.endswith("_requests")}
    mean = {k: round(statistics.mean(v), 1) for k, v in per_page.items() if not k.endswith("_requests")}
    return {
        "documents": len(samples),
        "pages": pages,
        "page_ms_median": median,
        "page_ms_mean": mean,
        "requests_per_page_mean": requests,
        "document_ms_mean": {k: round(statistics.mean(v), 1) for k, v in per_document.items()},
        "triton_server_ms_per_page_mean": {
            m: {"queue": round(v["queue_ms_total"] / pages, 1), "compute": round(v["compute_ms_total"] / pages, 1),
                "requests": round(v["requests"] / pages, 1)} for m, v in server_side.items()},
    }


# -- the run -----------------------------------------------------------------------------------


def plan(workers: list[int], batching: list[bool], cores: int, triton_threads: int | None) -> list[Config]:
    """Thread counts per configuration: the cores are shared out, never oversubscribed.

    One worker talks to Triton synchronously (decode, then detection, then its own
    post-processing, ...), so Triton's models and the worker never compute at once and each may
    use every core. With ``n`` workers, ``n`` requests can be in Triton's models at once and
    ``n`` workers post-process at once, so each gets ``cores / n``.
    """
    configs = []
    for n in workers:
        share = max(1, cores // n)
        for on in batching:
            configs.append(Config(workers=n, batching=on, triton_threads=triton_threads or share,
                                  worker_threads=share))
    return configs


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=24, help="documents in the set (one page each)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--store", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--workers", default="1,2", help="worker counts to run, comma-separated")
    parser.add_argument("--batching", default="on,off", help="Triton dynamic batching: on, off or both")
    parser.add_argument("--triton-threads", type=int, help="torch threads per Triton instance (default: cores / workers)")
    parser.add_argument("--block", type=int, default=4,
                        help="documents per block; the reference and the data plane alternate block by block")
    parser.add_argument("--profile-pages", type=int, default=12,
                        help="documents in the stage profile (with 1 worker, batching off); 0: none")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    import redis
    from ocrfleet_dev.localproc import PostgresServer, RedisServer

    from ocrfleet.blobs import LocalBlobStore
    from ocrfleet.store import ResultStore, make_engine

    cores = len(os.sched_getaffinity(0))
    configs = plan([int(w) for w in args.workers.split(",")],
                   [b == "on" for b in args.batching.split(",") if b in ("on", "off")], cores, args.triton_threads)
    workdir = Path(tempfile.mkdtemp(prefix="ocrfleet-pipeline-bench-"))
    report: dict = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.pipeline_bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpus": cores, "load_avg_before": [round(x, 2) for x in os.getloadavg()],
                    "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
                    "python": sys.version.split()[0], "platform": platform.platform()},
        "store": args.store,
        "redis": "redis-server, AOF appendfsync always",
        "reference": f"rapidocr_onnxruntime.RapidOCR, {REFERENCE_THREADS} intra-op threads, own process, "
                     "same files decoded by ocrfleet_worker.documents.decode",
        "notes": [
            "pages_per_s: pages stored / (last finished_at - first enqueue); workers and Triton warmed up first",
            "ratio: our pages/s over the reference's, measured in alternating blocks of the same documents",
            "latency: enqueue -> stored per document, closed loop with one document in flight per worker",
            "processing: the worker's decode-to-result time per document (stored processing_ms)",
            "peak_rss_mib: triton = tritonserver plus its python-backend stubs; each worker process alone",
            "accuracy: CER over whitespace-free text vs the generator's truth lines in reading order; fields "
            "exact with whitespace ignored; bank statements split by language",
        ],
    }
    print(f"generating {args.pages} documents (seed {args.seed}) ...", flush=True)
    samples = make_set(workdir / "set", args.pages, args.seed)
    report["set"] = [f"{s.path.name}[{','.join(s.truth['degradations']) or 'clean'}]" for s in samples]
    (workdir / "logs").mkdir()
    postgres = None
    try:
        with RedisServer() as redis_server:
            if args.store == "postgres":
                postgres = PostgresServer().start()
                database_url = postgres.url
            else:
                database_url = f"sqlite:///{workdir / 'results.db'}"
            store = ResultStore(make_engine(database_url))
            store.create_schema()
            blobs = LocalBlobStore(workdir / "blobs")
            services = Services(redis_server.url, database_url, blobs.root, args.store, workdir / "logs")
            services.blobs = {s.path.name: blobs.put_bytes(s.path.read_bytes()) for s in samples}
            client = redis.Redis.from_url(redis_server.url)
            report["configurations"] = {}
            with PeakRss() as reference_memory:
                reference = Reference(samples)
                reference_memory.watch("reference", reference.process.pid)
                try:
                    for config in configs:
                        print(f"{config.name}: Triton torch threads {config.triton_threads}, worker threads "
                              f"{config.worker_threads}, blocks of {args.block} alternating with the reference ...",
                              flush=True)
                        ours = run_config(config, samples, services, client, store, reference, block=args.block,
                                          profile_pages=args.profile_pages)
                        print(f"  ours {ours['pages_per_s']:.3f} pages/s, reference "
                              f"{ours['reference']['pages_per_s']:.3f}, ratio {ours['ratio_to_reference']:.2f}",
                              flush=True)
                        report["configurations"][config.name] = ours
                finally:
                    reference.stop()
            report["reference_peak_rss_mib"] = reference_memory.report().get("reference")
            client.close()
    finally:
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    report["machine"]["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"pipeline_bench_{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.json"
    text = json.dumps(report, indent=1, ensure_ascii=False)
    path.write_text(text)
    (args.out / "pipeline_bench_latest.json").write_text(text)
    print_report(report)
    print(f"saved {path} (and pipeline_bench_latest.json)")
    return report


def print_report(report: dict) -> None:
    configs = report["configurations"]
    print()
    print(f"{'configuration':22} {'threads t/w':>11} {'pages/s':>8} {'ref p/s':>8} {'ratio':>6} "
          f"{'p50 s':>6} {'p95 s':>6} {'ref p50':>7} {'ref p95':>7} {'triton MiB':>10} {'worker MiB':>10} "
          f"{'rec req/exec':>12}")
    for name, c in configs.items():
        ref = c["reference"]
        workers = [v for k, v in c["peak_rss_mib"].items() if k.startswith("worker")]
        print(f"{name:22} {c['config']['triton_threads']:>5}/{c['config']['worker_threads']:<5} "
              f"{c['pages_per_s']:8.3f} {ref['pages_per_s']:8.3f} {c['ratio_to_reference']:6.2f} "
              f"{c['latency_s']['p50']:6.2f} {c['latency_s']['p95']:6.2f} {ref['latency_s']['p50']:7.2f} "
              f"{ref['latency_s']['p95']:7.2f} {c['peak_rss_mib'].get('triton', 0):10.0f} "
              f"{max(workers, default=0):10.0f} {c['triton_models'].get('ocr_rec', {}).get('requests_per_execution', 0):12.2f}")
    first = next(iter(configs.values()))
    ref_rss = report.get("reference_peak_rss_mib")
    print(f"reference process peak RSS {ref_rss} MiB")
    print()
    groups = [k for k in first["accuracy"] if k != "missed_fields"]
    print(f"{'group':32} {'pages':>5} {'CER ours':>8} {'fields':>7} {'CER ref':>8}")
    for group in groups:
        ours = first["accuracy"][group]
        ref = first["reference"]["accuracy"].get(group, {})
        fields = "-" if ours.get("field_accuracy") is None else f"{ours['field_accuracy']:.3f}"
        print(f"{group:32} {ours['pages']:5d} {ours['cer']:8.4f} {fields:>7} {ref.get('cer', float('nan')):8.4f}")
    if first["accuracy"].get("missed_fields"):
        print("fields missed (group:field count):", first["accuracy"]["missed_fields"])
    for name, c in configs.items():
        if c.get("stage_profile"):
            p = c["stage_profile"]
            print()
            print(f"stage profile ({name}, {p['documents']} documents, one at a time in-process):")
            print("  per page, median ms:", p["page_ms_median"])
            print("  per page, mean ms:", p["page_ms_mean"])
            print("  Triton requests per page:", p["requests_per_page_mean"])
            print("  Triton server side per page (ms):", p["triton_server_ms_per_page_mean"])
            print("  per document, mean ms:", p["document_ms_mean"])


if __name__ == "__main__":
    main()
