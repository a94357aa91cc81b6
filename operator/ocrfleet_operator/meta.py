"""What every child of an OcrCluster carries: its labels, its owner reference, its metadata."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

GROUP = "ocrfleet.io"
VERSION = "v1alpha1"
CLUSTER_LABEL = "ocrfleet.io/cluster"
COMPONENT_LABEL = "app.kubernetes.io/component"
API_METRICS_PORT = 9090
"""The API pods' Prometheus port, apart from the tenants' port (their NetworkPolicy opens it in-cluster)."""
WORKER_METRICS_PORT = 9400
"""The worker container's Prometheus port (``OCRFLEET_METRICS_PORT``; the NetworkPolicy opens it in-cluster)."""
TRITON_METRICS_PORT = 8002
"""Triton's own Prometheus port (its default, ``--metrics-port``), beside the worker in every worker pod."""
MANAGED_BY = "ocrfleet-operator"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"


def selector_labels(cluster: str, component: str) -> dict[str, str]:
    return {CLUSTER_LABEL: cluster, COMPONENT_LABEL: component}


def labels(cluster: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "ocrfleet",
        "app.kubernetes.io/instance": cluster,
        "app.kubernetes.io/part-of": "ocrfleet",
        MANAGED_BY_LABEL: MANAGED_BY,
        **selector_labels(cluster, component),
    }


def owner_reference(cluster: Mapping) -> dict[str, Any]:
    meta = cluster["metadata"]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "OcrCluster",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(cluster: Mapping, name: str, component: str) -> dict[str, Any]:
    meta = cluster["metadata"]
    return {
        "name": name,
        "namespace": meta["namespace"],
        "labels": labels(meta["name"], component),
        "ownerReferences": [owner_reference(cluster)],
    }
