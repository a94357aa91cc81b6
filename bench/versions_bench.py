"""Model versions side by side: ppocr-v4 against ppocr-v6-small on the same pages, same run.

Pages come from the labelled generator (:mod:`ocrfleet_dev.docgen`: ID cards, Chinese and
English statements, generic pages; half of them degraded as the generator degrades), decoded
as the worker decodes them, and read in two conditions:

- **full**: the pages as they are;
- **small**: each page shrunk to ``--scale`` (0.35) of its size and re-encoded as JPEG at
  quality ``--quality`` (30), as a phone capture sent over a slow link arrives.

Each page is read by each version through ocrfleet's own pipeline in this process
(``LocalTorchEngine(model=...)``: detection, direction, recognition, then classification and
field extraction), the versions alternating page by page so both see the same machine load.
Recorded per version and condition: CER against the truth lines, field exact-match accuracy,
pages turned the wrong way, and pages/s (the read and extraction time only), by document type.
Then the networks alone: each version's TorchScript modules against onnxruntime running the
same ONNX files on the same inputs and threads (ms per call), the check that conversion costs
no speed.

    python -m bench.versions_bench [--pages 24] [--threads 2] [--scale 0.35] [--quality 30]

Prints a summary and saves JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from ocrfleet_dev import docgen
from ocrfleet_worker.documents import decode
from ocrfleet_worker.engine import LocalTorchEngine
from ocrfleet_worker.model import convert
from ocrfleet_worker.model.networks import TorchSettings
from ocrfleet_worker.pipeline import engine_image, page_result
from PIL import Image

from bench.pipeline_bench import Sample, Scorer

RESULTS = Path(__file__).resolve().parent / "results"
KINDS = ("id_card", "bank_statement", "generic")


def small_capture(image: np.ndarray, scale: float, quality: int) -> np.ndarray:
    """The page shrunk to ``scale`` and re-encoded as JPEG at ``quality`` (RGB uint8)."""
    img = Image.fromarray(image)
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def read_all(engines: dict, pages: list[tuple[Sample, int, np.ndarray]]) -> dict:
    """Every page by every engine, alternating; scores and timings per engine."""
    scores = {name: Scorer() for name in engines}
    seconds = dict.fromkeys(engines, 0.0)
    wrong_turns = {name: [] for name in engines}
    for sample, index, image in pages:
        for name, engine in engines.items():
            t0 = time.perf_counter()
            read = engine.read_page(engine_image(image))
            result = page_result(index, image, read)
            seconds[name] += time.perf_counter() - t0
            text = "".join(line.text for line in result.lines)
            fields = {f.name: f.value for f in result.fields}
            scores[name].add(sample, index, text, fields)
            if result.rotation != sample.truth["pages"][index]["rotation"] % 360:
                wrong_turns[name].append(f"{sample.truth['file']}#{index}: {result.rotation}")
    return {name: {"pages_per_s": round(len(pages) / seconds[name], 3), "wrong_turns": wrong_turns[name],
                   "accuracy": scores[name].report()} for name in engines}


def network_speed(threads: int, repeats: int = 5) -> dict:
    """ms per call: each version's TorchScript module and onnxruntime on the same input."""
    import onnxruntime
    import torch

    rng = np.random.default_rng(0)
    inputs = {"det": rng.integers(0, 256, (1, 640, 480, 3), dtype=np.uint8),
              "rec": rng.uniform(-1, 1, (4, 3, 48, 320)).astype(np.float32)}
    out = {}
    for version in convert.VERSIONS:
        files = convert.ensure_models("cpu", version=version)
        spec = convert.model_version(version)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        for role, batch in inputs.items():
            module = torch.jit.load(str(files.module(role)))
            session = onnxruntime.InferenceSession(str(convert.onnx_dir(version) / spec.files[role]), options,
                                                   providers=["CPUExecutionProvider"])
            # onnxruntime takes the bare network's input: the detector's normalised NCHW float page
            bare = batch.transpose(0, 3, 1, 2).astype(np.float32) * (2 / 255) - 1 if role == "det" else batch
            feeds = {session.get_inputs()[0].name: bare}
            tensor = torch.from_numpy(batch)
            if role == "rec":  # as TorchNetworks sends line strips: oneDNN's faster layout
                tensor = tensor.contiguous(memory_format=torch.channels_last)
            calls = {"torchscript": lambda m=module, t=tensor: m(t),
                     "onnxruntime": lambda s=session, f=feeds: s.run(None, f)}
            timings = {}
            with torch.inference_mode():
                for name, call in calls.items():
                    call()
                    samples = []
                    for _ in range(repeats):
                        t0 = time.perf_counter()
                        call()
                        samples.append((time.perf_counter() - t0) * 1000)
                    timings[name] = round(float(np.median(samples)), 1)
            timings["ratio"] = round(timings["onnxruntime"] / timings["torchscript"], 3)
            out[f"{version}/{role}"] = timings
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=24, help="documents to generate (one page each)")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scale", type=float, default=0.35)
    parser.add_argument("--quality", type=int, default=30)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="ocrfleet-versions-"))
    samples = []
    for path in docgen.generate(work, args.pages, seed=args.seed, kinds=KINDS, clean_fraction=0.5):
        truth = json.loads(path.read_text())
        samples.append(Sample(work / truth["file"], truth))
    full = [(s, p.index, p.image) for s in samples for p in decode(s.path.read_bytes()).pages]
    small = [(s, i, small_capture(image, args.scale, args.quality)) for s, i, image in full]
    settings = TorchSettings(device="cpu", threads=args.threads)
    engines = {version: LocalTorchEngine(settings, model=version) for version in convert.VERSIONS}
    report = {
        "bench": "versions", "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"platform": platform.platform(), "threads": args.threads},
        "config": {"pages": len(full), "seed": args.seed, "small": {"scale": args.scale, "jpeg_quality": args.quality}},
        "full": read_all(engines, full),
        "small": read_all(engines, small),
        "networks_ms": network_speed(args.threads),
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"versions_bench_{report['when'].replace('-', '').replace(':', '')}.json"
    out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    for condition in ("full", "small"):
        for version, r in report[condition].items():
            a = r["accuracy"]["all"]
            print(f"{condition:5} {version:15} CER {a['cer']:.4f}  fields {a['field_accuracy']}  "
                  f"{r['pages_per_s']:.2f} pages/s  wrong turns {len(r['wrong_turns'])}")
    for key, t in report["networks_ms"].items():
        print(f"{key:22} torchscript {t['torchscript']:7.1f} ms  onnxruntime {t['onnxruntime']:7.1f} ms  "
              f"ort/ours {t['ratio']:.2f}")
    print(f"saved {out}")
    return report


if __name__ == "__main__":
    main()
