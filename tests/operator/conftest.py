"""Helpers for the operator's fast tests: cluster objects defaulted by the CRD itself.

The CRD is the truth about defaults, so the tests apply its schema's defaults the way the
API server does (a default applies where its parent object exists) instead of repeating them.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from ocrfleet_dev.kubeobjects import apply_defaults, crd_schema
from ocrfleet_operator.images import with_defaults as images_with_defaults
from ocrfleet_operator.settings import OperatorSettings

ROOT = Path(__file__).resolve().parents[2]


def make_cluster(spec: dict | None = None, name: str = "pool", namespace: str = "ocr", *, images: bool = True) -> dict:
    """An OcrCluster as the API server stores it (CRD defaults applied) and, with ``images``, as the
    builders see it: the images it leaves out filled from the operator's default settings."""
    body = {
        "apiVersion": "ocrfleet.io/v1alpha1",
        "kind": "OcrCluster",
        "metadata": {"name": name, "namespace": namespace, "uid": "0000-uid", "generation": 1},
        "spec": copy.deepcopy(spec or {}),
    }
    stored = apply_defaults(crd_schema("ocrclusters"), body)
    return images_with_defaults(stored, OperatorSettings()) if images else stored


@pytest.fixture
def cluster():
    return make_cluster()
