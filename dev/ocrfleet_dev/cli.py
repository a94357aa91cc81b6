"""The ``ocrfleet`` command: the embedded path, without Kubernetes (development tooling: it starts
local servers no image runs, so it lives beside them rather than in the worker image).

``ocrfleet process <files or folders>`` starts what it needs — a local Redis on a free port,
the OCR engine (the local Triton of :mod:`ocrfleet_dev.triton`, or the in-process PyTorch engine),
a SQLite results store — accepts every document as the API does (:class:`ocrfleet.intake.Intake`;
the run's documents are one batch, counted together), runs a worker
over the queue with a progress bar (documents and pages done, docs/s and pages/s so far, the ETA at
that rate), writes one JSON line per document and prints a summary.
It exits 1 when any document failed, 0 otherwise.

``ocrfleet samples <dir>`` writes a labelled sample set (:mod:`ocrfleet_dev.docgen`).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ocrfleet import __version__
from ocrfleet.lifecycle import DocumentStatus
from ocrfleet.results import DOCUMENT_TYPES, DocumentResult

if TYPE_CHECKING:
    from rich.console import Console

SKIP_SUFFIXES = (".truth.json", ".jsonl", ".json", ".txt", ".md")

ROOT = Path(__file__).resolve().parents[2]


def find_documents(paths: list[str]) -> list[Path]:
    """Files named, and files under folders named (recursively), in a stable order."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
                            and not p.name.endswith(SKIP_SUFFIXES))
        elif path.is_file():
            found.append(path)
        else:
            raise SystemExit(f"ocrfleet: {raw}: no such file or folder")
    return found


@contextlib.contextmanager
def ocr_engine(kind: str, *, replay_dir: str | None, console: Console, model: str | None = None) -> Iterator[object]:
    """The engine for ``kind`` reading with model version ``model`` (the default without one),
    with whatever server it needs running for the block."""
    if kind == "replay":
        from ocrfleet_dev.replay_engine import ReplayEngine

        yield ReplayEngine.from_sample_set(replay_dir) if replay_dir else ReplayEngine()
        return
    if kind == "torch":
        from ocrfleet_worker.engine import LocalTorchEngine

        with console.status("loading the OCR model (first start converts and caches it)"):
            engine = LocalTorchEngine(model=model)
        yield engine
        return
    from ocrfleet_worker.engine import TritonEngine
    from ocrfleet_worker.model.convert import model_version

    from ocrfleet_dev.triton import TritonServer, TritonServerOptions, local_settings

    options = TritonServerOptions(settings=local_settings().model_copy(update={"models": model_version(model).name}))
    with console.status("starting Triton (first start converts and caches the model)"), TritonServer(options) as server:
        yield TritonEngine(server.grpc_url, model=model)


def process(args: argparse.Namespace) -> int:
    import redis
    from ocrfleet_worker.consumer import Pacing, Worker
    from ocrfleet_worker.documents import DecodeLimits
    from ocrfleet_worker.pipeline import DocumentPipeline
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ocrfleet.blobs import LocalBlobStore
    from ocrfleet.intake import Intake
    from ocrfleet.masking import MaskPolicy
    from ocrfleet.progress import JobProgress
    from ocrfleet.queue import WorkQueue
    from ocrfleet.store import ResultStore, make_engine
    from ocrfleet_dev.localproc import RedisServer

    console = Console(stderr=True)
    files = find_documents(args.paths)
    if not files:
        console.print("[yellow]no documents found[/]")
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="ocrfleet-process-"))
    database = args.database or f"sqlite:///{Path(args.out).with_suffix('.db').resolve()}"
    run = f"cli-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    cluster = "local"
    policy = MaskPolicy.from_names([m for m in (args.mask or "").split(",") if m])
    try:
        with RedisServer(appendonly=False) as server, \
                ocr_engine(args.engine, replay_dir=args.replay_dir, console=console, model=args.model) as engine:
            client = redis.Redis.from_url(server.url)
            store = ResultStore(make_engine(database))
            store.create_schema()
            blobs = LocalBlobStore(workdir / "blobs")
            queue = WorkQueue(client, cluster, max_attempts=args.max_attempts)
            queue.ensure_groups()
            progress = JobProgress(client, cluster)
            intake = Intake(store=store, blobs=blobs, queue=queue, progress=progress)
            incoming = []
            for path in files:
                staged = blobs.stage(None)
                staged.write(path.read_bytes())
                incoming.append(intake.commit(staged, filename=path.name))
            accepted = intake.accept(args.tenant, incoming, document_type=args.type, policy=policy, batch=run,
                                     model=getattr(engine, "model", None))
            ids = [(path, a.document_id) for path, a in zip(files, accepted, strict=True)]

            worker = Worker(queue=queue, store=store, progress=progress, blobs=blobs,
                            pipeline=DocumentPipeline(engine, DecodeLimits(max_side=args.max_side)),
                            consumer="cli", pacing=Pacing(block_ms=100, reclaim_interval_s=30))
            started = time.perf_counter()
            runner = threading.Thread(target=worker.run, kwargs={"until_idle": True}, daemon=True)
            runner.start()
            columns = (TextColumn("[bold]OCR"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[pages]} pages"),
                       TextColumn("{task.fields[pace]}"), TimeElapsedColumn())
            with Progress(*columns, console=console, transient=False) as bar:
                task_id = bar.add_task("ocr", total=len(ids), pages=0, pace="")

                def show() -> None:
                    counts = progress.read(run)
                    bar.update(task_id, completed=counts.done, pages=counts.pages,
                               pace=pace(counts.done, len(ids), counts.pages, time.perf_counter() - started))

                try:
                    while runner.is_alive():
                        show()
                        runner.join(0.2)
                except KeyboardInterrupt:
                    console.print("[yellow]stopping after the current document…[/]")
                    worker.stop()
                    runner.join()
                show()
            elapsed = time.perf_counter() - started
            results = [(path, store.get(doc_id)) for path, doc_id in ids]
            client.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    out = Path(args.out)
    with out.open("w", encoding="utf-8") as f:
        for path, result in results:
            line = result.model_dump(mode="json") | {"path": str(path)}
            f.write(_json(line) + "\n")
    _summary(console, results, elapsed, out)
    return 0 if all(r.status == DocumentStatus.SUCCEEDED for _p, r in results) else 1


