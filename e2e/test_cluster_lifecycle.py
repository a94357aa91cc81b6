"""The local control plane starts fast, stops without a trace, and fails loudly."""

from __future__ import annotations

import json
import os

import pytest
from ocrfleet_dev.localproc import ServiceError, process_alive

from e2e.cluster import temporary_cluster


def test_a_second_cluster_starts_and_leaves_nothing_behind(kind_cluster):
    cluster = temporary_cluster("lifecycle").create()
    try:
        state = json.loads((cluster.directory / "state.json").read_text())
        pids = list(state["pids"].values())
        assert set(state["pids"]) == {"etcd", "apiserver", "controller-manager", "scheduler", "provisioner", "kwok"}
        assert all(process_alive(p) for p in pids)
        assert "Ready" in cluster.kubectl("get", "node", "gpu-1")
    finally:
        cluster.delete()
    assert not any(process_alive(p) for p in pids)
    assert not cluster.directory.exists()


def test_a_component_that_cannot_start_fails_loudly_with_its_log(kind_cluster):
    cluster = temporary_cluster("broken", extra_args={"apiserver": ["--no-such-flag=1"]})
    with pytest.raises(ServiceError) as excinfo:
        cluster.create()
    message = str(excinfo.value)
    assert "apiserver exited" in message and "unknown flag: --no-such-flag" in message
    assert not cluster.directory.exists()
    # nothing of it still runs
    assert [p for p in os.listdir("/proc") if p.isdigit() and str(cluster.directory).encode() in _cmdline(p)] == []


def _cmdline(pid: str) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:  # gone meanwhile
        return b""
