"""The operator under 200 OcrJobs applied at once, on the local control plane.

Starts the local control plane (:mod:`e2e.cluster`: a real API server, kwok nodes), installs
the CRDs, starts Redis and the operator (``python -m ocrfleet_operator``, a subprocess, as in
its pod), creates one OcrCluster, and applies ``--jobs`` OcrJobs (each over a folder of
``--docs`` small files) in one ``kubectl apply``. Then:

1. **apply -> Running**: per job, from the apply to the first watch event showing it Running,
   and the operator's own part apart from kubectl's: from the job's first watch event (the API
   server has stored it) to Running;
2. **steady**: ``--steady`` seconds with nothing happening (no worker): the operator should
   write no status at all;
3. **drain**: the bench plays the worker (reads, records the outcome, acks every document on
   the same Redis) and waits for every job to be Succeeded.

Status writes are counted from a watch on the OcrJobs: an event whose ``.status`` differs from
the object's previous one is one status write (kopf's annotation and finalizer writes are not
counted). Operator CPU time (user + system) and peak RSS come from psutil, sampled every
100 ms.

    python -m bench.operator_bench [--jobs 200] [--docs 5] [--steady 30]

Prints a summary and saves JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import redis as redis_lib
from kubernetes import client, config, watch
from ocrfleet_dev.localproc import RedisServer
from ocrfleet_operator.settings import OperatorSettings

from e2e.cluster import temporary_cluster
from e2e.operator_support import OperatorProcess
from ocrfleet import keys
from ocrfleet.progress import JobProgress
from ocrfleet.queue import WorkQueue

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
NAMESPACE = "bench"
TEST_TIMINGS = ("OCRFLEET_RECONCILE_INTERVAL", "OCRFLEET_JOB_PROGRESS_INTERVAL", "OCRFLEET_STATUS_MIN_INTERVAL")
POOL = "bench"


class JobWatch:
    """Watches every OcrJob; records status writes and the first time each phase was seen."""

    def __init__(self, kubeconfig: Path) -> None:
        self.api = client.CustomObjectsApi(config.new_client_from_config(str(kubeconfig)))
        self.lock = threading.Lock()
        self.status: dict[str, str] = {}
        self.changed_fields: dict[str, int] = {}  # top-level status fields, per write that changed them
        self.phase_seen: dict[tuple[str, str], float] = {}
        self.created_seen: dict[str, float] = {}  # the first event of each job: the API server has it
        self.status_writes: list[float] = []
        self.events = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> JobWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            w = watch.Watch()
            for event in w.stream(self.api.list_namespaced_custom_object, "ocrfleet.io", "v1alpha1", NAMESPACE,
                                  "ocrjobs", timeout_seconds=30):
                now = time.monotonic()
                obj = event["object"]
                name = obj["metadata"]["name"]
                status = json.dumps(obj.get("status") or {}, sort_keys=True)
                with self.lock:
                    self.events += 1
                    self.created_seen.setdefault(name, now)
                    before = json.loads(self.status.get(name, "{}"))
                    if status != self.status.get(name, json.dumps({})):
                        self.status_writes.append(now)
                        after = obj.get("status") or {}
                        for key in set(before) | set(after):
                            if before.get(key) != after.get(key):
                                self.changed_fields[key] = self.changed_fields.get(key, 0) + 1
                    self.status[name] = status
                    phase = (obj.get("status") or {}).get("phase")
                    if phase:
                        self.phase_seen.setdefault((name, phase), now)
                if self._stop.is_set():
                    w.stop()
                    break

    def first(self, phases: tuple[str, ...]) -> dict[str, float]:
        """Per job, the earliest time it showed one of ``phases``."""
        with self.lock:
            out: dict[str, float] = {}
            for (name, phase), t in self.phase_seen.items():
                if phase in phases:
                    out[name] = min(t, out.get(name, t))
            return out

    def writes_between(self, t0: float, t1: float) -> int:
        with self.lock:
            return sum(t0 <= t < t1 for t in self.status_writes)


class Sampler:
    """Peak RSS of a process, sampled in the background."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def cpu_s(self) -> float:
        t = self.process.cpu_times()
        return t.user + t.system + t.children_user + t.children_system

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)
            except psutil.Error:
                return
            self._stop.wait(self.interval)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()


