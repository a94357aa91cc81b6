"""An OcrJob's status from what the operator observed (pure): counts, timing, results, conditions."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from ocrfleet import keys
from ocrfleet.progress import JobCounts
from ocrfleet_operator import builders, conditions, phases
from ocrfleet_operator.phases import Phase


def job_status(job: Mapping, cluster: Mapping | None, verdict: phases.Verdict, counts: JobCounts,
               previous: Mapping, now: datetime, *, pages_per_second: float | None = None,
               queue_ahead: int | None = None) -> dict:
    """The status to write; the rate and the documents waiting ahead of the job
    (:meth:`~ocrfleet.queue.WorkQueue.waiting_ahead`) are the pool's, read while the job runs."""
    ts = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    status: dict = {
        "observedGeneration": job["metadata"].get("generation"),
        "phase": verdict.phase.value,
        "reason": verdict.reason.value,
        "message": verdict.message,
        "counts": {"total": counts.total, "enqueued": counts.enqueued, "succeeded": counts.succeeded,
                   "failed": counts.failed, "inFlight": counts.in_flight, "done": counts.done},
        "results": results_ref(job, cluster),
    }
    if verdict.phase is Phase.RUNNING and not previous.get("startTime"):
        status["startTime"] = ts
    if verdict.phase.terminal:
        status["completionTime"] = ts
        status["startTime"] = previous.get("startTime") or ts
        status["etaSeconds"] = status["queuePosition"] = None  # null removes them (a merge patch)
    if pages_per_second is not None and queue_ahead is not None:
        rate = round(pages_per_second, 3)
        status["pagesPerSecond"] = rate
        status["queuePosition"] = queue_ahead
        eta = phases.eta_seconds(counts, queue_ahead=queue_ahead, pages_per_second=rate)
        if eta is not None:
            status["etaSeconds"] = eta
    status["conditions"] = conditions.merge(previous.get("conditions") or [], phases.job_conditions(verdict),
                                            generation=job["metadata"].get("generation", 0), now=now)
    return status


def results_ref(job: Mapping, cluster: Mapping | None) -> dict:
    """Where the job's results are read: the pool API's route, paged (a key whose tenant was granted
    the job's namespace)."""
    meta = job["metadata"]
    ref = {"job": keys.ocrjob(meta["namespace"], meta["name"]), "path": f"/v1/namespaces/{meta['namespace']}/ocrjobs/{meta['name']}/results"}
    if cluster is not None:
        ref["url"] = f"{builders.api_endpoint(cluster)}{ref['path']}"
    return ref
