"""The queue protocol against a real Redis: at-least-once, reclaim, retry, dead letters, depth."""

from __future__ import annotations

import threading
import time

import pytest
import redis

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
    q.read("w2", count=1)
    assert q.in_flight_by_consumer() == {"w1": 1, "w2": 1}


def test_depth_before_any_group_or_entry_is_zero_and_the_async_read_agrees(redis_client, redis_server):
    import asyncio

    import redis.asyncio as aioredis

    from ocrfleet.queue import depth_from_replies, queue_depth_commands

    q = WorkQueue(redis_client, "fresh")
    assert q.depth().total == 0 and q.in_flight_by_consumer() == {}
    q.ensure_groups()
    for i in range(3):
        q.enqueue(task(i))
    q.read("w1", count=1)

    async def read() -> int:  # the API's backpressure reads the same rule over the asyncio client
        client = aioredis.Redis.from_url(redis_server.url)
        try:
            pipe = queue_depth_commands(client.pipeline(transaction=False), "fresh")
            return depth_from_replies(await pipe.execute(raise_on_error=False))
        finally:
            await client.aclose()

    assert asyncio.run(read()) == q.depth() and q.depth().in_flight == 1


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


def test_a_big_job_goes_in_once_in_bounded_batches_counted_as_it_goes(redis_client):
    from ocrfleet import intake
    from ocrfleet.progress import JobProgress

    q, progress = WorkQueue(redis_client, "pool"), JobProgress(redis_client, "pool")
    template = Task(document_id="6f0c1e4e-2a47-4a50-9d3b-8d7f0a1c2b3d", tenant="ocrjob:loans", job="loans.big")
    tasks = intake.document_tasks(template, [f"https://docs.example.com/inbox/{i}.png" for i in range(2300)])
    counted = []  # the job's enqueued count after each bounded batch
    real = q.enqueue_new

    def enqueue_new(batch, **kw):
        added = real(batch, **kw)
        counted.append(progress.read("loans.big").enqueued)
        return added

    q.enqueue_new = enqueue_new
    assert intake.enqueue_job(q, progress, "loans.big", tasks, batch=500) == 2300
    assert counted == [500, 1000, 1500, 2000, 2300], "each bounded batch is counted as it goes in"
    assert intake.enqueue_job(q, progress, "loans.big", tasks, batch=500) == 0, "a second feed adds nothing"
    assert q.depth().total == 2300 and progress.read("loans.big").enqueued == 2300
    ids = [f[b"document_id"] for _, f in redis_client.xrange(keys.stream("pool", "normal"))]
    assert len(set(ids)) == 2300


def test_a_requests_tasks_go_in_together_or_not_at_all_when_the_connection_drops(redis_client, redis_server):
    """The connection to Redis drops after three tasks' worth of bytes: none of the ten is queued
    (the API then answers 503 and the client's retry queues each document once)."""
    from tests.conftest import CuttingProxy

    tasks = [task(i) for i in range(10)]
    one = len(b"".join(f"{k}{v}".encode() for k, v in tasks[0].to_fields().items())) + 200
    proxy = CuttingProxy(redis_server.port, cut_after=3 * one)
    try:
        cut = redis.Redis(port=proxy.port, socket_timeout=5, retry=None)
        with pytest.raises(redis.ConnectionError):
            WorkQueue(cut, "pool").enqueue_all(tasks)
    finally:
        proxy.close()
    assert proxy.forwarded >= one, "the cut came in the middle of the request"
    assert redis_client.xlen(keys.stream("pool", "normal")) == 0
    WorkQueue(redis_client, "pool").enqueue_all(tasks)  # the retry
    assert redis_client.xlen(keys.stream("pool", "normal")) == 10


def test_enqueue_new_counts_each_task_in_the_step_that_enqueues_it(redis_client):
    """A feed killed between batches leaves every enqueued task counted, and none twice."""
    from ocrfleet.progress import JobProgress

    q, progress = WorkQueue(redis_client, "pool"), JobProgress(redis_client, "pool")
    q.ensure_groups()
    dedupe = keys.job_enqueued("pool", "ns.job")
    tasks = [task(i, job="ns.job") for i in range(4)]
    assert q.enqueue_new(tasks[:3], dedupe_set=dedupe, count_in=progress.enqueued_counter("ns.job")) == 3
    assert q.enqueue_new(tasks, dedupe_set=dedupe, count_in=progress.enqueued_counter("ns.job")) == 1
    assert progress.read("ns.job").enqueued == 4 and q.depth().total == 4
    assert q.enqueue_new(tasks[:1], dedupe_set=dedupe) == 0 and progress.read("ns.job").enqueued == 4


def test_a_jobs_place_counts_only_the_work_ahead_of_it_and_moves_only_when_workers_take_work(redis_client):
    """Three jobs fed one after another, then API work of every priority: the middle job's place
    is the first job's waiting documents plus any urgent work, never what arrived after it."""
    from ocrfleet import intake
    from ocrfleet.progress import JobProgress

    q, progress = WorkQueue(redis_client, "pool"), JobProgress(redis_client, "pool")
    for job, n in (("ns.first", 4), ("ns.middle", 3), ("ns.last", 5)):
        template = Task(document_id=f"00000000-0000-4000-8000-{len(job):012d}", tenant="ocrjob:ns", job=job)
        intake.enqueue_job(q, progress, job, intake.document_tasks(template, [f"{job}/{i}" for i in range(n)]))
    place = lambda job: q.waiting_ahead("normal", progress.read(job).queue_mark)  # noqa: E731
    assert [place(j) for j in ("ns.first", "ns.middle", "ns.last")] == [0, 4, 7]
    q.enqueue(task(100, priority="low"))
    q.enqueue(task(101))  # after every job: behind all of them
    assert [place(j) for j in ("ns.first", "ns.middle", "ns.last")] == [0, 4, 7], "later work is not ahead"
    q.enqueue(task(102, priority="high"))
    assert place("ns.middle") == 5, "urgent work is taken first, whenever it came"

    for _ in range(3):  # the high one, then two of the first job's
        q.ack(q.read("w1", count=1)[0])
    assert (place("ns.first"), place("ns.middle"), place("ns.last")) == (0, 2, 5)
    assert q.waiting_ahead("normal", None) == 2 + 3 + 5 + 1, "no mark: every waiting entry of its priority"

    assert q.remove_waiting("ns.first") == 2  # deleted before any worker took them
    assert (place("ns.middle"), place("ns.last")) == (0, 3)
    got = q.read("w1", count=1)
    assert got[0].task.job == "ns.middle"
    assert (place("ns.middle"), place("ns.last")) == (0, 2), "workers passing the removed entries count right"
    q.remove_waiting("ns.last")
    later = Task(document_id="00000000-0000-4000-8000-000000000099", tenant="ocrjob:ns", job="ns.later")
    intake.enqueue_job(q, progress, "ns.later", intake.document_tasks(later, ["x"]))
    assert place("ns.later") == 2 + 1, "the middle job's two and the API's one: nothing removed still counts"