def pace(done: int, total: int, pages: int, elapsed: float) -> str:
    """The progress line's rate and ETA: ``2.5 docs/s, 4.0 pages/s, ETA 0:00:12`` (the ETA at the
    rate so far; ``ETA -`` until a document is done, ``done`` at the end)."""
    if elapsed <= 0 or done == 0:
        return "- docs/s, - pages/s, ETA -"
    docs_rate, pages_rate = done / elapsed, pages / elapsed
    left = max(total - done, 0)
    eta = "done" if left == 0 else "ETA " + str(dt.timedelta(seconds=round(left / docs_rate)))
    return f"{docs_rate:.1f} docs/s, {pages_rate:.1f} pages/s, {eta}"


def _json(data: dict) -> str:
    import json

    return json.dumps(data, ensure_ascii=False)


KEY_FIELDS = ("id_number", "name", "account_number", "period_start")


def _summary(console: Console, results: list[tuple[Path, DocumentResult]], elapsed: float, out: Path) -> None:
    from rich.table import Table

    table = Table(title="ocrfleet process", show_lines=False)
    for column in ("document", "type", "pages", "status", "key fields", "checks", "ms"):
        table.add_column(column, overflow="fold")
    pages = 0
    for path, r in results:
        pages += len(r.pages)
        fields = {f.name: f for p in r.pages for f in p.fields}
        shown = [n for n in KEY_FIELDS if n in fields and fields[n].value]
        shown = shown or [n for n in fields if n.startswith("kv:")][:2]
        keys = ", ".join(f"{n.removeprefix('kv:')}={fields[n].value}" + ("" if fields[n].valid is not False else " ✗")
                         for n in shown)
        checks = [c for p in r.pages for c in p.checks]
        passed = f"{sum(c.passed for c in checks)}/{len(checks)}" if checks else "-"
        status = "[green]ok[/]" if r.status == DocumentStatus.SUCCEEDED else f"[red]{r.error.code if r.error else r.status}[/]"
        if r.cached:
            status += " (cached)"
        table.add_row(path.name, r.document_type or "-", str(len(r.pages)), status,
                      keys or (r.error.message if r.error else ""), passed,
                      f"{r.processing_ms:.0f}" if r.processing_ms is not None else "-")
    console.print(table)
    failed = sum(r.status != DocumentStatus.SUCCEEDED for _p, r in results)
    rate = pages / elapsed if elapsed > 0 else 0.0
    console.print(f"{len(results)} documents, {pages} pages, {failed} failed in {elapsed:.1f} s "
                  f"({rate:.2f} pages/s); results in {out}")


