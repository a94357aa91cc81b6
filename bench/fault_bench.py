"""Fault injection: a 200-document job through the real data plane while its dependencies die.

Real parts only: Redis (AOF, fsync always), PostgreSQL, a Triton server with the real OCR
weights (CPU here), the API (``python -m ocrfleet_api``) and two worker processes
(``python -m ocrfleet_worker``, engine ``triton``). The documents (:mod:`ocrfleet_dev.docgen`: ID
cards, bank statements, generic pages) are submitted through the API first; then the workers
start and, on a fixed schedule while they work:

- Redis is killed (SIGKILL) and started again on the same port 30 s later;
- PostgreSQL is shut down (fast: every session cut) and started again 30 s later;
- Triton is stopped and started again on the same ports 30 s later (its models load anew);
- a worker is SIGKILLed, twice (each time a new one starts in its place).

Then, from the database and Redis: every accepted document has exactly one result (succeeded,
its pages stored once), none failed, none is in the dead-letter stream, the queue is empty.
Recorded: the schedule as it happened, wall time, pages/s over the run, how often workers held
a document through an outage, retries and reclaims (from the workers' logs).

    python -m bench.fault_bench [--documents 200] [--outage 30]

Prints a summary and saves ``bench/results/fault_bench_<UTC time>.json``. On demand, never in tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from ocrfleet_dev import docgen, keys
from ocrfleet_dev.localproc import PostgresServer, RedisServer, free_port

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
MASTER_KEY = "fault-bench-signing-master-key-0123456789abcdef"
POOL = "faults"


class Worker:
    """One ``python -m ocrfleet_worker`` process with its own log."""

    def __init__(self, name: str, env: dict[str, str], logs: Path) -> None:
        self.name, self.log = name, logs / f"{name}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "ocrfleet_worker"], cwd=ROOT, stdout=out,
                                         stderr=subprocess.STDOUT, env={**env, "OCRFLEET_CONSUMER_NAME": name,
                                                                   "OCRFLEET_METRICS_PORT": "0"})

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()


def submit(api_url: str, api_key: str, paths: list[Path]) -> list[str]:
    ids = []
    with httpx.Client(base_url=api_url, timeout=60, headers={"Authorization": f"Bearer {api_key}"}) as http:
        for path in paths:
            r = http.post("/v1/documents", files={"file": (path.name, path.read_bytes())})
            r.raise_for_status()
            ids.append(r.json()["document_id"])
    return ids


def outcome(database_url: str, tenant: str) -> dict:
    from sqlalchemy import func, select

    from ocrfleet.store import DocumentRow, PageRow, ResultStore, make_engine

    engine = make_engine(database_url)
    try:
        with ResultStore(engine).session() as s:
            docs = s.execute(select(DocumentRow.status, func.count()).where(DocumentRow.tenant == tenant)
                             .group_by(DocumentRow.status)).all()
            expected = s.scalar(select(func.sum(DocumentRow.page_count)).where(DocumentRow.tenant == tenant)) or 0
            pages = s.scalar(select(func.count()).select_from(PageRow).join(
                DocumentRow, DocumentRow.id == PageRow.document_id).where(DocumentRow.tenant == tenant)) or 0
    finally:
        engine.dispose()
    return {"by_status": {k: int(v) for k, v in docs}, "pages_stored": int(pages), "pages_expected": int(expected)}


def count_in_logs(logs: Path, needle: str) -> int:
    return sum(p.read_text(errors="replace").count(needle) for p in logs.glob("worker-*.log"))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.fault_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=200)
    parser.add_argument("--outage", type=float, default=30.0, help="seconds each dependency stays down")
    parser.add_argument("--timeout", type=float, default=2400.0, help="give up after this many seconds")
    args = parser.parse_args(argv)

    from ocrfleet_dev.triton import TritonServer

    work = Path(tempfile.mkdtemp(prefix="ocrfleet-faults-"))
    logs = work / "logs"
    logs.mkdir()
    events: list[dict] = []
    t0 = time.monotonic()

    def event(what: str) -> None:
        events.append({"at_s": round(time.monotonic() - t0, 1), "event": what})
        print(f"[{events[-1]['at_s']:7.1f} s] {what}", flush=True)

    print(f"generating {args.documents} documents ...", flush=True)
    docgen.generate(work / "docs", args.documents, seed=2026, clean_fraction=0.5)
    paths = sorted(p for p in (work / "docs").iterdir() if not p.name.endswith(".truth.json"))

    (work / "redis").mkdir()
    with RedisServer(work / "redis") as redis_server, PostgresServer() as pg, \
            TritonServer(workdir=work / "triton") as triton:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("OCRFLEET_")},
               "OCRFLEET_REDIS_URL": redis_server.url, "OCRFLEET_DATABASE_URL": pg.url,
               "OCRFLEET_BLOB_ROOT": str(work / "blobs"), "OCRFLEET_CLUSTER": POOL,
               "OCRFLEET_SIGNING_MASTER_KEY": MASTER_KEY, "OCRFLEET_MASK_DEFAULT": "none",
               "OCRFLEET_CLAIM_IDLE_MS": "20000", "PYTHONPATH": str(ROOT)}
        api_port = free_port()
        with open(logs / "api.log", "wb") as api_log:  # the child keeps its own descriptor
            api = subprocess.Popen([sys.executable, "-m", "ocrfleet_api"], cwd=work, stdout=api_log,
                                   stderr=subprocess.STDOUT, env={**env, "OCRFLEET_HOST": "127.0.0.1",
                                                                  "OCRFLEET_PORT": str(api_port),
                                                                  "OCRFLEET_METRICS_PORT": "0"})
        api_url = f"http://127.0.0.1:{api_port}"
        for _ in range(600):
            try:
                if httpx.get(f"{api_url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        admin = [sys.executable, "-m", "ocrfleet_api.admin"]
        subprocess.run([*admin, "create-tenant", "faults", "--mask-fields", "none"], env=env, check=True,
                       capture_output=True)
        api_key = json.loads(subprocess.run([*admin, "issue-key", "faults"], env=env, check=True,
                                            capture_output=True, text=True).stdout)["api_key"]
        submitted = submit(api_url, api_key, paths)
        event(f"{len(submitted)} documents accepted by the API")

        worker_env = {**env, "OCRFLEET_ENGINE": "triton", "OCRFLEET_TRITON_URL": triton.grpc_url}
        workers = [Worker("worker-1", worker_env, logs), Worker("worker-2", worker_env, logs)]
        spawned = 2
        event("2 workers started")
        done = threading.Event()

        def faults() -> None:
            nonlocal spawned
            plan = [
                (25, "kill a worker", None),
                (40, "Redis down", lambda: redis_server.process.kill(),),
                (40 + args.outage, "Redis up", lambda: redis_server.start()),
                (95 + args.outage, "PostgreSQL down", lambda: (pg.process.proc.send_signal(signal.SIGINT),
                                                               pg.process.proc.wait(60))),
                (95 + 2 * args.outage, "PostgreSQL up", lambda: pg.start()),
                (130 + 2 * args.outage, "kill a worker", None),
                (150 + 2 * args.outage, "Triton down", lambda: triton.process.stop(timeout=30)),
                (150 + 3 * args.outage, "Triton up", lambda: triton.start()),
            ]
            for at, what, act in plan:
                while time.monotonic() - t0 < at + events[0]["at_s"]:
                    if done.wait(0.5):
                        return
                if act is None:  # a worker dies hard; a new one takes its place
                    victim = workers.pop(0)
                    victim.kill()
                    spawned += 1
                    workers.append(Worker(f"worker-{spawned}", worker_env, logs))
                    event(f"{what}: SIGKILL {victim.name}, started worker-{spawned}")
                else:
                    act()
                    event(what)

        injector = threading.Thread(target=faults, daemon=True)
        injector.start()
        deadline = time.monotonic() + args.timeout
        last = None
        while time.monotonic() < deadline:
            time.sleep(5)
            try:
                now = outcome(pg.url, "faults")
            except Exception:  # the database is down right now
                continue
            if now != last:
                print(f"  {now['by_status']}", flush=True)
                last = now
            finished = now["by_status"].get("succeeded", 0) + now["by_status"].get("failed", 0)
            if finished >= len(submitted) and not injector.is_alive():
                break
        done.set()
        injector.join(60)
        wall = time.monotonic() - t0 - events[0]["at_s"]
        final = outcome(pg.url, "faults")
        import redis as redis_lib

        client = redis_lib.Redis.from_url(redis_server.url)
        pool = keys.pool("", POOL)
        dead = int(client.xlen(keys.dead_letter(pool)))
        queued = sum(int(client.xlen(keys.stream(pool, p))) for p in keys.PRIORITIES)
        client.close()
        for w in workers:
            w.stop()
        api.terminate()
        api.wait(30)

    result = {
        "benchmark": "fault_bench",
        "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpus": os.cpu_count(), "gpu": False},
        "documents": len(submitted), "outage_s": args.outage, "workers": 2,
        "schedule": events, "wall_s": round(wall, 1),
        "outcome": final, "dead_letters": dead, "left_in_queue": queued,
        "pages_per_s": round(final["pages_stored"] / wall, 3) if wall else None,
        "worker_log": {"held_through_an_outage": count_in_logs(logs, "waits for a dependency"),
                       "retried_spending_an_attempt": count_in_logs(logs, "failed ("),
                       "reclaimed": count_in_logs(logs, "reclaimed "),
                       "queue_unavailable_waits": count_in_logs(logs, "queue unavailable")},
    }
    ok = (final["by_status"] == {"succeeded": len(submitted)} and dead == 0 and queued == 0
          and final["pages_stored"] == final["pages_expected"])
    result["every_document_exactly_one_result"] = ok
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"fault_bench_{result['when'].replace('-', '').replace(':', '')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("outcome", "dead_letters", "left_in_queue", "wall_s", "pages_per_s",
                                               "worker_log", "every_document_exactly_one_result")}, indent=2))
    print(f"saved {out.relative_to(ROOT)}; logs in {logs}")
    return result


if __name__ == "__main__":
    sys.exit(0 if main()["every_document_exactly_one_result"] else 1)
