"""Reconciling one OcrJob: admit it, feed its documents into the queue, fold progress into status.

One function, :func:`tick`, is level-triggered and idempotent: the create/resume/update
handlers call it at once and a timer calls it every few seconds. Documents are enqueued
through a per-job dedupe set, so an operator restarted mid-job never enqueues one twice.
"""

from __future__ import annotations

import fnmatch
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx

from ocrfleet import keys
from ocrfleet.progress import JobCounts
from ocrfleet.queue import Task
from ocrfleet_operator import phases
from ocrfleet_operator.phases import Phase
from ocrfleet_operator.runtime import Runtime, pool_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Document:
    document_id: str
    location: str  # a URL or a file path
    filename: str


class SourceError(Exception):
    """The job's source cannot be listed or read; the message says what to fix."""


def job_key(meta: Mapping) -> str:
    """The job's name in Redis keys and queue messages (unique per namespace)."""
    return f"{meta['namespace']}.{meta['name']}"


def list_documents(job: Mapping) -> list[Document]:
    """The job's documents in a stable order with stable ids (the same after a restart)."""
    meta, source = job["metadata"], job["spec"]["source"]
    ns_uuid = uuid.UUID(meta["uid"]) if _is_uuid(meta["uid"]) else uuid.uuid5(uuid.NAMESPACE_URL, meta["uid"])
    if "urls" in source:
        locations = list(source["urls"])
    elif "volume" in source:
        root = Path(source["volume"]["path"])
        if not root.is_dir():
            raise SourceError(f"source.volume.path {root} is not a directory the operator can read")
        pattern = source["volume"].get("glob", "*")
        locations = sorted(str(p) for p in root.rglob("*") if p.is_file() and fnmatch.fnmatch(p.name, pattern))
    else:
        raise SourceError("source.s3 is not supported by this operator version; use source.urls or source.volume")
    return [
        Document(str(uuid.uuid5(ns_uuid, f"{i}:{loc}")), loc, Path(urlparse(loc).path).name or f"doc-{i}")
        for i, loc in enumerate(locations)
    ]


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
        return True
    except ValueError:
        return False


def fetch(location: str, *, http: Callable[[str], bytes] | None = None) -> bytes:
    parsed = urlparse(location)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path)).read_bytes()
    if http is not None:
        return http(location)
    response = httpx.get(location, timeout=60, follow_redirects=True)
    response.raise_for_status()
    return response.content


def feed(rt: Runtime, job: Mapping, cluster: Mapping, documents: list[Document]) -> int:
    """Enqueue the documents not enqueued yet; returns how many went in now."""
    meta, spec = job["metadata"], job["spec"]
    queue, progress = rt.queue_for(cluster), rt.progress_for(cluster)
    jkey = job_key(meta)
    dedupe = keys.job_enqueued(pool_of(cluster), jkey)
    queue.ensure_groups()
    progress.set_total(jkey, len(documents))
    seen = {m.decode() for m in queue.redis.smembers(dedupe)}
    added = 0
    for doc in documents:
        if doc.document_id in seen:
            continue
        try:
            blob = rt.blobs.put_bytes(fetch(doc.location))
        except Exception as exc:  # one unreadable document fails itself, not the job
            log.warning("job %s: cannot read %s: %s", jkey, doc.location, exc)
            if queue.redis.sadd(dedupe, doc.document_id):
                progress.record_enqueued(jkey)
                progress.record_outcome(jkey, doc.document_id, succeeded=False, now=time.time())
            continue
        task = Task(
            document_id=doc.document_id, tenant=meta["namespace"], blob=blob.ref, sha256=blob.sha256,
            job=jkey, namespace=meta["namespace"], filename=doc.filename,
            document_type=spec.get("documentType", "auto"), mask_fields=tuple(spec.get("maskFields", [])),
            priority=spec.get("priority", "normal"),
        )
        if queue.enqueue(task, dedupe_set=dedupe):
            progress.record_enqueued(jkey)
            added += 1
    return added


def tick(rt: Runtime, job: Mapping, *, now: datetime | None = None,
         on_phase: Callable[[str, str, str], None] | None = None) -> phases.Verdict | None:
    """Admit, feed, fold progress, write status. Returns the verdict (None when skipped)."""
    meta = job["metadata"]
    lock = rt.job_lock(meta["uid"])
    if not lock.acquire(blocking=False):
        return None  # another tick of this job is running
    try:
        return _tick(rt, job, now=now or datetime.now(UTC), on_phase=on_phase)
    finally:
        lock.release()


