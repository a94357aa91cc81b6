"""The OCR model against the reference pipeline, on the same pages in the same run.

Pages come from the labelled document generator (:mod:`ocrfleet_dev.docgen`: ID cards, Chinese and
English bank statements, generic pages; clean and degraded). Each page is read by

- the reference pipeline (``rapidocr_onnxruntime.RapidOCR``, onnxruntime, same thread count);
- ocrfleet's pipeline with the networks as TorchScript in process (``LocalTorchEngine``);
- ocrfleet's pipeline with the networks on a local Triton server (``TritonEngine``), once with
  dynamic batching on and once off, each with one client and with ``--clients`` at once.

Engines alternate page by page, so both see the same machine load (this machine is shared).
Recorded: pages/s and its ratio to the reference measured beside it, p50/p95 page latency,
per-stage latency (detection, direction, recognition), CER against the generator's truth by
document type and clean/degraded, Triton's start-up time, the batches Triton formed
(inferences per execution) and the Triton processes' memory.

    python -m bench.model_bench [--pages 12] [--threads 2] [--triton on,off] [--clients 2]

Prints a summary and saves JSON under ``bench/results/``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import os
import platform
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import psutil
from ocrfleet_dev import docgen
from ocrfleet_dev.accuracy import cer
from ocrfleet_worker.model import order

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class BenchPage:
    image: np.ndarray  # RGB
    truth: str
    kind: str
    degraded: bool
    rotation: int
    label: str


def make_pages(count: int, seed: int) -> list[BenchPage]:
    rng = random.Random(seed)
    kinds = ("id_card", "bank_statement", "generic")
    pages = []
    for index in range(count):
        doc = docgen.make_document(index, kinds[index % len(kinds)], rng)
        degradations = docgen.choose_degradations(rng, clean_fraction=0.5)
        canvas = doc.pages[0]
        image, rotation, _ = docgen.degrade(canvas.image, degradations, rng)
        boxes = [np.asarray(line.box, np.float32) for line in canvas.lines]
        truth = "".join(canvas.lines[i].text for i in order.reading_order(boxes))
        pages.append(BenchPage(np.asarray(image.convert("RGB")), truth, doc.kind, bool(degradations), rotation,
                               f"{doc.name}[{','.join(degradations) or 'clean'}]"))
    return pages


class Reference:
    name = "reference"

    def __init__(self, threads: int) -> None:
        from rapidocr_onnxruntime import RapidOCR

        self.ocr = RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1)

    def read(self, image: np.ndarray) -> tuple[str, dict[str, float]]:
        result, elapse = self.ocr(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        text = "".join(r[1] for r in result or [])
        stages = dict(zip(("detect", "classify", "recognize"), (1000 * e for e in elapse or []), strict=False))
        return text, stages


class Ours:
    def __init__(self, name: str, engine) -> None:
        self.name = name
        self.engine = engine

    def read(self, image: np.ndarray) -> tuple[str, dict[str, float]]:
        page = self.engine.read_page(image)
        stages = {k: v for k, v in page.timings_ms.items() if k != "total"}
        return "".join(line.text for line in page.lines), stages


def timed(engine, page: BenchPage) -> dict:
    started = time.perf_counter()
    text, stages = engine.read(page.image)
    return {"seconds": time.perf_counter() - started, "stages_ms": stages, "cer": cer(page.truth, text)}


def interleaved(engines: list, pages: list[BenchPage]) -> dict[str, list[dict]]:
    """Every engine on every page, alternating engines page by page (after one warm-up page)."""
    for engine in engines:
        engine.read(pages[0].image)
    runs: dict[str, list[dict]] = {e.name: [] for e in engines}
    for i, page in enumerate(pages):
        for engine in (engines if i % 2 == 0 else engines[::-1]):
            runs[engine.name].append(timed(engine, page))
    return runs


def summarise(runs: list[dict], pages: list[BenchPage]) -> dict:
    seconds = [r["seconds"] for r in runs]
    by_group: dict[str, list[float]] = {}
    for run, page in zip(runs, pages, strict=True):
        by_group.setdefault(f"{page.kind}/{'degraded' if page.degraded else 'clean'}", []).append(run["cer"])
    stages = {k: round(statistics.median(r["stages_ms"].get(k, 0.0) for r in runs), 1)
              for k in ("detect", "classify", "recognize")}
    return {
        "pages": len(runs),
        "pages_per_s": round(len(runs) / sum(seconds), 4),
        "latency_s": {"p50": round(float(np.percentile(seconds, 50)), 3),
                      "p95": round(float(np.percentile(seconds, 95)), 3)},
        "stage_ms_median": stages,
        "cer_mean": round(statistics.mean(r["cer"] for r in runs), 4),
        "cer_by_group": {k: round(statistics.mean(v), 4) for k, v in sorted(by_group.items())},
    }


def concurrent_throughput(make_engine, pages: list[BenchPage], clients: int) -> dict:
    engines = [make_engine() for _ in range(clients)]
    queue = list(pages)
    started = time.perf_counter()

    def client(engine) -> int:
        done = 0
        while queue:
            try:
                page = queue.pop()
            except IndexError:
                break
            engine.read(page.image)
            done += 1
        return done

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        done = sum(pool.map(client, engines))
    return {"clients": clients, "pages": done, "pages_per_s": round(done / (time.perf_counter() - started), 4)}


def triton_phase(batching: bool, pages: list[BenchPage], reference: Reference, threads: int, clients: int) -> dict:
    from ocrfleet_dev.triton import TritonServer, TritonServerOptions
    from ocrfleet_worker.engine import TritonEngine
    from ocrfleet_worker.triton_repository import TritonModelSettings

    settings = TritonModelSettings(dynamic_batching=batching, torch_threads=threads)
    with TritonServer(TritonServerOptions(settings=settings)) as server:
        name = f"triton_batching_{'on' if batching else 'off'}"
        ours = Ours(name, TritonEngine(server.grpc_url))
        runs = interleaved([reference, ours], pages)
        before = server.model_statistics()
        together = concurrent_throughput(lambda: Ours(name, TritonEngine(server.grpc_url)), pages, clients)
        after = server.model_statistics()
        memory = sum(p.memory_info().rss for p in _tree(server.process.proc.pid)) / 2**20
        batches = {m: round((after[m]["requests"] - before[m]["requests"])
                            / max(1, after[m]["executions"] - before[m]["executions"]), 2) for m in after}
        return {
            "settings": settings.model_dump(),
            "startup_s": round(server.startup_s or 0.0, 2),
            "reference": summarise(runs["reference"], pages),
            "ours": summarise(runs[name], pages),
            "concurrent": together,
            "requests_per_execution_concurrent": batches,
            "triton_rss_mb": round(memory, 1),
        }


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def ratio(ours: dict, reference: dict) -> float:
    return round(ours["pages_per_s"] / reference["pages_per_s"], 3)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="torch / onnxruntime threads (the CPU limit)")
    parser.add_argument("--triton", default="on,off", help="dynamic batching settings to run: on, off, or none")
    parser.add_argument("--clients", type=int, default=2)
    args = parser.parse_args(argv)

    from ocrfleet_worker.engine import LocalTorchEngine
    from ocrfleet_worker.model.networks import TorchSettings

    print(f"{args.pages} pages, {args.threads} threads per engine, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    pages = make_pages(args.pages, args.seed)
    reference = Reference(args.threads)
    local = Ours("local_torch", LocalTorchEngine(TorchSettings(threads=args.threads)))
    runs = interleaved([reference, local], pages)
    report: dict = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "load_avg": os.getloadavg(), "python": sys.version.split()[0],
                    "platform": platform.platform(), "device": local.engine.networks.device},
        "threads": args.threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "pages": [p.label for p in pages],
        "local": {"reference": summarise(runs["reference"], pages), "ours": summarise(runs["local_torch"], pages)},
    }
    report["local"]["ratio_pages_per_s"] = ratio(report["local"]["ours"], report["local"]["reference"])
    for mode in [m for m in args.triton.split(",") if m in ("on", "off")]:
        phase = triton_phase(mode == "on", pages, reference, args.threads, args.clients)
        phase["ratio_pages_per_s"] = ratio(phase["ours"], phase["reference"])
        report[f"triton_batching_{mode}"] = phase
    report["machine"]["load_avg_after"] = os.getloadavg()

    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"model_bench_{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(report, indent=1, ensure_ascii=False))
    print_summary(report)
    print(f"saved {path}")
    return report


def print_summary(report: dict) -> None:
    rows = [("local torch", report["local"]["ours"], report["local"]["reference"], report["local"]["ratio_pages_per_s"])]
    for mode in ("on", "off"):
        phase = report.get(f"triton_batching_{mode}")
        if phase:
            rows.append((f"triton batching {mode} (start {phase['startup_s']} s)", phase["ours"], phase["reference"],
                         phase["ratio_pages_per_s"]))
    print(f"{'engine':38} {'pages/s':>8} {'ref p/s':>8} {'ratio':>6} {'p50 s':>6} {'p95 s':>6} {'CER':>6} {'ref CER':>7}")
    for name, ours, ref, r in rows:
        print(f"{name:38} {ours['pages_per_s']:8.3f} {ref['pages_per_s']:8.3f} {r:6.2f} "
              f"{ours['latency_s']['p50']:6.2f} {ours['latency_s']['p95']:6.2f} {ours['cer_mean']:6.3f} {ref['cer_mean']:7.3f}")
    print("stages (median ms) ours:", report["local"]["ours"]["stage_ms_median"],
          "reference:", report["local"]["reference"]["stage_ms_median"])
    print("CER by group, ours:", report["local"]["ours"]["cer_by_group"])
    print("CER by group, reference:", report["local"]["reference"]["cer_by_group"])
    for mode in ("on", "off"):
        phase = report.get(f"triton_batching_{mode}")
        if phase:
            print(f"triton batching {mode}: {phase['concurrent']['clients']} clients "
                  f"{phase['concurrent']['pages_per_s']} pages/s; requests per execution "
                  f"{phase['requests_per_execution_concurrent']}; RSS {phase['triton_rss_mb']} MB")


if __name__ == "__main__":
    main()
