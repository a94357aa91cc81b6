"""The operator under test: its CRDs installed, the process running against the local control
plane, its Redis, and its metrics adapter registered as the external metrics APIService.

The operator runs as a subprocess (``python -m ocrfleet_operator``) exactly as in its pod, so
tests can kill and restart it. Import the fixtures into a test module to use them.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import redis as redis_lib
from ocrfleet_dev.localproc import RedisServer, free_port

from e2e.certs import make_serving_cert
from e2e.operator_helpers import poll

ROOT = Path(__file__).resolve().parent.parent
APISERVICE = "v1beta1.external.metrics.k8s.io"
SYSTEM_NAMESPACE = "ocrfleet-system"
METRICS_SERVICE = "ocrfleet-metrics-local"


class OperatorProcess:
    """``python -m ocrfleet_operator`` against the test cluster, with its log kept."""

    def __init__(self, cluster, redis_url: str, workdir: Path) -> None:
        self.cluster = cluster
        self.workdir = workdir
        self.log_path = workdir / "operator.log"
        self.metrics_port = free_port()
        # the aggregator reaches it as the Service below and verifies it with this CA
        self.metrics_ca, cert, key = make_serving_cert(workdir / "metrics-tls", f"{METRICS_SERVICE}.{SYSTEM_NAMESPACE}.svc")
        self.env = {
            **os.environ,
            "KUBECONFIG": str(cluster.kubeconfig_path),
            "OCRFLEET_REDIS_URL": redis_url,
            "OCRFLEET_BLOB_ROOT": str(workdir / "blobs"),
            "OCRFLEET_METRICS_HOST": "127.0.0.1",
            "OCRFLEET_METRICS_PORT": str(self.metrics_port),
            "OCRFLEET_METRICS_TLS_CERT": str(cert),
            "OCRFLEET_METRICS_TLS_KEY": str(key),
            "OCRFLEET_LIVENESS_PORT": "0",
            "OCRFLEET_PROMETHEUS_PORT": "0",  # several operators may run here at once
            "OCRFLEET_RECONCILE_INTERVAL": "2",
            "OCRFLEET_JOB_PROGRESS_INTERVAL": "1",
            "OCRFLEET_STATUS_MIN_INTERVAL": "2",
            "OCRFLEET_WATCH_SERVER_TIMEOUT": "60",
            "OCRFLEET_WATCH_CLIENT_TIMEOUT": "70",
            # the chart's default pod policy
            "OCRFLEET_ALLOWED_IMAGE_PREFIXES": json.dumps(["ghcr.io/ocrfleet/", "docker.io/library/redis:",
                                                           "docker.io/library/postgres:",
                                                           "docker.io/chrislusf/seaweedfs:"]),
            "OCRFLEET_ALLOWED_TOLERATION_KEYS": json.dumps(["nvidia.com/gpu"]),
        }
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        offset = len(self.log())  # the log is appended across restarts: look past the old lines
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "ocrfleet_operator"], cwd=ROOT, env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        poll(lambda: self._alive() and "listening on https://" in self.log()[offset:], 60, "the operator to start")

    def _alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"the operator exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
        return True

    def kill(self) -> None:
        """SIGKILL, as a node failure would: no clean-up handlers run."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def apiservice_manifest(port: int, ca: Path, service: str = METRICS_SERVICE, namespace: str = SYSTEM_NAMESPACE) -> str:
    """The external metrics APIService pointing at a server on this machine's ``port`` (through an
    ExternalName Service ``namespace/service`` to localhost), its certificate signed by ``ca``."""
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: {service}, namespace: {namespace}}}
spec: {{type: ExternalName, externalName: localhost}}
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {{name: {APISERVICE}}}
spec:
  group: external.metrics.k8s.io
  version: v1beta1
  groupPriorityMinimum: 100
  versionPriority: 100
  caBundle: {base64.b64encode(ca.read_bytes()).decode()}
  service: {{name: {service}, namespace: {namespace}, port: {port}}}
"""


@pytest.fixture(scope="session")
def crds(kind_cluster):
    kind_cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    kind_cluster.wait_established("ocrclusters.ocrfleet.io", "ocrjobs.ocrfleet.io")
    return kind_cluster


@pytest.fixture(scope="session")
def operator_redis():
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def operator(crds, operator_redis):
    """The running operator; its metrics adapter is the cluster's external metrics API."""
    cluster = crds
    with tempfile.TemporaryDirectory(prefix="ocrfleet-operator-") as tmp:
        op = OperatorProcess(cluster, operator_redis.url, Path(tmp))
        op.start()
        cluster.kubectl("create", "namespace", SYSTEM_NAMESPACE, check=False)
        try:
            cluster.kubectl("apply", "-f", "-", input=apiservice_manifest(op.metrics_port, op.metrics_ca))
            poll(lambda: "True" in cluster.kubectl(
                "get", "apiservice", APISERVICE, "-o",
                "jsonpath={.status.conditions[?(@.type=='Available')].status}", check=False),
                60, "the metrics APIService to be Available")
            yield op
        finally:
            # the APIService goes before its server, or namespace deletion waits on discovery
            cluster.kubectl("delete", "apiservice", APISERVICE, "--ignore-not-found")
            _delete_all_ocrfleet(cluster)
            op.stop()
            if os.environ.get("OCRFLEET_KEEP_LOGS"):
                print(op.log())


def _delete_all_ocrfleet(cluster) -> None:
    """Delete every OcrJob and OcrCluster while the operator can still release its finalizers."""
    cluster.kubectl("delete", "ocrjobs,ocrclusters", "--all", "--all-namespaces", "--wait=true",
                    "--timeout=60s", check=False, timeout=90)


@pytest.fixture
def redis(operator_redis):
    client = redis_lib.Redis.from_url(operator_redis.url)
    yield client
    client.close()


@pytest.fixture
def ns(operator, kind_cluster, namespace):
    """A test namespace whose ocrfleet objects are deleted while the operator still runs."""
    yield namespace
    kind_cluster.kubectl("delete", "ocrjobs,ocrclusters", "--all", "-n", namespace, "--wait=true",
                         "--timeout=60s", check=False, timeout=90)
