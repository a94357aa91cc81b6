"""kstatus (sigs.k8s.io/cli-utils, what Flux and kpt wait with) of a Failed OcrJob, the one state
no other e2e flow reaches without the OCR model: the test plays the worker and fails a document.

The other states are checked where their flows bring the objects there: a Running job
InProgress and a Succeeded one Current (test_operator_job), a Ready pool Current and a Degraded
one Failed (test_operator_cluster), a pool scaled to zero Current (test_operator_scaling).
"""

from __future__ import annotations

import json
import time

from e2e.kstatus import compute
from e2e.operator_helpers import get_json, poll, with_redis
from ocrfleet import keys
from ocrfleet.progress import JobProgress
from ocrfleet.queue import WorkQueue

# The operator, its Redis and CRDs: one set of session fixtures for every operator test module.
pytest_plugins = ["e2e.operator_support"]

POOL = {"apiVersion": "ocrfleet.io/v1alpha1", "kind": "OcrCluster",
        "metadata": {"name": "batch"}, "spec": {"workers": {"gpu": {"count": 0}}, "api": {"replicas": 1}}}


def test_a_job_with_too_many_failed_documents_is_failed_for_kstatus(kind_cluster, ns, redis, operator_redis):
    kind_cluster.kubectl("apply", "-n", ns, "-f", "-", input=with_redis(POOL, operator_redis.url))
    urls = [f"https://documents.example.internal/claims/{i}.png" for i in range(2)]
    kind_cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({
        "apiVersion": "ocrfleet.io/v1alpha1", "kind": "OcrJob", "metadata": {"name": "claims"},
        "spec": {"clusterRef": {"name": "batch"}, "source": {"urls": urls}}}))  # maxFailedFraction 0.1: none of 2

    pool = keys.pool(ns, "batch")
    queue, progress = WorkQueue(redis, pool), JobProgress(redis, pool)
    queue.ensure_groups()
    batch = poll(lambda: queue.read("test-worker", count=2), 30, "the job's documents on the queue")
    progress.record_outcome(batch[0].task.job, batch[0].task.document_id, succeeded=False, pages=0, now=time.time())
    queue.ack(batch[0])
    job = lambda: get_json(kind_cluster, "ocrjob", "claims", "-n", ns).get("status", {})  # noqa: E731
    failed = poll(lambda: (s := job()).get("phase") == "Failed" and s, 30, "the job Failed")
    assert failed["reason"] == "TooManyFailures"

    # everything in the namespace at once, as a Flux Kustomization or kpt's live apply waits on it
    both = compute(kind_cluster.kubectl("get", "ocrclusters,ocrjobs", "-n", ns, "-o", "json"))
    by_kind = {r["kind"]: r for r in both}
    assert by_kind["OcrJob"] == {"kind": "OcrJob", "namespace": ns, "name": "claims", "status": "Failed",
                                 "message": failed["message"]}, both
    assert "1 of 2 documents failed" in failed["message"]
    assert by_kind["OcrCluster"]["name"] == "batch" and len(both) == 2, both
