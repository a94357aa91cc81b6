"""Prometheus metrics of the operator: reconcile ticks, status writes, queue depth and conditions
per pool, jobs per phase and the progress of each running job.

Served as plain HTTP on a port of their own (``OCRFLEET_PROMETHEUS_PORT``, 8081; 0 serves
none) by :func:`serve`; ``metrics_port`` is the TLS port of the external metrics adapter
(:mod:`.metrics_adapter`), which the HPA reads, not Prometheus.

Jobs by phase are folded from each job's last verdict (:data:`JOBS`, by uid), so a job counts
once, in the phase its last tick decided, until it is deleted (:func:`forget_job`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter as Tally
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

from ocrfleet_operator.phases import Phase

RECONCILES = Counter("ocrfleet_operator_reconciles_total", "Reconcile ticks by kind and outcome (ok, error)",
                     ["kind", "outcome"])
RECONCILE_SECONDS = Histogram("ocrfleet_operator_reconcile_seconds", "Time of one reconcile tick, by kind",
                              ["kind"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
STATUS_WRITES = Counter("ocrfleet_operator_status_writes_total", "Status patches sent to the API server, by kind",
                        ["kind"])
STATUS_SKIPPED = Counter("ocrfleet_operator_status_writes_skipped_total", "Status writes not sent, by kind and "
                         "why (unchanged, throttled)", ["kind", "reason"])
QUEUE_DEPTH = Gauge("ocrfleet_operator_queue_depth", "Documents waiting or in flight in a pool's queue, as the "
                    "operator last read it", ["namespace", "name"])
POOL_CONDITION = Gauge("ocrfleet_operator_pool_condition", "A pool's status conditions as the operator last wrote "
                       "them: 1 when True, 0 otherwise", ["namespace", "name", "type"])
JOB_DOCUMENTS = Gauge("ocrfleet_operator_job_documents", "A running OcrJob's documents: its total and how many "
                      "are done (succeeded or failed); only while it runs", ["namespace", "name", "state"])
JOB_PHASES = Gauge("ocrfleet_operator_jobs", "OcrJobs by namespace and phase (their last tick's verdict)",
                   ["namespace", "phase"])


def serve(host: str, port: int) -> None:
    """The exposition on ``host:port`` (``/metrics``), from a thread of this process; port 0: none."""
    if port:
        start_http_server(port, addr=host, registry=REGISTRY)


@contextlib.contextmanager
def reconcile(kind: str) -> Iterator[None]:
    """Count and time one reconcile tick of ``kind``; an exception counts as ``error`` (and goes on)."""
    start = time.perf_counter()
    outcome = "error"
    try:
        yield
        outcome = "ok"
    finally:
        RECONCILES.labels(kind, outcome).inc()
        RECONCILE_SECONDS.labels(kind).observe(time.perf_counter() - start)


def queue_depth(namespace: str, name: str, depth: int | None) -> None:
    """The pool's depth; ``None`` (Redis away) drops the series rather than show a stale number."""
    if depth is None:
        forget_pool(namespace, name)
    else:
        QUEUE_DEPTH.labels(namespace, name).set(depth)


POOL_CONDITIONS = ("Ready", "Progressing", "Degraded", "Reconciling", "Stalled")


def pool_conditions(namespace: str, name: str, conditions: list[dict] | None) -> None:
    """Every kstatus-relevant condition type of the pool, 1 for True (a missing one is 0)."""
    true = {c.get("type") for c in conditions or [] if c.get("status") == "True"}
    for kind in POOL_CONDITIONS:
        POOL_CONDITION.labels(namespace, name, kind).set(1 if kind in true else 0)


def forget_pool(namespace: str, name: str) -> None:
    with contextlib.suppress(KeyError):
        QUEUE_DEPTH.remove(namespace, name)
    for kind in POOL_CONDITIONS:
        with contextlib.suppress(KeyError):
            POOL_CONDITION.remove(namespace, name, kind)


def job_documents(namespace: str, name: str, running: bool, total: int = 0, done: int = 0) -> None:
    """A running job's progress (what a stall alert watches); a job not running has no series."""
    for state, count in (("total", total), ("done", done)):
        if running:
            JOB_DOCUMENTS.labels(namespace, name, state).set(count)
        else:
            with contextlib.suppress(KeyError):
                JOB_DOCUMENTS.remove(namespace, name, state)


class JobPhases:
    """Each job's phase by uid, folded into :data:`JOB_PHASES` counts per namespace."""

    def __init__(self, gauge: Gauge = JOB_PHASES) -> None:
        self.gauge = gauge
        self._phases: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()

    def set(self, namespace: str, uid: str, phase: str) -> None:
        with self._lock:
            before = self._phases.get(uid)
            if before == (namespace, phase):
                return  # the same phase each tick: folding every job of the namespace again is O(jobs)
            self._phases[uid] = (namespace, phase)
            self._fold({namespace} | ({before[0]} if before else set()))

    def forget(self, uid: str) -> None:
        with self._lock:
            before = self._phases.pop(uid, None)
            if before:
                self._fold({before[0]})

    def _fold(self, namespaces: set[str]) -> None:
        for ns in namespaces:
            counts = Tally(phase for n, phase in self._phases.values() if n == ns)
            if not counts:  # no job left there: no series either
                for phase in {*Phase, *counts}:
                    with contextlib.suppress(KeyError):
                        self.gauge.remove(ns, str(phase))
                continue
            for phase in {*(p.value for p in Phase), *counts}:
                self.gauge.labels(ns, phase).set(counts.get(phase, 0))


JOBS = JobPhases()


def job_phase(namespace: str, uid: str, phase: str) -> None:
    JOBS.set(namespace, uid, phase)


def forget_job(uid: str) -> None:
    JOBS.forget(uid)
