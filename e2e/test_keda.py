"""A pool with ``workers.autoscaler: keda`` scaled by the real KEDA (operator and metrics server,
v2.21.0 built from its Go module): up on queue depth, and back to zero.

KEDA takes over the cluster's external metrics APIService for this module's test (only one
server can own it); ocrfleet's adapter is registered again afterwards, as a cluster with KEDA
would run ocrfleet: the chart's ``metricsAdapter.registerAPIService=false``.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import pytest

from e2e.keda import Keda
from e2e.operator_helpers import get_json, poll, report
from e2e.operator_support import apiservice_manifest
from ocrfleet import keys
from ocrfleet.queue import Task, WorkQueue

pytest_plugins = ["e2e.operator_support"]


@pytest.fixture(scope="module")
def keda(kind_cluster, operator):
    with tempfile.TemporaryDirectory(prefix="ocrfleet-keda-") as tmp:
        server = Keda(kind_cluster, Path(tmp))
        try:
            server.start()
            yield server
        except BaseException:
            print("keda-operator:\n" + server.log("keda-operator")[-3000:])
            print("keda-adapter:\n" + server.log("keda-adapter")[-3000:])
            raise
        finally:
            server.stop()
            kind_cluster.kubectl("apply", "-f", "-", input=apiservice_manifest(operator.metrics_port, operator.metrics_ca))


def test_keda_scales_a_pool_up_on_queue_depth_and_back_to_zero(kind_cluster, keda, ns, redis, operator_redis, request):
    name = "keda-pool"
    spec = {"workers": {"autoscaler": "keda", "minReplicas": 0, "maxReplicas": 5, "targetQueueDepthPerWorker": 10,
                        "idleSecondsBeforeScaleToZero": 15, "scaleDownStabilizationSeconds": 0, "gpu": {"count": 0}},
            "api": {"replicas": 1}, "redis": {"url": operator_redis.url}}
    kind_cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(
        {"apiVersion": "ocrfleet.io/v1alpha1", "kind": "OcrCluster", "metadata": {"name": name}, "spec": spec}))
    worker = f"{name}-worker"
    replicas = lambda: get_json(kind_cluster, "deployment", worker, "-n", ns)["spec"].get("replicas", 0)  # noqa: E731

    def scaled_object_ready():
        obj = get_json(kind_cluster, "scaledobject", worker, "-n", ns, "--ignore-not-found", check=False) or {}
        return any(c["type"] == "Ready" and c["status"] == "True" for c in obj.get("status", {}).get("conditions", []))

    try:
        poll(scaled_object_ready, 90, "KEDA to take the pool's ScaledObject (Ready)")
    except AssertionError:
        print(kind_cluster.kubectl("get", "scaledobject", worker, "-n", ns, "-o", "yaml", check=False))
        raise
    assert get_json(kind_cluster, "hpa", worker, "-n", ns, "--ignore-not-found", check=False) is None
    assert get_json(kind_cluster, "hpa", f"keda-hpa-{worker}", "-n", ns)["spec"]["maxReplicas"] == 5
    assert replicas() == 0

    queue = WorkQueue(redis, keys.pool(ns, name))
    queue.ensure_groups()
    t0 = time.monotonic()
    for i in range(45):
        queue.enqueue(Task(document_id=f"doc-{i}", tenant="t", blob=f"sha256:{i:064x}", sha256=f"{i:064x}", job="load"))
    try:
        poll(lambda: replicas() == 5, 180, "KEDA to scale the workers to 5 for 45 documents at 10 per worker")
    except AssertionError:
        print(kind_cluster.kubectl("describe", "hpa", f"keda-hpa-{worker}", "-n", ns, check=False))
        print(kind_cluster.kubectl("get", "scaledobject", worker, "-n", ns, "-o", "yaml", check=False))
        for name in ("keda-operator", "keda-adapter"):
            print(f"{name}:\n" + "\n".join(line for line in keda.log(name).splitlines()
                                            if '"level":"info"' not in line)[-5000:])
        raise
    up = time.monotonic() - t0

    assert queue.remove_waiting("load") == 45
    t1 = time.monotonic()
    poll(lambda: replicas() == 0, 240, "KEDA to scale the idle pool back to zero")
    down = time.monotonic() - t1
    report(request, f"KEDA: 0 -> 5 workers in {up:.0f} s for 45 documents, back to 0 in {down:.0f} s "
                    "(cooldown 15 s)")
