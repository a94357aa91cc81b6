"""Queue depth drives the worker count: the HPA through the operator's metrics adapter, and
the operator itself for the steps to and from zero. Prints the measured reaction times."""

from __future__ import annotations

import json
import time

from e2e.kstatus import kstatus
from e2e.operator_helpers import get_json, poll
from ocrfleet import keys
from ocrfleet.queue import Task, WorkQueue

# The operator, its Redis and CRDs: one set of session fixtures for every operator test module.
pytest_plugins = ["e2e.operator_support"]


def task(i: int) -> Task:
    return Task(document_id=f"doc-{i}", tenant="t", blob=f"sha256:{i:064x}", sha256=f"{i:064x}", job="load")


def cluster_manifest(name: str, redis_url: str, **workers) -> str:
    spec = {"workers": {"gpu": {"count": 0}, **workers}, "api": {"replicas": 1}, "redis": {"url": redis_url}}
    return json.dumps({"apiVersion": "ocrfleet.io/v1alpha1", "kind": "OcrCluster",
                       "metadata": {"name": name}, "spec": spec})


def ready(kind_cluster, ns, name):
    obj = get_json(kind_cluster, "ocrcluster", name, "-n", ns)
    conds = {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}
    return conds.get("Ready", {}).get("status") == "True" and obj


def test_queue_depth_scales_workers_up_and_down(kind_cluster, ns, redis, operator_redis):
    name = "elastic"
    kind_cluster.kubectl("apply", "-n", ns, "-f", "-", input=cluster_manifest(
        name, operator_redis.url, minReplicas=1, maxReplicas=6, targetQueueDepthPerWorker=10, scaleDownStabilizationSeconds=15))
    poll(lambda: ready(kind_cluster, ns, name), 60, "the cluster to be Ready")
    replicas = lambda: get_json(kind_cluster, "deployment", f"{name}-worker", "-n", ns)["spec"]["replicas"]  # noqa: E731
    queue = WorkQueue(redis, keys.pool(ns, name))
    queue.ensure_groups()

    t0 = time.monotonic()
    for i in range(50):
        queue.enqueue(task(i))
    poll(lambda: replicas() == 5, 60, "5 workers for 50 documents at 10 per worker")
    scale_up = time.monotonic() - t0
    raw = json.loads(kind_cluster.kubectl(
        "get", "--raw", f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/ocrfleet_queue_depth"
        f"?labelSelector=ocrfleet.io/cluster%3D{name}"))
    assert raw["items"][0]["value"] == "50"

    # 20 in flight and 30 waiting removed: the busy ones still count, so 2 workers stay
    taken = queue.read("worker-a", count=20)
    assert len(taken) == 20
    assert queue.remove_waiting("load") == 30
    assert (queue.depth().waiting, queue.depth().in_flight) == (0, 20)
    poll(lambda: replicas() == 2, 60, "2 workers for 20 documents in flight")

    # the queue drains: back to the minimum once the 15 s stabilization window has passed
    t1 = time.monotonic()
    for d in taken:
        queue.ack(d)
    poll(lambda: replicas() == 1, 90, "scale down to 1 after the stabilization window")
    scale_down = time.monotonic() - t1
    print(f"\nMEASURED hpa_scale_up_s={scale_up:.1f} (1->5 workers) "
          f"hpa_scale_down_s={scale_down:.1f} (2->1, stabilization window 15 s)")
    assert scale_up < 30
    assert scale_down >= 14


def test_scale_to_zero_and_back(kind_cluster, ns, redis, operator_redis):
    name = "idle"
    kind_cluster.kubectl("apply", "-n", ns, "-f", "-", input=cluster_manifest(
        name, operator_redis.url, minReplicas=0, maxReplicas=3, idleSecondsBeforeScaleToZero=0))
    replicas = lambda: get_json(kind_cluster, "deployment", f"{name}-worker", "-n", ns)["spec"]["replicas"]  # noqa: E731
    at_zero = poll(lambda: (o := ready(kind_cluster, ns, name)) and o["status"]["workers"]["desired"] == 0 and o,
                   60, "Ready with zero workers")
    assert {c["type"]: c for c in at_zero["status"]["conditions"]}["Ready"]["reason"] == "ScaledToZero"
    assert replicas() == 0
    assert kstatus(kind_cluster, "ocrcluster", ns, name)["status"] == "Current", "kstatus: a pool at zero is done"

    queue = WorkQueue(redis, keys.pool(ns, name))
    queue.ensure_groups()
    t0 = time.monotonic()
    queue.enqueue(task(1))
    poll(lambda: replicas() == 1, 30, "one worker when work arrives")
    from_zero = time.monotonic() - t0
    poll(lambda: (o := ready(kind_cluster, ns, name)) and o["status"]["workers"]["ready"] == 1, 30,
         "the worker to be ready")

    [delivery] = queue.read("w", count=1)
    queue.ack(delivery)
    t1 = time.monotonic()
    poll(lambda: replicas() == 0, 30, "back to zero when the queue is empty")
    to_zero = time.monotonic() - t1
    print(f"\nMEASURED from_zero_s={from_zero:.1f} to_zero_s={to_zero:.1f} (idleSecondsBeforeScaleToZero=0)")
