"""The local control plane behaves like a real cluster: scheduling, GC, CRD validation, HPA."""

from __future__ import annotations

import json
import ssl
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from e2e.certs import make_serving_cert

ROOT = Path(__file__).resolve().parent.parent


def poll(condition, timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last value: {last!r}")


def get_json(cluster, *args):
    return json.loads(cluster.kubectl("get", *args, "-o", "json"))


def test_version_and_ready_nodes(kind_cluster):
    version = json.loads(kind_cluster.kubectl("version", "-o", "json"))
    assert version["clientVersion"]["gitVersion"]
    assert version["serverVersion"]["gitVersion"].startswith("v1.")
    nodes = get_json(kind_cluster, "nodes")["items"]
    ready = {n["metadata"]["name"] for n in nodes
             if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])}
    assert ready == {"cpu-0", "gpu-0", "gpu-1"}
    gpus = {n["metadata"]["name"]: n["status"]["allocatable"].get("nvidia.com/gpu") for n in nodes}
    assert gpus == {"cpu-0": None, "gpu-0": "1", "gpu-1": "1"}


GPU_DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: gpu-hungry}
spec:
  replicas: 3
  selector: {matchLabels: {app: gpu-hungry}}
  template:
    metadata: {labels: {app: gpu-hungry}}
    spec:
      tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
      containers:
      - name: main
        image: registry.invalid/ocr:1
        resources: {limits: {nvidia.com/gpu: 1}}
"""


def test_gpu_requests_are_really_scheduled_and_garbage_collected(kind_cluster, namespace):
    kind_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=GPU_DEPLOYMENT)

    def phases():
        pods = get_json(kind_cluster, "pods", "-n", namespace, "-l", "app=gpu-hungry")["items"]
        running = [p for p in pods if p["status"].get("phase") == "Running"
                   and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]
        pending = [p for p in pods if p["status"].get("phase") == "Pending"]
        return (len(running), len(pending)) == (2, 1) and (running, pending)

    running, pending = poll(phases, 60, "2 Running/Ready pods and 1 Pending")
    assert {p["spec"]["nodeName"] for p in running} == {"gpu-0", "gpu-1"}
    events = poll(lambda: [e for e in get_json(kind_cluster, "events", "-n", namespace)["items"]
                           if e["reason"] == "FailedScheduling"
                           and e["involvedObject"]["name"] == pending[0]["metadata"]["name"]],
                  30, "a FailedScheduling event")
    assert "nvidia.com/gpu" in events[0]["message"]

    kind_cluster.kubectl("delete", "deployment", "gpu-hungry", "-n", namespace, "--wait=false")
    poll(lambda: not get_json(kind_cluster, "replicasets,pods", "-n", namespace, "-l", "app=gpu-hungry")["items"],
         60, "the ReplicaSet and pods to be garbage-collected")


WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.test.ocrfleet.io}
spec:
  group: test.ocrfleet.io
  names: {kind: Widget, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1, maximum: 10}
          status:
            type: object
            properties:
              state: {type: string}
"""


def test_crd_schema_is_enforced_by_the_api_server(kind_cluster, namespace):
    kind_cluster.kubectl("apply", "-f", "-", input=WIDGET_CRD)
    kind_cluster.wait_established("widgets.test.ocrfleet.io", timeout=30)
    ok = "apiVersion: test.ocrfleet.io/v1\nkind: Widget\nmetadata: {name: fine}\nspec: {size: 3}\n"
    poll(lambda: kind_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=ok, check=False) or None,
         30, "the new resource to be served")
    bad = "apiVersion: test.ocrfleet.io/v1\nkind: Widget\nmetadata: {name: huge}\nspec: {size: 99}\n"
    with pytest.raises(Exception) as excinfo:
        kind_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=bad)
    assert "spec.size: Invalid value: 99: spec.size in body should be less than or equal to 10" in excinfo.value.stderr
    # the status subresource: a status write through /status is kept, spec untouched
    kind_cluster.kubectl("patch", "widget", "fine", "-n", namespace, "--subresource=status", "--type=merge",
                         "-p", '{"status": {"state": "ready"}}')
    assert get_json(kind_cluster, "widget", "fine", "-n", namespace)["status"] == {"state": "ready"}
    kind_cluster.kubectl("delete", "crd", "widgets.test.ocrfleet.io", "--wait=false")


