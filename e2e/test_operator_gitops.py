"""OcrJob under GitOps: a job deleted by its TTL and applied again unchanged (Argo CD's auto-sync
recreating what the operator deleted) does not process its documents again.

The test plays the worker on the operator's Redis, as e2e/test_operator_job.py does.
"""

from __future__ import annotations

import time

from e2e.operator_helpers import get_json, poll, with_redis
from e2e.test_operator_job import CLUSTER, documents, job_manifest, status, work
from ocrfleet import keys
from ocrfleet.queue import WorkQueue

pytest_plugins = ["e2e.operator_support"]


def added_to_the_queue(redis, pool: str) -> int:
    """How many entries the pool's streams were ever given (XINFO's entries-added)."""
    return sum(redis.xinfo_stream(keys.stream(pool, p))["entries-added"] for p in keys.PRIORITIES
               if redis.exists(keys.stream(pool, p)))


def test_a_job_deleted_by_its_ttl_and_applied_again_unchanged_is_not_reprocessed(
        kind_cluster, ns, redis, operator, operator_redis):
    pool = keys.pool(ns, "batch")
    kind_cluster.kubectl("apply", "-n", ns, "-f", "-", input=with_redis(CLUSTER, operator_redis.url))
    manifest = job_manifest("monthly", "batch", documents(5), ttlSecondsAfterFinished=4)
    kind_cluster.kubectl("apply", "-n", ns, "-f", "-", input=manifest)
    first = poll(lambda: get_json(kind_cluster, "ocrjob", "monthly", "-n", ns, check=False), 30, "created")
    poll(lambda: status(kind_cluster, ns, "monthly").get("counts", {}).get("enqueued") == 5, 30, "5 enqueued")
    seen: list[str] = []
    assert work(redis, pool, limit=5, seen=seen) == 5
    poll(lambda: status(kind_cluster, ns, "monthly").get("phase") == "Succeeded", 30, "Succeeded")
    def still_there() -> dict | None:
        obj = get_json(kind_cluster, "ocrjob", "monthly", "-n", ns, check=False)
        return obj and {"metadata": obj["metadata"], "status": obj.get("status")}

    deadline = time.monotonic() + 30
    while (left := still_there()) is not None:
        assert time.monotonic() < deadline, f"not deleted by its TTL within 30 s: {left}"
        time.sleep(0.25)
    added = added_to_the_queue(redis, pool)

    kind_cluster.kubectl("apply", "-n", ns, "-f", "-", input=manifest)  # what auto-sync does next
    again = poll(lambda: (s := status(kind_cluster, ns, "monthly")).get("phase") and s, 30,
                 "a phase for the job applied again (before its TTL deletes it once more)")
    job = get_json(kind_cluster, "ocrjob", "monthly", "-n", ns, check=False)
    assert job is None or job["metadata"]["uid"] != first["metadata"]["uid"]
    assert (again["phase"], again["reason"]) == ("Succeeded", "CompletedBefore"), again
    assert first["metadata"]["uid"] in again["message"]
    assert again["counts"]["succeeded"] == 5 and again["counts"]["done"] == 5
    time.sleep(2)  # a feed, had one been started, would have enqueued by now
    assert added_to_the_queue(redis, pool) == added, "the documents went into the queue again"
    assert WorkQueue(redis, pool).read("test-worker", count=10) == []
    assert len(seen) == 5
