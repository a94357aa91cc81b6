"""An OcrJob's status, built from counts and the pool's rate (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from ocrfleet_operator.jobstatus import job_status
from ocrfleet_operator.phases import Phase, Reason, Verdict

from ocrfleet.progress import JobCounts

from .conftest import make_cluster

JOB = {"metadata": {"name": "march", "namespace": "loans", "uid": "u1", "generation": 2}, "spec": {}}
NOW = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)


def test_a_running_job_shows_progress_rate_eta_and_where_its_results_are():
    counts = JobCounts(total=100, enqueued=100, succeeded=40, failed=2)
    status = job_status(JOB, make_cluster(namespace="loans"), Verdict(Phase.RUNNING, Reason.PROCESSING, "42/100"),
                        counts, {}, NOW, pages_per_second=2.0, queue_ahead=22)
    assert status["counts"] == {"total": 100, "enqueued": 100, "succeeded": 40, "failed": 2, "inFlight": 58,
                                "done": 42}
    assert status["startTime"] == "2026-12-01T10:00:00Z" and "completionTime" not in status
    assert status["queuePosition"] == 22 and status["pagesPerSecond"] == 2.0 and status["etaSeconds"] > 0
    assert status["results"] == {"job": "loans.march", "path": "/v1/namespaces/loans/ocrjobs/march/results",
                                 "url": "http://pool-api.loans.svc:80/v1/namespaces/loans/ocrjobs/march/results"}
    assert status["observedGeneration"] == 2


def test_a_finished_job_keeps_its_start_and_records_its_end():
    previous = {"startTime": "2026-12-01T09:00:00Z",
                "conditions": [{"type": "Complete", "status": "False", "lastTransitionTime": "2026-12-01T09:00:00Z"}]}
    status = job_status(JOB, None, Verdict(Phase.SUCCEEDED, Reason.ALL_DONE, "done"), JobCounts(total=1, enqueued=1,
                        succeeded=1), previous, NOW)
    assert (status["startTime"], status["completionTime"]) == ("2026-12-01T09:00:00Z", "2026-12-01T10:00:00Z")
    assert "pagesPerSecond" not in status and "url" not in status["results"]
    assert status["etaSeconds"] is None and status["queuePosition"] is None, "a finished job has no ETA left"
    complete = next(c for c in status["conditions"] if c["type"] == "Complete")
    assert complete["status"] == "True" and complete["lastTransitionTime"] == "2026-12-01T10:00:00Z"
    assert {c["observedGeneration"] for c in status["conditions"]} == {2}, "each condition says which spec it saw"
    unchanged = next(c for c in job_status(JOB, None, Verdict(Phase.SUCCEEDED, Reason.ALL_DONE, "done"),
                                           JobCounts(total=1, enqueued=1, succeeded=1), status, NOW.replace(hour=11))
                     ["conditions"] if c["type"] == "Complete")
    assert unchanged["lastTransitionTime"] == "2026-12-01T10:00:00Z", "the time moves only when the status flips"
