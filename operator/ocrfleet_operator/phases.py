"""An OcrJob's life as a state machine: the next phase from its counters and its spec.

::

    Pending ──▶ Running ──▶ Succeeded
       │  ▲        │  ▲  └──▶ Failed      (more failed documents than the policy allows)
       ▼  │        ▼  │
      Suspended ◀──┘  │                  (spec.suspend; false resumes)

Succeeded and Failed are terminal. A job applied again after it finished and was deleted (its
TTL under GitOps), with the same spec, starts in the phase it ended in (reason CompletedBefore,
:func:`completed_before`) and processes nothing. Everything here is pure; :mod:`.jobs` feeds it the
counters read from Redis and writes the result through :mod:`.status`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from ocrfleet.progress import Completion, JobCounts
from ocrfleet_operator import conditions
from ocrfleet_operator.conditions import Condition


class Phase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"

    @property
    def terminal(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED)


class Reason(StrEnum):
    CLUSTER_NOT_FOUND = "ClusterNotFound"
    ENQUEUING = "Enqueuing"
    PROCESSING = "Processing"
    SUSPENDED = "Suspended"
    ALL_DONE = "AllDocumentsProcessed"
    TOO_MANY_FAILURES = "TooManyFailures"
    EMPTY_SOURCE = "EmptySource"
    SOURCE_ERROR = "SourceError"
    COMPLETED_BEFORE = "CompletedBefore"


@dataclass(frozen=True)
class Verdict:
    phase: Phase
    reason: Reason
    message: str


def allowed_failures(total: int, max_failed_fraction: float) -> int:
    """How many documents may fail before the job fails."""
    return math.floor(total * max_failed_fraction + 1e-9)


def next_phase(
    *,
    current: Phase | None,
    cluster_found: bool,
    suspend: bool,
    counts: JobCounts,
    source_listed: bool,
    max_failed_fraction: float,
    source_error: str = "",
) -> Verdict:
    """The phase a job should be in now.

    ``source_listed`` is True once the operator has listed the source and set
    ``counts.total``; before that the job cannot finish.
    """
    if current is not None and current.terminal:
        return Verdict(current, _terminal_reason(current, counts, max_failed_fraction), _summary(counts))
    if source_error:
        return Verdict(Phase.FAILED, Reason.SOURCE_ERROR, source_error)
    if not cluster_found:
        return Verdict(Phase.PENDING, Reason.CLUSTER_NOT_FOUND,
                       "the OcrCluster named in spec.clusterRef does not exist in this namespace; "
                       "create it or fix spec.clusterRef.name")
    total = counts.total
    if source_listed and total == 0:
        return Verdict(Phase.FAILED, Reason.EMPTY_SOURCE, "the source holds no documents; check spec.source")
    if source_listed and counts.failed > allowed_failures(total, max_failed_fraction):
        return Verdict(Phase.FAILED, Reason.TOO_MANY_FAILURES,
                       f"{counts.failed} of {total} documents failed; spec.failurePolicy.maxFailedFraction "
                       f"allows {allowed_failures(total, max_failed_fraction)}")
    if source_listed and counts.done >= total:
        return Verdict(Phase.SUCCEEDED, Reason.ALL_DONE, _summary(counts))
    if suspend:
        return Verdict(Phase.SUSPENDED, Reason.SUSPENDED, f"suspended; {_summary(counts)}")
    if counts.enqueued > 0 or counts.done > 0:
        return Verdict(Phase.RUNNING, Reason.PROCESSING, _summary(counts))
    return Verdict(Phase.PENDING, Reason.ENQUEUING, "listing and enqueuing documents")


def completed_before(completion: Completion) -> Verdict:
    """The verdict of a job that already ran with this spec under this name."""
    return Verdict(Phase(completion.phase), Reason.COMPLETED_BEFORE,
                   f"ran before with this spec (uid {completion.uid}, finished {completion.completed_at}): "
                   f"{completion.message}; nothing is processed again (its results stay readable); "
                   "to run it again, give it another name or change its spec")


def _terminal_reason(phase: Phase, counts: JobCounts, max_failed_fraction: float) -> Reason:
    if phase is Phase.SUCCEEDED:
        return Reason.ALL_DONE
    if counts.total and counts.failed > allowed_failures(counts.total, max_failed_fraction):
        return Reason.TOO_MANY_FAILURES
    return Reason.EMPTY_SOURCE if counts.total == 0 else Reason.SOURCE_ERROR


def _summary(counts: JobCounts) -> str:
    return f"{counts.done}/{counts.total} documents done, {counts.failed} failed"


def eta_seconds(counts: JobCounts, *, queue_ahead: int, pages_per_second: float) -> int | None:
    """Seconds until this job is done at the cluster's measured rate (None while unmeasured)."""
    if pages_per_second <= 0:
        return None
    remaining = max(counts.total - counts.done, 0) + max(queue_ahead, 0)
    return math.ceil(remaining / pages_per_second)


def job_conditions(verdict: Verdict) -> list[Condition]:
    """The job's conditions: Complete, Failed, Suspended, and kstatus's pair (Reconciling while
    Pending or Running, Stalled when Failed)."""
    complete, failed, suspended = (
        Condition(kind, _b(verdict.phase is phase), verdict.reason.value, verdict.message)
        for kind, phase in (("Complete", Phase.SUCCEEDED), ("Failed", Phase.FAILED), ("Suspended", Phase.SUSPENDED)))
    working = verdict.phase in (Phase.PENDING, Phase.RUNNING)
    reconciling = Condition("Reconciling", _b(working), verdict.reason.value, verdict.message)
    return [complete, failed, suspended, *conditions.kstatus_pair(reconciling=reconciling, stalled=failed)]


def _b(value: bool) -> str:
    return "True" if value else "False"
