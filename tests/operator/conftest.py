"""Helpers for the operator's fast tests: cluster objects defaulted by the CRD itself.

The CRD is the truth about defaults, so the tests apply its schema's defaults the way the
API server does (a default applies where its parent object exists) instead of repeating them.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def crd_schema(plural: str) -> dict:
    crd = yaml.safe_load((ROOT / "crds" / f"ocrfleet.io_{plural}.yaml").read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def apply_defaults(schema: dict, value):
    if schema.get("type") == "object" and isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = apply_defaults(sub, value[key])
    elif schema.get("type") == "array" and isinstance(value, list) and "items" in schema:
        value = [apply_defaults(schema["items"], v) for v in value]
    return value


def make_cluster(spec: dict | None = None, name: str = "pool", namespace: str = "ocr") -> dict:
    body = {
        "apiVersion": "ocrfleet.io/v1alpha1",
        "kind": "OcrCluster",
        "metadata": {"name": name, "namespace": namespace, "uid": "0000-uid", "generation": 1},
        "spec": copy.deepcopy(spec or {}),
    }
    return apply_defaults(crd_schema("ocrclusters"), body)


@pytest.fixture
def cluster():
    return make_cluster()
