"""OcrJob with the operator running: documents enqueued once, progress folded into status,
Pending -> Running -> Succeeded, a restart of the operator mid-job, deletion and suspension.

The test plays the worker (read, record the outcome, ack) on the same Redis, so the job's
life is checked without the OCR model.
"""

from __future__ import annotations

import json
import time

from e2e.kstatus import kstatus
from e2e.operator_helpers import get_json, poll, with_redis
from ocrfleet import keys
from ocrfleet.progress import JobProgress
from ocrfleet.queue import WorkQueue

# The operator, its Redis and CRDs: one set of session fixtures for every operator test module.
pytest_plugins = ["e2e.operator_support"]

CLUSTER = {"apiVersion": "ocrfleet.io/v1alpha1", "kind": "OcrCluster",
           "metadata": {"name": "batch"}, "spec": {"workers": {"gpu": {"count": 0}}, "api": {"replicas": 1}}}


def documents(n: int) -> list[str]:
    """Document URLs: the operator enqueues references and never fetches them (the test plays the worker)."""
    return [f"https://documents.example.internal/inbox/page-{i:03d}.png" for i in range(n)]


def job_manifest(name: str, cluster: str, urls: list[str], **spec) -> str:
    return json.dumps({"apiVersion": "ocrfleet.io/v1alpha1", "kind": "OcrJob", "metadata": {"name": name},
                       "spec": {"clusterRef": {"name": cluster}, "source": {"urls": urls}, **spec}})


def status(kind_cluster, ns, name):
    return (get_json(kind_cluster, "ocrjob", name, "-n", ns) or {}).get("status", {})


def work(redis, cluster: str, *, limit: int, seen: list[str]) -> int:
    """Play the worker: process up to ``limit`` documents; returns how many."""
    queue, progress = WorkQueue(redis, cluster), JobProgress(redis, cluster)
    done = 0
    while done < limit:
        batch = queue.read("test-worker", count=min(10, limit - done))
        if not batch:
            break
        for d in batch:
            seen.append(d.task.document_id)
            progress.record_outcome(d.task.job, d.task.document_id, succeeded=True, pages=1, now=time.time())
            queue.ack(d)
            done += 1
    return done


def test_job_runs_to_success_across_an_operator_restart(kind_cluster, ns, redis, operator, operator_redis, tmp_path):
    kind_cluster.kubectl("apply", "-n", ns, "-f", "-", input=with_redis(CLUSTER, operator_redis.url))
    source = documents(50)
    t0 = time.monotonic()
    kind_cluster.kubectl("apply", "-n", ns, "-f", "-", input=job_manifest("fifty", "batch", source))
    poll(lambda: status(kind_cluster, ns, "fifty").get("counts", {}).get("enqueued") == 50, 30, "50 enqueued")
    s = poll(lambda: (s := status(kind_cluster, ns, "fifty")).get("phase") == "Running" and s, 30, "Running")
    to_running = time.monotonic() - t0
    assert s["counts"]["total"] == 50 and s["startTime"]
    # Flux and kpt (kstatus) wait on a running job: Reconciling, with the job's own progress line
    running = kstatus(kind_cluster, "ocrjob", ns, "fifty")
    assert running["status"] == "InProgress" and "documents done" in running["message"], running

    seen: list[str] = []
    assert work(redis, keys.pool(ns, "batch"), limit=20, seen=seen) == 20
    poll(lambda: status(kind_cluster, ns, "fifty")["counts"]["done"] == 20, 30, "20/50 in status")

    operator.kill()  # mid-job, no clean-up
    operator.start()
    assert work(redis, keys.pool(ns, "batch"), limit=100, seen=seen) == 30
    final = poll(lambda: (s := status(kind_cluster, ns, "fifty")).get("phase") == "Succeeded" and s, 30,
                 "Succeeded after the restart")
    assert final["counts"] == {"total": 50, "enqueued": 50, "succeeded": 50, "failed": 0, "inFlight": 0, "done": 50}
    assert final["completionTime"]
    assert kstatus(kind_cluster, "ocrjob", ns, "fifty")["status"] == "Current", "kstatus: a finished job is done"
    assert len(seen) == 50 and len(set(seen)) == 50, "a document was enqueued twice"
    job_key = f"{ns}.fifty"
    assert redis.scard(keys.job_enqueued(keys.pool(ns, "batch"), job_key)) == 50
    assert WorkQueue(redis, keys.pool(ns, "batch")).depth().total == 0

    events = json.loads(kind_cluster.kubectl("get", "events", "-n", ns, "-o", "json",
                                             "--field-selector", "involvedObject.name=fifty"))["items"]
    events.sort(key=lambda e: int(e["metadata"]["resourceVersion"]))  # timestamps have 1 s resolution
    phases = [(e["reason"], e["message"]) for e in events
              if e["reason"] in ("Pending", "Running", "Succeeded")]
    assert [p[0] for p in phases] == ["Pending", "Running", "Succeeded"], phases
    printed = kind_cluster.kubectl("get", "ocrj", "fifty", "-n", ns)
    assert "Succeeded" in printed and "50" in printed
    print(f"\nMEASURED job_apply_to_running_s={to_running:.1f}")


