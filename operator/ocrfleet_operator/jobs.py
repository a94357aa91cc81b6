"""Reconciling one OcrJob: admit it, enqueue its references, fold progress into status.

One function, :func:`tick`, is level-triggered and idempotent: the create/resume/update
handlers call it at once and a timer calls it every few seconds. What the source turns into
on the queue is :mod:`.jobsource`'s (references only: workers list and fetch); tasks go in
through a per-job dedupe set (:mod:`ocrfleet.intake`), so an operator restarted mid-job
never enqueues one twice. Feeding runs on the runtime's feeder threads, in bounded batches
(:class:`~ocrfleet_operator.runtime.Feeder`), never in the handler's thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from ocrfleet import intake, keys
from ocrfleet.progress import Completion, JobCounts
from ocrfleet_operator import conditions, jobsource, jobstatus, metrics, phases
from ocrfleet_operator.jobsource import job_key
from ocrfleet_operator.phases import Phase
from ocrfleet_operator.runtime import Runtime, pool_of

log = logging.getLogger(__name__)


def feed(rt: Runtime, job: Mapping, cluster: Mapping) -> None:
    """Enqueue the job's references: its URL documents, or the listing task of its volume/S3 source."""
    queue, progress = rt.queue_for(cluster), rt.progress_for(cluster)
    tasks = jobsource.url_documents(job, cluster)
    if tasks is not None:
        intake.enqueue_job(queue, progress, job_key(job["metadata"]), tasks)
    else:
        intake.enqueue_listing(queue, jobsource.listing(job, cluster))


def tick(rt: Runtime, job: Mapping, *, now: datetime | None = None,
         on_phase: Callable[[str, str, str], None] | None = None) -> phases.Verdict | None:
    """Admit, feed, fold progress, write status. Returns the verdict (None when skipped)."""
    meta = job["metadata"]
    lock = rt.job_lock(meta["uid"])
    if not lock.acquire(blocking=False):
        return None  # another tick of this job is running
    try:
        with metrics.reconcile("OcrJob"):
            verdict = _tick(rt, job, now=now or datetime.now(UTC), on_phase=on_phase)
        metrics.job_phase(meta["namespace"], meta["uid"], verdict.phase.value)
        return verdict
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
    cluster = rt.cluster(ns, spec["clusterRef"]["name"])
    jkey = job_key(meta)
    counts, source_error = JobCounts(), ""
    if cluster is not None:
        progress = rt.progress_for(cluster)
        if current is None:
            before = progress.completion(jkey)
            if before is not None and before.spec_digest == jobsource.spec_digest(job):
                verdict = phases.completed_before(before)  # the same job again: GitOps after its TTL
                _write(rt, job, cluster, verdict, before.counts, previous, now, on_phase)
                return verdict
            if before is not None:
                progress.forget_completion(jkey)  # a new job under an old name
            # admitted: say so before the (possibly long) feeding starts
            previous = _write(rt, job, cluster, phases.Verdict(Phase.PENDING, phases.Reason.ENQUEUING,
                              "admitted; listing and enqueuing documents"), counts, previous, now, on_phase)
            current = Phase.PENDING
        if spec["suspend"]:
            removed = rt.queue_for(cluster).remove_waiting(
                jkey, dedupe_set=keys.job_enqueued(pool_of(cluster), jkey))
            if removed:  # they go back in on resume
                progress.record_enqueued(jkey, -removed)
        else:
            seq = rt.progress_sequence(cluster, now.timestamp()) if current is Phase.RUNNING else None
            unchanged = phases.Verdict(current, phases.Reason(previous.get("reason", "Processing")),
                                       previous.get("message", ""))
            if seq is not None and rt.job_quiet(meta["uid"], pool_of(cluster), seq, now.timestamp()):
                return unchanged  # nothing in the pool moved: not even this job's counters are read
            counts = progress.read(jkey)
            if seq is not None and _standing_still(counts, previous):
                if not rt.full_tick_due(meta["uid"], pool_of(cluster), seq, now.timestamp()):
                    return unchanged
            else:
                rt.full_tick_done(meta["uid"], now.timestamp())
            if not counts.listed or counts.enqueued < counts.total:
                rt.feeder.submit(meta["uid"], lambda: feed(rt, job, cluster))
            source_error = progress.source_error(jkey)  # a worker could not list the source
        # one read: a feed setting the total between two reads must not look like an empty source
        counts = progress.read(jkey)
    verdict = phases.next_phase(
        current=current, cluster_found=cluster is not None, suspend=spec["suspend"], counts=counts,
        source_listed=counts.listed, max_failed_fraction=spec["failurePolicy"]["maxFailedFraction"],
        source_error=source_error)
    if verdict.phase.terminal and cluster is not None:  # remembered first: it outlives the object
        rt.progress_for(cluster).record_completion(jkey, Completion(
            spec_digest=jobsource.spec_digest(job), phase=verdict.phase.value, reason=verdict.reason.value,
            message=verdict.message, counts=counts, uid=meta["uid"], completed_at=conditions.rfc3339(now)))
    _write(rt, job, cluster, verdict, counts, previous, now, on_phase)
    return verdict