def samples(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ocrfleet_dev import docgen

    console = Console(stderr=True)
    kinds = tuple(args.kinds.split(",")) if args.kinds else docgen.KINDS
    unknown = set(kinds) - set(docgen.KINDS)
    if unknown:
        raise SystemExit(f"ocrfleet samples: unknown kinds {sorted(unknown)}; choose from {', '.join(docgen.KINDS)}")
    with console.status(f"rendering {args.count} documents"):
        paths = docgen.generate(args.dir, args.count, seed=args.seed, kinds=kinds, clean_fraction=args.clean_fraction)
    console.print(f"wrote {len(paths)} documents and their truth files to {args.dir}")
    return 0


def plan(args: argparse.Namespace) -> int:
    import json

    import yaml

    from ocrfleet_dev import capacity

    spec = yaml.safe_load(Path(args.pool).read_text())["spec"]
    pool = Path(args.pool).resolve()
    pool = pool.relative_to(ROOT) if pool.is_relative_to(ROOT) else pool
    if args.pages_per_s is not None:
        rate, source = args.pages_per_s, "given with --pages-per-s (an assumption until a benchmark measures it)"
    else:
        rate, source = capacity.measured_rate(json.loads(Path(args.bench).read_text()))
    results = {}
    for peak in (1.0, args.peak):
        workload = capacity.Workload(args.pages_per_day, peak, pages_per_document=args.pages_per_document)
        result = capacity.simulate(spec, workload, pages_per_s=rate, startup_s=args.startup_s)
        results[f"peak_{peak:g}x"] = capacity.as_json(result)
        print(capacity.render(result, workload, title=f"\n{args.pages_per_day:,.0f} pages a day x {peak:g} "
                                                      f"through {pool}, {rate:g} pages/s a worker"))
        print(f"the pool's {result.hpa['maxReplicas']} workers hold this day's busiest hour at "
              f"{capacity.rate_for_peak(workload, result.hpa['maxReplicas']):.2f} pages/s a worker or more")
    print(f"\nper-worker rate {source}; profile {args.pages_per_document:g} pages a document, "
          f"workers serving {args.startup_s:g} s after they are added, the hourly shares "
          f"{list(capacity.LOAN_PLATFORM_HOURS)} (assumptions)")
    if args.json:
        options = {k: v for k, v in vars(args).items() if k not in ("func", "command", "json")}
        bench = Path(args.bench).resolve()
        options |= {"pool": str(pool), "bench": str(bench.relative_to(ROOT) if bench.is_relative_to(ROOT) else bench)}
        record = {"command": "ocrfleet plan", "options": options, "rate_source": source,
                  "plans": results}
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ocrfleet", description="Document OCR on a GPU pool, and locally.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("process", help="OCR files or folders locally (local Redis, Triton, SQLite); writes JSONL")
    p.add_argument("paths", nargs="+", help="files, or folders searched recursively")
    p.add_argument("-o", "--out", default="ocrfleet-results.jsonl", help="the JSONL file to write")
    p.add_argument("--engine", choices=("triton", "torch", "replay"), default="triton",
                   help="triton: start a local Triton; torch: the model in this process; "
                        "replay: answer from a sample set's truth (no model)")
    p.add_argument("--replay-dir", help="with --engine replay: the sample set to answer from")
    p.add_argument("--model", help="the model version to read with: ppocr-v4 (the default) or ppocr-v6-small "
                   "(a result in --database answers again only if the same version read it)")
    p.add_argument("--type", choices=DOCUMENT_TYPES, default="auto", help="document type, or auto-detect")
    p.add_argument("--mask", default="", help="fields to mask, comma-separated (e.g. id_number,account_number; all)")
    p.add_argument("--tenant", default="local", help="tenant the results belong to (the cache is per tenant)")
    p.add_argument("--database", help="SQLAlchemy URL of the results store (default: SQLite next to --out)")
    p.add_argument("--max-side", type=int, default=2048, help="pages are downscaled to this longer side")
    p.add_argument("--max-attempts", type=int, default=3, help="tries per document")
    p.set_defaults(func=process)

    s = sub.add_parser("samples", help="write a labelled sample set (ID cards, statements, generic pages)")
    s.add_argument("dir", help="output folder")
    s.add_argument("-n", "--count", type=int, default=20)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--kinds", default="", help=f"comma-separated subset of {','.join(('id_card', 'bank_statement', 'generic', 'mixed'))}")
    s.add_argument("--clean-fraction", type=float, default=0.4, help="share of documents left undegraded")
    s.set_defaults(func=samples)

    c = sub.add_parser("plan", help="simulate a day's traffic through a pool's scaling: workers, waits, GPU-hours")
    c.add_argument("--pool", default=str(ROOT / "examples" / "ocrcluster-gpu.yaml"), help="an OcrCluster manifest")
    c.add_argument("--pages-per-day", type=float, default=600_000)
    c.add_argument("--peak", type=float, default=3.0, help="the peak day's factor (month-end), planned beside 1x")
    c.add_argument("--pages-per-document", type=float, default=1.5)
    c.add_argument("--pages-per-s", type=float, help="one worker's pages/s (default: the latest pipeline benchmark)")
    c.add_argument("--bench", default=str(ROOT / "bench" / "results" / "pipeline_bench_latest.json"),
                   help="the pipeline benchmark record the default rate comes from")
    c.add_argument("--startup-s", type=float, default=60.0, help="seconds from a worker's start to its first page")
    c.add_argument("--json", help="also write the plan here")
    c.set_defaults(func=plan)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