class ExternalMetrics:
    """A small TLS server answering external.metrics.k8s.io for one metric, value settable."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.value = 0
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.split("?")[0].rstrip("/")
                if path == "/apis/external.metrics.k8s.io/v1beta1":
                    body = {"kind": "APIResourceList", "apiVersion": "v1",
                            "groupVersion": "external.metrics.k8s.io/v1beta1",
                            "resources": [{"name": outer.metric, "singularName": "", "namespaced": True,
                                           "kind": "ExternalMetricValueList", "verbs": ["get"]}]}
                elif path.endswith(f"/{outer.metric}"):
                    outer.requests += 1
                    body = {"kind": "ExternalMetricValueList", "apiVersion": "external.metrics.k8s.io/v1beta1",
                            "metadata": {}, "items": [{
                                "metricName": outer.metric, "metricLabels": {},
                                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                "value": str(outer.value)}]}
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.tmp = tempfile.TemporaryDirectory()
        _, crt, key = make_serving_cert(Path(self.tmp.name))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.tmp.cleanup()


def test_hpa_scales_on_an_external_metric_through_the_aggregation_layer(kind_cluster, namespace):
    metrics = ExternalMetrics("ocrfleet_queue_depth")
    api_service = f"""
apiVersion: v1
kind: Service
metadata: {{name: test-metrics, namespace: {namespace}}}
spec: {{type: ExternalName, externalName: localhost}}
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {{name: v1beta1.external.metrics.k8s.io}}
spec:
  group: external.metrics.k8s.io
  version: v1beta1
  groupPriorityMinimum: 100
  versionPriority: 100
  insecureSkipTLSVerify: true
  service: {{name: test-metrics, namespace: {namespace}, port: {metrics.port}}}
"""
    workload = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: workers}
spec:
  replicas: 1
  selector: {matchLabels: {app: workers}}
  template:
    metadata: {labels: {app: workers}}
    spec:
      containers: [{name: main, image: registry.invalid/worker:1}]
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: workers}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: workers}
  minReplicas: 1
  maxReplicas: 5
  metrics:
  - type: External
    external:
      metric: {name: ocrfleet_queue_depth, selector: {matchLabels: {cluster: test}}}
      target: {type: AverageValue, averageValue: "10"}
  behavior:
    scaleDown: {stabilizationWindowSeconds: 0}
"""
    try:
        kind_cluster.kubectl("apply", "-f", "-", input=api_service)
        poll(lambda: "True" in kind_cluster.kubectl(
            "get", "apiservice", "v1beta1.external.metrics.k8s.io",
            "-o", "jsonpath={.status.conditions[?(@.type=='Available')].status}", check=False),
            60, "the APIService to be Available")
        raw = kind_cluster.kubectl("get", "--raw",
                                   f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/ocrfleet_queue_depth")
        assert json.loads(raw)["items"][0]["value"] == "0"

        metrics.value = 35  # 35 / 10 per worker -> 4 workers
        kind_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=workload)
        spec_replicas = lambda: get_json(kind_cluster, "deployment", "workers", "-n", namespace)["spec"]["replicas"]  # noqa: E731
        poll(lambda: spec_replicas() == 4, 90, "the HPA to scale the Deployment up to 4")
        metrics.value = 0
        poll(lambda: spec_replicas() == 1, 90, "the HPA to scale the Deployment back down to 1")
        assert metrics.requests >= 2
    finally:
        # the APIService goes before its server, or namespace deletion waits on discovery
        kind_cluster.kubectl("delete", "apiservice", "v1beta1.external.metrics.k8s.io", "--ignore-not-found")
        metrics.close()
