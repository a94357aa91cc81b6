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
