"""The operator image's smoke test: the container starts, connects to the local control plane
and reconciles an OcrCluster (its children appear, its status is written).

It runs as the image's user on a read-only root with the host's network (the API server is on
127.0.0.1), watching one namespace of its own.
"""

from __future__ import annotations

import uuid

import pytest
from ocrfleet_dev.localproc import RedisServer, free_port

from e2e.operator_helpers import get_json, poll, with_redis
from tests.images.conftest import Container

pytest_plugins = ["e2e.operator_support"]

POOL = """
apiVersion: ocrfleet.io/v1alpha1
kind: OcrCluster
metadata: {name: smoke}
spec:
  workers: {minReplicas: 1, maxReplicas: 2, gpu: {count: 0}}
  api: {replicas: 1}
"""


@pytest.fixture(scope="module")
def operator_image():
    from e2e.images import build_all

    return build_all(["operator"])["operator"]


def test_operator_image_connects_and_reconciles(operator_image, crds, tmp_path):
    cluster = crds
    namespace = f"img-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    # the admin kubeconfig with its certificates inline, readable by the image's user
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(cluster.kubectl("config", "view", "--raw", "--flatten", "--minify"))
    kubeconfig.chmod(0o644)
    env = {"KUBECONFIG": "/etc/ocrfleet/kubeconfig", "OCRFLEET_NAMESPACE": namespace,
           "OCRFLEET_LIVENESS_PORT": str(free_port()), "OCRFLEET_METRICS_PORT": "0", "OCRFLEET_PROMETHEUS_PORT": "0",
           "OCRFLEET_RECONCILE_INTERVAL": "2", "OCRFLEET_BLOB_ROOT": "/tmp/blobs"}  # as the chart sets it
    with RedisServer() as redis_server:
        env["OCRFLEET_REDIS_URL"] = redis_server.url
        with Container(operator_image.tag, ["python", "-m", "ocrfleet_operator"], name="operator", env=env,
                       volumes={kubeconfig: "/etc/ocrfleet/kubeconfig:ro"}) as operator:
            try:
                cluster.kubectl("apply", "-n", namespace, "-f", "-", input=with_redis(POOL, redis_server.url))
                operator.wait_for(lambda: get_json(cluster, "deployment", "smoke-worker", "-n", namespace), 60,
                                  "the operator container to render the pool's worker Deployment")
                status = poll(lambda: (get_json(cluster, "ocrcluster", "smoke", "-n", namespace) or {}
                                       ).get("status", {}).get("conditions"), 60, "the pool's status")
                assert {c["type"] for c in status} >= {"Ready", "Progressing", "Degraded"}
                # it watches this namespace alone, so its own timer ran on this pool (another operator
                # process of the e2e session may have rendered the children first)
                operator.wait_for(lambda: "Timer 'cluster_tick' succeeded" in operator.logs(), 60,
                                  "the operator container to reconcile the pool")
            finally:
                cluster.kubectl("delete", "ocrclusters", "--all", "-n", namespace, "--wait=true",
                                "--timeout=60s", check=False, timeout=90)
                cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
