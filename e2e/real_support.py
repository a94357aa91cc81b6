"""Session fixtures of the real-node tests: the images on the node, and the chart installed once.

Import them into a test module with ``pytest_plugins = ["e2e.real_support"]``.
"""

from __future__ import annotations

import json
import time

import pytest

from e2e.mainjob import REAL, SYSTEM, helm_install, load_images
from e2e.operator_helpers import poll, report


@pytest.fixture(scope="session")
def node_images(real_cluster, request):
    """Every image (ocrfleet's and the managed stores'), built or found, imported into the node."""
    t0 = time.monotonic()
    load_images(real_cluster, log=lambda line: report(request, line))
    report(request, f"images ready on the node in {time.monotonic() - t0:.0f} s")


@pytest.fixture(scope="session")
def installed(real_cluster, node_images, request):
    """``helm install`` from the repository root: CRDs, then the operator as a pod on the real node."""
    t0 = time.monotonic()
    helm_install(real_cluster, "--set-json", f"nodeSelector={json.dumps(REAL)}")
    report(request, f"helm install --wait: the operator pod ready in {time.monotonic() - t0:.1f} s")
    poll(lambda: "True" in real_cluster.kubectl(
        "get", "apiservice", "v1beta1.external.metrics.k8s.io", "-o",
        "jsonpath={.status.conditions[?(@.type=='Available')].status}", check=False),
        120, "the operator's metrics APIService to be Available (aggregator -> Service -> operator pod)")
    yield
    real_cluster.kubectl("delete", "ocrjobs,ocrclusters", "--all", "--all-namespaces", "--wait=true",
                         "--timeout=120s", check=False, timeout=150)
    real_cluster.kubectl("delete", "namespace", SYSTEM, "--wait=false", check=False)
