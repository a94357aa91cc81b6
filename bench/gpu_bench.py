"""The OCR networks on a GPU: batch 1 against batches of 2-16, in process and through Triton.

What a lent GPU machine runs (``bench/gpu.sh`` prepares it; ``bench/gpu_pack.sh`` builds what
travels there). Three parts, each bounded by what is left of ``--budget-s``:

1. **networks**: each converted network (detection on 736 x 736 pages, direction on 48 x 192
   crops, recognition on 48 x 320 strips) at batch 1, 2, 4, 8 and 16, in process on the device:
   items/s, p50/p95 per batch call (synchronised), and the device memory the batch took at its
   peak (``torch.cuda.max_memory_allocated``);
2. **pages**: the whole pipeline (``LocalTorchEngine``) over the labelled pages, one page at a
   time: pages/s, p50/p95, CER against the truth, so speed and accuracy sit side by side;
3. **triton**: the pipeline against a Triton server whose models run ``KIND_GPU`` with dynamic
   batching (max batch 8) at each ``--delays-us`` (0 = batching off), ``--clients`` pages at
   once: pages/s, p95 and the inferences per network execution Triton formed.

On a machine without a GPU it runs the same code on the CPU (``--device cpu``, to check the
script; the figures then say nothing about a GPU).

    python -m bench.gpu_bench [--pages-dir DIR] [--device auto] [--budget-s 420] [--out DIR]

Saves ``gpu_bench_<when>.json`` in ``--out`` (default bench/results/).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
#: Each network's input per item, as served (ocrfleet_worker.model.ends): uint8 pages, float32 strips.
SHAPES = {"det": (736, 736, 3), "cls": (3, 48, 192), "rec": (3, 48, 320)}
BATCHES = (1, 2, 4, 8, 16)


class Budget:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(values), q)), 4)


def device_info(device: str) -> dict:
    import torch

    info = {"device": device, "torch": torch.__version__, "python": platform.python_version(),
            "cpus": os.cpu_count()}
    if device == "cuda":
        info |= {"gpu": torch.cuda.get_device_name(0), "cuda": torch.version.cuda,
                 "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)}
        try:
            info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                            capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            info["driver"] = "nvidia-smi not found"
    return info


def networks_part(networks, device: str, budget: Budget, *, repeats: int) -> dict:
    """Each network at each batch size: items/s, latency per call, peak device memory."""
    import torch

    out: dict = {}
    rng = np.random.default_rng(0)
    for role, shape in SHAPES.items():
        module = networks._modules[role]
        out[role] = {}
        for batch in BATCHES:
            if budget.left() < 5:
                out[role][str(batch)] = "skipped: out of time"
                continue
            if role == "det":
                x = torch.from_numpy(rng.integers(0, 256, (batch, *shape), dtype=np.uint8)).to(device)
            else:
                x = torch.from_numpy(rng.random((batch, *shape), dtype=np.float32)).to(device)
            if device == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
            times = []
            with torch.inference_mode():
                for i in range(repeats + 2):  # two warm-ups
                    started = time.perf_counter()
                    module(x)
                    if device == "cuda":
                        torch.cuda.synchronize()
                    if i >= 2:
                        times.append(time.perf_counter() - started)
            row = {"items_per_s": round(batch / statistics.median(times), 2),
                   "call_ms": {"p50": round(1000 * percentile(times, 50), 2),
                               "p95": round(1000 * percentile(times, 95), 2)}, "calls": len(times)}
            if device == "cuda":
                row["peak_memory_mib"] = round((torch.cuda.max_memory_allocated() - base) / 2**20, 1)
            out[role][str(batch)] = row
        ones = out[role].get("1")
        for batch in BATCHES[1:]:
            row = out[role].get(str(batch))
            if isinstance(row, dict) and isinstance(ones, dict):
                row["speedup_vs_batch_1"] = round(row["items_per_s"] / ones["items_per_s"], 2)
    return out


def load_pages(pages_dir: Path | None, count: int) -> list[dict]:
    """The labelled pages: from ``pages_dir`` (written by ``--write-pages``) or generated here."""
    import cv2

    if pages_dir is not None:
        index = json.loads((pages_dir / "pages.json").read_text(encoding="utf-8"))
        return [{**p, "image": cv2.cvtColor(cv2.imread(str(pages_dir / p["file"])), cv2.COLOR_BGR2RGB)}
                for p in index[:count]]
    from bench.model_bench import make_pages

    return [{"file": "", "truth": p.truth, "kind": p.kind, "degraded": p.degraded, "image": p.image}
            for p in make_pages(count, seed=7)]


def write_pages(out: Path, count: int) -> None:
    """Generate the labelled pages once (here, where the fonts are) for a machine that has none."""
    import cv2

    out.mkdir(parents=True, exist_ok=True)
    index = []
    for i, page in enumerate(load_pages(None, count)):
        name = f"page-{i:02d}.jpg"
        cv2.imwrite(str(out / name), cv2.cvtColor(page["image"], cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        index.append({k: v for k, v in page.items() if k != "image"} | {"file": name})
    (out / "pages.json").write_text(json.dumps(index, ensure_ascii=False, indent=1), encoding="utf-8")


def read_pages(engine, pages: list[dict], budget: Budget, *, clients: int = 1) -> dict:
    """Every page through ``engine`` (``clients`` at once): pages/s, latency, CER."""
    from ocrfleet_dev.accuracy import cer

    engine.read_page(pages[0]["image"])  # warm-up
    results: list[tuple[float, float]] = []

    def one(page: dict) -> tuple[float, float] | None:
        if budget.left() < 3:
            return None
        started = time.perf_counter()
        read = engine.read_page(page["image"])
        return time.perf_counter() - started, cer(page["truth"], "".join(line.text for line in read.lines))

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = [r for r in pool.map(one, pages) if r is not None]
    wall = time.perf_counter() - started
    if not results:
        return {"pages": 0, "note": "out of time"}
    seconds = [r[0] for r in results]
    return {"pages": len(results), "clients": clients, "pages_per_s": round(len(results) / wall, 3),
            "latency_s": {"p50": percentile(seconds, 50), "p95": percentile(seconds, 95)},
            "cer_mean": round(statistics.mean(r[1] for r in results), 4)}


def triton_part(pages: list[dict], device: str, delays_us: list[int], clients: int, budget: Budget) -> dict:
    from ocrfleet_dev.triton import TritonServer, TritonServerOptions
    from ocrfleet_worker.engine import TritonEngine
    from ocrfleet_worker.triton_repository import TritonModelSettings

    out: dict = {}
    for delay in delays_us:
        key = f"delay_{delay}us" if delay else "batching_off"
        if budget.left() < 45:
            out[key] = "skipped: out of time"
            continue
        settings = TritonModelSettings(kind="gpu" if device == "cuda" else "cpu", max_batch_size=8,
                                       dynamic_batching=delay > 0, max_queue_delay_us=delay,
                                       torch_threads=1 if device == "cuda" else 2)
        try:
            with TritonServer(TritonServerOptions(settings=settings)) as server:
                engine = TritonEngine(server.grpc_url)
                row = {"startup_s": round(server.startup_s or 0, 1), "single": read_pages(engine, pages, budget),
                       "concurrent": read_pages(engine, pages, budget, clients=clients)}
                stats = server.model_statistics()
                row["inferences_per_execution"] = {
                    m: round(s["inferences"] / s["executions"], 2) for m, s in stats.items() if s["executions"]}
                out[key] = row
        except Exception as exc:  # noqa: BLE001 - a server that cannot start here is a finding, not a crash
            out[key] = f"failed: {type(exc).__name__}: {str(exc)[-2000:]}"
            break
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    parser.add_argument("--pages-dir", type=Path, help="labelled pages written by --write-pages")
    parser.add_argument("--pages", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per network and batch size")
    parser.add_argument("--delays-us", default="100000,10000,1000,0", help="Triton queue delays; 0 = batching off")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--triton", default="on", choices=("on", "off"))
    parser.add_argument("--budget-s", type=float, default=420)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--write-pages", type=Path, help="only write --pages labelled pages here, then stop")
    args = parser.parse_args(argv)
    if args.write_pages:
        write_pages(args.write_pages, args.pages)
        return 0

    from ocrfleet_worker.engine import LocalTorchEngine
    from ocrfleet_worker.model.networks import TorchSettings, pick_device

    budget = Budget(args.budget_s)
    started = dt.datetime.now(dt.UTC)
    device = pick_device(args.device)
    report: dict = {"when": started.isoformat(timespec="seconds"), "environment": device_info(device),
                    "budget_s": args.budget_s}
    t0 = time.monotonic()
    engine = LocalTorchEngine(TorchSettings(device=device, threads=2 if device == "cpu" else 4))
    report["convert_and_load_s"] = round(time.monotonic() - t0, 1)
    report["networks"] = networks_part(engine.networks, device, budget, repeats=args.repeats)
    print(json.dumps(report["networks"], indent=1), flush=True)
    pages = load_pages(args.pages_dir, args.pages)
    report["pages"] = read_pages(engine, pages, budget)
    print(json.dumps(report["pages"]), flush=True)
    if args.triton == "on":
        delays = [int(d) for d in args.delays_us.split(",") if d.strip()]
        report["triton"] = triton_part(pages, device, delays, args.clients, budget)
    report["elapsed_s"] = round(time.monotonic() - t0, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"gpu_bench_{started:%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    print(f"saved {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
