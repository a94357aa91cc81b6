"""The queue protocol against a real Redis: at-least-once, reclaim, retry, dead letters, depth."""

from __future__ import annotations

import threading
import time

from ocrfleet import keys
from ocrfleet.queue import Task, WorkQueue


def task(n: int, **kw) -> Task:
    return Task(document_id=f"doc-{n}", tenant="acme", blob=f"sha256:{n:064x}", sha256=f"{n:064x}", **kw)


def test_task_round_trips_through_stream_fields():
    t = task(1, job="j", mask_fields=("id_number", "name"), priority="high", attempt=2)
    assert Task.from_fields({k.encode(): v.encode() for k, v in t.to_fields().items()}) == t


def test_depth_counts_waiting_and_in_flight_until_acked(redis_client):
    q = WorkQueue(redis_client, "pool")
    q.ensure_groups()
    for i in range(5):
        q.enqueue(task(i))
    assert q.depth().total == 5 and q.depth().in_flight == 0
    got = q.read("w1", count=2)
    assert [d.task.document_id for d in got] == ["doc-0", "doc-1"]
    assert (q.depth().waiting, q.depth().in_flight) == (3, 2)
    q.ack(got[0])
    assert (q.depth().waiting, q.depth().in_flight) == (3, 1)


def test_high_priority_is_read_first(redis_client):
    q = WorkQueue(redis_client, "pool")
    q.ensure_groups()
    q.enqueue(task(1, priority="low"))
    q.enqueue(task(2))
    q.enqueue(task(3, priority="high"))
    order = [q.read("w", count=1)[0].task.document_id for _ in range(3)]
    assert order == ["doc-3", "doc-2", "doc-1"]


def test_a_blocked_read_wakes_for_any_priority(redis_client):
    q = WorkQueue(redis_client, "pool")
    q.ensure_groups()
    producer = threading.Timer(0.2, lambda: q.enqueue(task(1)))  # normal priority, not the last stream
    producer.start()
    started = time.monotonic()
    got = q.read("w", count=1, block_ms=5000)
    producer.join()
    assert [d.task.document_id for d in got] == ["doc-1"]
    assert time.monotonic() - started < 2.0  # woken by the task, not by the end of the wait


def test_dedupe_set_enqueues_a_document_once(redis_client):
    q = WorkQueue(redis_client, "pool")
    q.ensure_groups()
    dedupe = keys.job_progress("pool", "job-a") + ":enqueued"
    assert q.enqueue(task(1, job="job-a"), dedupe_set=dedupe) is not None
    assert q.enqueue(task(1, job="job-a"), dedupe_set=dedupe) is None
    assert q.depth().total == 1


def test_a_dead_workers_task_is_reclaimed_and_exhausted_ones_reported(redis_client):
    q = WorkQueue(redis_client, "pool", claim_idle_ms=1000, max_attempts=2)
    q.ensure_groups()
    q.enqueue(task(1))
    assert q.read("dead-worker")
    assert q.reclaim("live")[0] == []  # not idle long enough yet
    time.sleep(1.1)
    fresh, exhausted = q.reclaim("live")
    assert [d.task.document_id for d in fresh] == ["doc-1"] and exhausted == []
    assert fresh[0].deliveries == 2
    time.sleep(1.1)
    fresh, exhausted = q.reclaim("another")  # third delivery: past max_attempts
    assert fresh == [] and [d.task.document_id for d in exhausted] == ["doc-1"]
    q.dead_letter(exhausted[0], "worker died three times")
    assert q.depth().total == 0
    assert q.dead_letters()[0]["error"] == "worker died three times"


def test_retry_then_dead_letter_after_max_attempts(redis_client):
    q = WorkQueue(redis_client, "pool", max_attempts=2)
    q.ensure_groups()
    q.enqueue(task(1))
    assert q.retry(q.read("w")[0], "triton unavailable") is True
    second = q.read("w")[0]
    assert second.task.attempt == 2
    assert q.retry(second, "triton unavailable") is False
    assert q.depth().total == 0
    dead = q.dead_letters()
    assert len(dead) == 1 and dead[0]["attempt"] == "2" and dead[0]["error"] == "triton unavailable"


def test_remove_waiting_keeps_in_flight_entries(redis_client):
    q = WorkQueue(redis_client, "pool")
    q.ensure_groups()
    for i in range(4):
        q.enqueue(task(i, job="doomed"))
    q.enqueue(task(9, job="other"))
    taken = q.read("w", count=1)
    assert taken[0].task.document_id == "doc-0"
    assert q.remove_waiting("doomed") == 3
    assert (q.depth().waiting, q.depth().in_flight) == (1, 1)


def test_remove_waiting_frees_their_dedupe_entries(redis_client):
    q = WorkQueue(redis_client, "pool")
    q.ensure_groups()
    for i in range(3):
        assert q.enqueue(task(i, job="paused"), dedupe_set="seen")
    q.read("w", count=1)  # doc-0 in flight stays enqueued
    assert q.remove_waiting("paused", dedupe_set="seen") == 2
    assert {m.decode() for m in redis_client.smembers("seen")} == {"doc-0"}
    assert q.enqueue(task(1, job="paused"), dedupe_set="seen") is not None
    assert q.enqueue(task(0, job="paused"), dedupe_set="seen") is None


def test_pools_of_one_name_in_two_namespaces_never_share_a_queue(redis_client):
    loans, audit = WorkQueue(redis_client, keys.pool("loans", "ocr")), WorkQueue(redis_client, keys.pool("audit", "ocr"))
    loans.enqueue(Task(document_id="d1", tenant="t", blob="sha256:" + "a" * 64, sha256="a" * 64))
    assert loans.depth().total == 1
    assert audit.depth().total == 0
    assert keys.stream(keys.pool("loans", "ocr")) == "ocrfleet:loans/ocr:stream:normal"