def _standing_still(counts: JobCounts, previous: Mapping) -> bool:
    """All enqueued, and no document finished since the status was written: a waiting job.
    Its full tick (rate, ETA, queue position, a dozen reads) then runs only every
    :data:`~ocrfleet_operator.runtime.FULL_TICK_EVERY_S` (every
    :data:`~ocrfleet_operator.runtime.SETTLED_FULL_TICK_EVERY_S` once the pool has settled), and while the pool's progress sequence
    stands still its counters are not read either: hundreds of waiting jobs cost one Redis read
    a second for the pool."""
    shown = previous.get("counts") or {}
    return counts.listed and counts.enqueued >= counts.total and (
        counts.total, counts.enqueued, counts.succeeded, counts.failed) == tuple(
        shown.get(k) for k in ("total", "enqueued", "succeeded", "failed"))


def _write(rt: Runtime, job, cluster, verdict: phases.Verdict, counts: JobCounts, previous: dict, now,
           on_phase) -> dict:
    """Write the job's status through the one writer; post an Event when the phase changes."""
    meta = job["metadata"]
    rate = ahead = None
    if cluster is not None and verdict.phase is Phase.RUNNING:
        rate = rt.progress_for(cluster).pages_per_second(now=now.timestamp())
        ahead = rt.queue_for(cluster).waiting_ahead(job["spec"]["priority"], counts.queue_mark)
    status = jobstatus.job_status(job, cluster, verdict, counts, previous, now, pages_per_second=rate,
                                  queue_ahead=ahead)
    metrics.job_documents(meta["namespace"], meta["name"], verdict.phase is Phase.RUNNING, counts.total, counts.done)
    changed_phase = verdict.phase.value != previous.get("phase")
    rt.status.write("OcrJob", meta["namespace"], meta["name"], meta["uid"], previous, status, urgent=changed_phase)
    if changed_phase and on_phase:
        on_phase(verdict.phase.value, verdict.reason.value, verdict.message)
    return {**previous, **status}


def _expire(rt: Runtime, job: Mapping, previous: Mapping, now: datetime) -> None:
    ttl = job["spec"].get("ttlSecondsAfterFinished")
    done = previous.get("completionTime")
    if ttl is None or not done:
        return
    finished = datetime.fromisoformat(done.replace("Z", "+00:00"))
    if (now - finished).total_seconds() >= ttl:
        log.info("job %s finished %s ago: deleting (ttlSecondsAfterFinished=%d)", job_key(job["metadata"]),
                 now - finished, ttl)
        # off the timer's thread: kopf releases a deleted object only once its timers have stopped,
        # and this tick runs in one of them
        meta = job["metadata"]
        rt.feeder.submit(f"{meta['uid']}:delete", lambda: rt.kube.delete("OcrJob", meta["namespace"], meta["name"]))


def cleanup(rt: Runtime, job: Mapping) -> int:
    """The job is being deleted: drop its waiting entries and its counters."""
    meta = job["metadata"]
    metrics.forget_job(meta["uid"])
    rt.forget_job(meta["uid"])
    metrics.job_documents(meta["namespace"], meta["name"], running=False)
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
