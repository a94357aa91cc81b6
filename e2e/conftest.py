"""The ``kind_cluster`` fixture: pytest-kind's interface over the best cluster this machine has.

Where a Docker engine answers, pytest-kind's own kind cluster; otherwise the local control
plane of :mod:`e2e.cluster` (real API server, controllers and scheduler; kwok nodes). One
cluster per test session, stopped at the end even when tests fail. Every e2e test is marked
``e2e`` automatically.

``real_cluster`` is the same local control plane plus a real kubelet node (:mod:`e2e.node`):
pods with ``nodeSelector: {ocrfleet.io/node: real}`` run for real; images come in with
``real_cluster.load_docker_image(archive, name)``. A machine has room for one real node, so
tests marked ``owns_real_node`` (they start and stop their own) run before any test that
uses ``real_cluster``.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest

from e2e.cluster import LocalCluster, temporary_cluster
from e2e.operator_helpers import report


def docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def pytest_configure(config):
    config.addinivalue_line("markers", "owns_real_node: starts and stops its own real node (runs first)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
    # one real node per machine: those that own one run before the session's real_cluster starts
    items.sort(key=lambda item: item.get_closest_marker("owns_real_node") is None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test that ran beside the operator process carries the operator's last log lines."""
    rep = yield
    op = item.funcargs.get("operator") if hasattr(item, "funcargs") else None
    if rep.failed and op is not None and hasattr(op, "log"):
        rep.sections.append(("the operator's log (last 6,000 characters)", op.log()[-6000:]))
    return rep


@pytest.fixture(scope="session")
def kind_cluster(request):
    if docker_answers():
        from pytest_kind import KindCluster

        cluster = KindCluster("ocrfleet-e2e")
        cluster.create()
        request.addfinalizer(cluster.delete)
        return cluster
    cluster: LocalCluster = temporary_cluster()
    request.addfinalizer(cluster.delete)
    return cluster.create()


@pytest.fixture(scope="session")
def real_cluster(request):
    """The local control plane with a real node beside the kwok nodes (needs root; fails, never skips)."""
    cluster: LocalCluster = temporary_cluster("ocrfleet-real", real_node=True)
    request.addfinalizer(cluster.delete)
    cluster.create()
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in cluster.node.timings.items())
    report(request, f"real_cluster started in {cluster.started_in:.1f} s (real node: {timings})")
    return cluster




@pytest.fixture
def namespace(kind_cluster):
    """A fresh namespace for one test, deleted afterwards (without waiting for it to go)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    kind_cluster.kubectl("create", "namespace", name)
    yield name
    kind_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
