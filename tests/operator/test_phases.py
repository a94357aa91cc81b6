"""The OcrJob state machine: the next phase from counters, suspend and the failure policy."""

from __future__ import annotations

import pytest
from ocrfleet_operator.phases import (
    Phase,
    Reason,
    Verdict,
    allowed_failures,
    eta_seconds,
    job_conditions,
    next_phase,
)

from ocrfleet.progress import JobCounts


def verdict(current=None, *, found=True, suspend=False, listed=True, fraction=0.1, error="", **counts):
    return next_phase(current=current, cluster_found=found, suspend=suspend, counts=JobCounts(**counts),
                      source_listed=listed, max_failed_fraction=fraction, source_error=error)


def test_missing_cluster_is_pending_with_a_clear_reason():
    v = verdict(found=False)
    assert (v.phase, v.reason) == (Phase.PENDING, Reason.CLUSTER_NOT_FOUND)
    assert "spec.clusterRef" in v.message


def test_pending_until_something_is_enqueued():
    assert verdict(listed=False).phase is Phase.PENDING
    assert verdict(total=50).phase is Phase.PENDING


def test_running_while_documents_are_out():
    v = verdict(total=50, enqueued=50, succeeded=10)
    assert (v.phase, v.reason) == (Phase.RUNNING, Reason.PROCESSING)
    assert v.message == "10/50 documents done, 0 failed"


def test_succeeds_when_all_done_within_the_policy():
    assert verdict(Phase.RUNNING, total=50, enqueued=50, succeeded=45, failed=5).phase is Phase.SUCCEEDED
    assert verdict(Phase.RUNNING, total=50, enqueued=50, succeeded=50).reason is Reason.ALL_DONE


def test_fails_as_soon_as_failures_exceed_the_policy():
    v = verdict(Phase.RUNNING, total=50, enqueued=50, succeeded=3, failed=6)
    assert (v.phase, v.reason) == (Phase.FAILED, Reason.TOO_MANY_FAILURES)
    assert "6 of 50" in v.message and "allows 5" in v.message


def test_zero_tolerance_fails_on_the_first_failure():
    assert verdict(total=10, enqueued=10, failed=1, fraction=0.0).phase is Phase.FAILED
    assert verdict(total=10, enqueued=10, failed=10, succeeded=0, fraction=1.0).phase is Phase.SUCCEEDED


def test_suspend_and_resume():
    assert verdict(Phase.RUNNING, suspend=True, total=50, enqueued=20, succeeded=5).phase is Phase.SUSPENDED
    assert verdict(Phase.SUSPENDED, suspend=False, total=50, enqueued=20, succeeded=5).phase is Phase.RUNNING
    # a suspended job whose documents all finished still completes
    assert verdict(Phase.SUSPENDED, suspend=True, total=5, enqueued=5, succeeded=5).phase is Phase.SUCCEEDED


@pytest.mark.parametrize("terminal", [Phase.SUCCEEDED, Phase.FAILED])
def test_terminal_phases_stay(terminal):
    assert verdict(terminal, found=False, total=50, enqueued=50, succeeded=1).phase is terminal


def test_empty_source_and_source_errors_fail_with_the_reason():
    assert verdict(total=0).reason is Reason.EMPTY_SOURCE
    v = verdict(error="file:///x/a.png: no such file")
    assert (v.phase, v.message) == (Phase.FAILED, "file:///x/a.png: no such file")


def test_allowed_failures_and_eta():
    assert allowed_failures(50, 0.1) == 5
    assert allowed_failures(3, 0.1) == 0
    assert allowed_failures(10, 0.3) == 3  # no float surprise at 2.9999
    assert eta_seconds(JobCounts(total=100, succeeded=40), queue_ahead=20, pages_per_second=4.0) == 20
    assert eta_seconds(JobCounts(total=100), queue_ahead=0, pages_per_second=0.0) is None


def test_job_conditions():
    v = verdict(Phase.RUNNING, total=2, enqueued=2, succeeded=2)
    assert [(c.type, c.status) for c in job_conditions(v)] == [
        ("Complete", "True"), ("Failed", "False"), ("Suspended", "False"), ("Reconciling", "False"), ("Stalled", "False")]


@pytest.mark.parametrize("phase, reconciling, stalled", [
    (Phase.PENDING, "True", "False"), (Phase.RUNNING, "True", "False"), (Phase.SUCCEEDED, "False", "False"),
    (Phase.FAILED, "False", "True"), (Phase.SUSPENDED, "False", "False")])
def test_jobs_carry_the_conditions_kstatus_reads(phase, reconciling, stalled):
    """kstatus (Flux, kpt) reads Reconciling and Stalled: a running job is InProgress, a failed one
    Failed, a finished or suspended one Current."""
    got = {c.type: c.status for c in job_conditions(Verdict(phase, Reason.PROCESSING, ""))}
    assert (got["Reconciling"], got["Stalled"]) == (reconciling, stalled)
