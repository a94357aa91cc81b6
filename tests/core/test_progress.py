"""Job progress counters count each document once, whatever the retries."""

from __future__ import annotations

from ocrfleet.progress import JobProgress


def test_outcomes_are_counted_exactly_once(redis_client):
    p = JobProgress(redis_client, "pool")
    p.set_total("job", 3)
    p.record_enqueued("job", 3)
    assert p.record_outcome("job", "d1", succeeded=True, pages=2, now=100.0)
    assert not p.record_outcome("job", "d1", succeeded=True, pages=2, now=101.0)  # a retry after a crash
    assert p.record_outcome("job", "d2", succeeded=False, now=102.0)
    counts = p.read("job")
    assert (counts.total, counts.succeeded, counts.failed, counts.pages) == (3, 1, 1, 2)
    assert counts.done == 2 and counts.in_flight == 1
    assert p.pages_per_second(now=102.0, window=10) == 0.2
    p.forget("job")
    assert p.read("job").total == 0


def test_a_job_is_listed_once_its_total_is_set_even_when_the_total_is_zero(redis_client):
    """The operator tells "not listed yet" from "listed, empty" in the same read as the counts, so a
    feed that sets the total between two reads cannot make a job look empty (and fail it)."""
    progress = JobProgress(redis_client, "pool")
    before = progress.read("ns.job")
    assert not before.listed and before.total == 0
    progress.set_total("ns.job", 3)
    progress.record_enqueued("ns.job", 2)
    after = progress.read("ns.job")
    assert after.listed and (after.total, after.enqueued, after.in_flight) == (3, 2, 2)
    progress.set_total("ns.empty", 0)
    assert progress.read("ns.empty").listed