class QuietProfile:
    """py-spy sampling the operator through the quiet window (where py-spy is installed), summed
    into the functions the samples were in, their own time and with what they called."""

    def __init__(self, proc: subprocess.Popen, out: Path, duration: float) -> None:
        self.proc, self.out, self.duration = proc, out, duration

    @classmethod
    def start(cls, pid: int, duration: float) -> QuietProfile | None:
        spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
        if spy is None:
            return None
        out = Path(tempfile.mkdtemp(prefix="ocrfleet-opspy-")) / "raw.txt"
        proc = subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(max(1, int(duration) - 1)),
                                 "--rate", "50", "--format", "raw", "--nonblocking", "--output", str(out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return cls(proc, out, duration)

    def summary(self, top: int = 15) -> dict:
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        own: dict[str, int] = {}
        within: dict[str, int] = {}
        total = 0
        for line in self.out.read_text().splitlines() if self.out.exists() else []:
            stack, _, count = line.rpartition(" ")
            frames = [f.split(" (")[0] for f in stack.split(";")]
            total += int(count)
            own[frames[-1]] = own.get(frames[-1], 0) + int(count)
            for name in set(frames):
                within[name] = within.get(name, 0) + int(count)
        ranked = lambda d: dict(sorted(d.items(), key=lambda kv: -kv[1])[:top])  # noqa: E731
        return {"rate_hz": 50, "samples": total, "own": ranked(own), "including_callees": ranked(within),
                "note": "samples of every thread, idle waits included (select/epoll are threads at rest)"}


def wait_until(condition, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


def play_worker(redis_url: str, expected: int, timeout: float) -> int:
    """Process every document: record the outcome and ack, as the worker does after storing."""
    r = redis_lib.Redis.from_url(redis_url)
    pool = keys.pool(NAMESPACE, POOL)
    queue, progress = WorkQueue(r, pool), JobProgress(r, pool)
    done, deadline = 0, time.monotonic() + timeout
    while done < expected and time.monotonic() < deadline:
        for d in queue.read("bench-worker", count=100, block_ms=200):
            progress.record_outcome(d.task.job, d.task.document_id, succeeded=True, pages=1, now=time.time())
            queue.ack(d)
            done += 1
    r.close()
    return done


def percentiles(values: list[float]) -> dict[str, float]:
    a = np.asarray(values)
    return {"p50": round(float(np.percentile(a, 50)), 2), "p95": round(float(np.percentile(a, 95)), 2),
            "max": round(float(a.max()), 2)}


def run(jobs: int, docs: int, steady_s: float) -> dict:
    cluster = temporary_cluster("ocrfleet-bench").create()
    tmp = Path(tempfile.mkdtemp(prefix="ocrfleet-operator-bench-"))
    try:
        cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        for crd in ("ocrclusters.ocrfleet.io", "ocrjobs.ocrfleet.io"):
            cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
        cluster.kubectl("create", "namespace", NAMESPACE)
        source = [f"https://documents.example.internal/bench/page-{i:03d}.png" for i in range(docs)]
        with RedisServer() as redis_server:
            op = OperatorProcess(cluster, redis_server.url, tmp)
            for name in TEST_TIMINGS:  # the e2e tests' short intervals: use the production defaults
                op.env.pop(name, None)
            op.start()
            sampler = Sampler(op.proc.pid).start()
            jw = JobWatch(cluster.kubeconfig_path).start()
            try:
                return _measure(cluster, op, sampler, jw, redis_server.url, source, jobs, docs, steady_s)
            finally:
                jw.stop()
                sampler.stop()
                cluster.kubectl("delete", "ocrjobs,ocrclusters", "--all", "-n", NAMESPACE, "--wait=true",
                                "--timeout=120s", check=False, timeout=150)
                op.stop()
    finally:
        cluster.delete()


def _measure(cluster, op, sampler, jw, redis_url, source, jobs, docs, steady_s) -> dict:
    cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=json.dumps({
        "apiVersion": "ocrfleet.io/v1alpha1", "kind": "OcrCluster", "metadata": {"name": POOL},
        "spec": {"workers": {"gpu": {"count": 0}}, "api": {"replicas": 1}, "redis": {"url": redis_url}}}))
    manifest = {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "ocrfleet.io/v1alpha1", "kind": "OcrJob", "metadata": {"name": f"job-{i:04d}"},
         "spec": {"clusterRef": {"name": POOL}, "source": {"urls": source}}}
        for i in range(jobs)]}
    cpu0 = sampler.cpu_s()
    t0 = time.monotonic()
    cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=json.dumps(manifest), timeout=120)
    t_applied = time.monotonic()
    running = wait_until(lambda: (r := jw.first(("Running", "Succeeded"))) and len(r) >= jobs and r,
                         600, f"{jobs} jobs Running")
    t_running = time.monotonic()
    cpu_running = sampler.cpu_s()
    to_running = [t - t0 for t in running.values()]
    with jw.lock:  # the operator's own part: from the job existing (its first watch event) to Running
        own = [t - jw.created_seen[name] for name, t in running.items() if name in jw.created_seen]

    steady_start = time.monotonic()
    profiler = QuietProfile.start(op.proc.pid, steady_s)
    slices, last = [], sampler.cpu_s()  # a measured quiet window: nothing changes, so nothing should be written
    while (left := steady_start + steady_s - time.monotonic()) > 0:
        time.sleep(min(30.0, left))
        now_cpu = sampler.cpu_s()
        slices.append({"from_s": round(30.0 * len(slices)), "cores": round((now_cpu - last) / min(30.0, max(left, 1e-3)), 4)})
        last = now_cpu
    steady_end = time.monotonic()
    cpu_steady = sampler.cpu_s()

    processed = play_worker(redis_url, jobs * docs, 600)
    succeeded = wait_until(lambda: (s := jw.first(("Succeeded",))) and len(s) >= jobs and s, 600,
                           f"{jobs} jobs Succeeded")
    t_done = time.monotonic()
    cpu_done = sampler.cpu_s()
    return {
        "jobs": jobs,
        "documents_per_job": docs,
        "documents_processed": processed,
        "apply_call_s": round(t_applied - t0, 2),
        "apply_to_running_s": percentiles(to_running),
        "created_to_running_s": percentiles(own),
        "all_running_s": round(t_running - t0, 2),
        "status_writes": {
            "apply_to_all_running": jw.writes_between(t0, t_running + 0.001),
            "per_s_apply_to_all_running": round(jw.writes_between(t0, t_running) / max(t_running - t0, 1e-3), 2),
            "steady_window_s": round(steady_end - steady_start, 1),
            "steady": jw.writes_between(steady_start, steady_end),
            "drain_to_all_succeeded": jw.writes_between(steady_end, t_done + 0.001),
            "per_s_drain": round(jw.writes_between(steady_end, t_done) / max(t_done - steady_end, 1e-3), 2),
            "total": len(jw.status_writes),
            "per_job": round(len(jw.status_writes) / jobs, 2),
            "watch_events": jw.events,
            "changed_fields": dict(sorted(jw.changed_fields.items())),
        },
        "drain_to_all_succeeded_s": round(t_done - steady_end, 2),
        "succeeded_after_drain_s": percentiles([t - steady_end for t in succeeded.values()]),
        "operator": {
            "cpu_s_apply_to_running": round(cpu_running - cpu0, 2),
            "cpu_s_steady": round(cpu_steady - cpu_running, 2),
            "cores_steady_by_30_s": slices,
            "cpu_s_drain": round(cpu_done - cpu_steady, 2),
            "cpu_s_total": round(cpu_done, 2),
            "peak_rss_mib": round(sampler.peak_rss / 2**20, 1),
        },
        "steady_profile": profiler.summary() if profiler else "py-spy not installed: no profile",
        "operator_settings": {f: getattr(OperatorSettings(), f) for f in (
            "reconcile_interval", "job_progress_interval", "status_min_interval")},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.operator_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--docs", type=int, default=5, help="documents per job")
    parser.add_argument("--steady", type=float, default=30, help="seconds of the quiet window")
    args = parser.parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    load_before = os.getloadavg()
    result = run(args.jobs, args.docs, args.steady)
    report = {
        "when": started.isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg": load_before,
                    "load_avg_after": os.getloadavg()},
        **result,
    }
    print(json.dumps(report, indent=1))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"operator_bench_{started:%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