def test_missing_cluster_suspend_resume_and_delete(kind_cluster, ns, redis, operator_redis, tmp_path):
    source = documents(10)
    kind_cluster.kubectl("apply", "-n", ns, "-f", "-", input=job_manifest("early", "later", source, suspend=True))
    s = poll(lambda: (s := status(kind_cluster, ns, "early")).get("reason") == "ClusterNotFound" and s, 30,
             "a clear condition for the missing cluster")
    assert s["phase"] == "Pending" and "spec.clusterRef" in s["message"]
    # kstatus waits on a job whose cluster is missing (it may yet be created), and says why
    waiting = kstatus(kind_cluster, "ocrjob", ns, "early")
    assert waiting["status"] == "InProgress" and "spec.clusterRef" in waiting["message"], waiting

    kind_cluster.kubectl("apply", "-n", ns, "-f", "-",
                         input=with_redis({**CLUSTER, "metadata": {"name": "later"}}, operator_redis.url))
    poll(lambda: status(kind_cluster, ns, "early").get("phase") == "Suspended", 30, "Suspended once admitted")
    # neither Reconciling nor Stalled: a wait on a suspended job returns instead of timing out
    assert kstatus(kind_cluster, "ocrjob", ns, "early")["status"] == "Current"
    queue = WorkQueue(redis, keys.pool(ns, "later"))
    assert queue.depth().total == 0, "a suspended job enqueues nothing"

    kind_cluster.kubectl("patch", "ocrjob", "early", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    poll(lambda: status(kind_cluster, ns, "early").get("phase") == "Running", 30, "Running after resume")
    poll(lambda: queue.depth().total == 10, 10, "10 documents waiting")

    kind_cluster.kubectl("patch", "ocrjob", "early", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    poll(lambda: queue.depth().total == 0, 30, "suspending removes the waiting documents")
    kind_cluster.kubectl("patch", "ocrjob", "early", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    poll(lambda: queue.depth().total == 10, 30, "resuming enqueues them again")

    kind_cluster.kubectl("delete", "ocrjob", "early", "-n", ns, "--timeout=30s")
    assert queue.depth().total == 0, "deleting the job removes its waiting documents"


def test_a_10000_document_job_does_not_hold_up_other_jobs(kind_cluster, ns, redis, operator, operator_redis):
    """Feeding runs off kopf's handler threads, in bounded batches: a small job applied just
    after a huge one is admitted and fed at once, and the huge one goes in exactly once."""
    kind_cluster.kubectl("apply", "-n", ns, "-f", "-", input=with_redis(CLUSTER, operator_redis.url))
    big = [f"https://documents.example.internal/month-end/{i:05d}.png" for i in range(10_000)]
    # create, not apply: a client-side apply would copy the 10,000 URLs into an annotation
    kind_cluster.kubectl("create", "-n", ns, "-f", "-", input=job_manifest("month-end", "batch", big), timeout=120)
    t0 = time.monotonic()
    kind_cluster.kubectl("apply", "-n", ns, "-f", "-", input=job_manifest("urgent", "batch", documents(5)))
    poll(lambda: status(kind_cluster, ns, "urgent").get("counts", {}).get("enqueued") == 5, 30,
         "the small job fed while the big one goes in")
    small_fed = time.monotonic() - t0
    poll(lambda: status(kind_cluster, ns, "month-end").get("counts", {}).get("enqueued") == 10_000, 120,
         "the 10,000 documents enqueued")
    all_fed = time.monotonic() - t0
    queue = WorkQueue(redis, keys.pool(ns, "batch"))
    assert queue.depth().total == 10_005, "every document exactly once"
    print(f"small job fed after {small_fed:.1f} s, 10,000 after {all_fed:.1f} s")
    assert small_fed < 30
    # kopf's own bookkeeping of the job fits in its annotations (the URL list is kept out of them)
    assert "Too long" not in operator.log(), operator.log()[-3000:]
