"""The ``kind_cluster`` fixture: pytest-kind's interface over the best cluster this machine has.

Where a Docker engine answers, pytest-kind's own kind cluster; otherwise the local control
plane of :mod:`e2e.cluster` (real API server, controllers and scheduler; kwok nodes). One
cluster per test session, stopped at the end even when tests fail. Every e2e test is marked
``e2e`` automatically.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest

from e2e.cluster import LocalCluster, temporary_cluster


def docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


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


@pytest.fixture
def namespace(kind_cluster):
    """A fresh namespace for one test, deleted afterwards (without waiting for it to go)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    kind_cluster.kubectl("create", "namespace", name)
    yield name
    kind_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