def _tick(rt: Runtime, job: Mapping, *, now: datetime, on_phase) -> phases.Verdict:
    meta, spec = job["metadata"], job["spec"]
    ns = meta["namespace"]
    previous = rt.status.known(meta["uid"], job.get("status"))
    current = Phase(previous["phase"]) if previous.get("phase") else None
    if current is not None and current.terminal:
        _expire(rt, job, previous, now)
        return phases.Verdict(current, phases.Reason(previous.get("reason", "AllDocumentsProcessed")),
                              previous.get("message", ""))
    cluster = rt.kube.get("OcrCluster", ns, spec["clusterRef"]["name"])
    jkey = job_key(meta)
    counts, source_error, listed = JobCounts(), "", False
    if cluster is not None:
        if current is None:  # admitted: say so before the (possibly long) feeding starts
            previous = _write(rt, job, cluster, phases.Verdict(Phase.PENDING, phases.Reason.ENQUEUING,
                              "admitted; listing and enqueuing documents"), counts, previous, now, on_phase)
            current = Phase.PENDING
        progress = rt.progress_for(cluster)
        progress_key = keys.job_progress(pool_of(cluster), jkey)
        if spec.get("suspend"):
            removed = rt.queue_for(cluster).remove_waiting(
                jkey, dedupe_set=keys.job_enqueued(pool_of(cluster), jkey))
            if removed:  # they go back in on resume
                progress.record_enqueued(jkey, -removed)
        else:
            try:
                counts = progress.read(jkey)
                if not progress.redis.hexists(progress_key, "total") or counts.enqueued < counts.total:
                    feed(rt, job, cluster, list_documents(job))
            except SourceError as exc:
                source_error = str(exc)
        counts = progress.read(jkey)
        listed = bool(progress.redis.hexists(progress_key, "total"))
    verdict = phases.next_phase(
        current=current, cluster_found=cluster is not None, suspend=bool(spec.get("suspend")), counts=counts,
        source_listed=listed, max_failed_fraction=spec["failurePolicy"]["maxFailedFraction"],
        source_error=source_error)
    _write(rt, job, cluster, verdict, counts, previous, now, on_phase)
    return verdict


def _write(rt: Runtime, job, cluster, verdict: phases.Verdict, counts: JobCounts, previous: dict, now,
           on_phase) -> dict:
    """Write the job's status through the one writer; post an Event when the phase changes."""
    meta = job["metadata"]
    status = _status(rt, job, cluster, verdict, counts, previous, now)
    changed_phase = verdict.phase.value != previous.get("phase")
    rt.status.write("OcrJob", meta["namespace"], meta["name"], meta["uid"], previous, status, urgent=changed_phase)
    if changed_phase and on_phase:
        on_phase(verdict.phase.value, verdict.reason.value, verdict.message)
    return {**previous, **status}


def _status(rt: Runtime, job, cluster, verdict: phases.Verdict, counts: JobCounts, previous, now) -> dict:
    ts = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    status: dict = {
        "observedGeneration": job["metadata"].get("generation"),
        "phase": verdict.phase.value,
        "reason": verdict.reason.value,
        "message": verdict.message,
        "counts": {"total": counts.total, "enqueued": counts.enqueued, "succeeded": counts.succeeded,
                   "failed": counts.failed, "inFlight": counts.in_flight, "done": counts.done},
        "results": {"store": "ocrfleet results store (GET /v1/jobs/{job}/results)", "job": job_key(job["metadata"])},
    }
    if verdict.phase is Phase.RUNNING and not previous.get("startTime"):
        status["startTime"] = ts
    if verdict.phase.terminal:
        status["completionTime"] = ts
        status["startTime"] = previous.get("startTime") or ts
    if cluster is not None and verdict.phase is Phase.RUNNING:
        progress = rt.progress_for(cluster)
        rate = round(progress.pages_per_second(now=now.timestamp()), 3)
        depth = rt.queue_for(cluster).depth().total
        ahead = max(depth - counts.in_flight, 0)
        status["pagesPerSecond"] = rate
        status["queuePosition"] = ahead
        eta = phases.eta_seconds(counts, queue_ahead=ahead, pages_per_second=rate)
        if eta is not None:
            status["etaSeconds"] = eta
    status["conditions"] = [
        {"type": t, "status": s, "reason": r, "message": m, "lastTransitionTime": _transition(previous, t, s, ts)}
        for t, s, r, m in phases.job_conditions(verdict)
    ]
    return status


def _transition(previous: Mapping, ctype: str, cstatus: str, ts: str) -> str:
    for c in previous.get("conditions") or []:
        if c.get("type") == ctype and c.get("status") == cstatus:
            return c.get("lastTransitionTime", ts)
    return ts


def _expire(rt: Runtime, job: Mapping, previous: Mapping, now: datetime) -> None:
    ttl = job["spec"].get("ttlSecondsAfterFinished")
    done = previous.get("completionTime")
    if ttl is None or not done:
        return
    finished = datetime.fromisoformat(done.replace("Z", "+00:00"))
    if (now - finished).total_seconds() >= ttl:
        log.info("job %s finished %s ago: deleting (ttlSecondsAfterFinished=%d)", job_key(job["metadata"]),
                 now - finished, ttl)
        rt.kube.delete("OcrJob", job["metadata"]["namespace"], job["metadata"]["name"])


def cleanup(rt: Runtime, job: Mapping) -> int:
    """The job is being deleted: drop its waiting entries and its counters."""
    meta = job["metadata"]
    cluster = rt.kube.get("OcrCluster", meta["namespace"], job["spec"]["clusterRef"]["name"])
    if cluster is None:
        return 0
    jkey = job_key(meta)
    queue = rt.queue_for(cluster)
    removed = queue.remove_waiting(jkey)
    rt.progress_for(cluster).forget(jkey)
    queue.redis.delete(keys.job_enqueued(pool_of(cluster), jkey))
    rt.status.forget(meta["uid"])
    return removed
