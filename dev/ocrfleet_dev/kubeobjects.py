"""Objects as the API server keeps them, for tests and generated testdata: the CRDs' defaults
applied (a default applies where its parent object exists) and merge patches (RFC 7386)."""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"


@functools.cache
def _crd_schema(plural: str) -> dict:
    crd = yaml.safe_load((CRD_DIR / f"ocrfleet.io_{plural}.yaml").read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def crd_schema(plural: str) -> dict:
    """The openAPIV3Schema of ``ocrclusters`` or ``ocrjobs`` (a copy: callers may change it)."""
    return copy.deepcopy(_crd_schema(plural))


def apply_defaults(schema: dict, value: Any) -> Any:
    """``value`` with the schema's defaults filled in, as the API server stores it."""
    if schema.get("type") == "object" and isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = apply_defaults(sub, value[key])
    elif schema.get("type") == "array" and isinstance(value, list) and "items" in schema:
        value = [apply_defaults(schema["items"], v) for v in value]
    return value


def defaulted(obj: Mapping, plural: str) -> dict:
    """A copy of ``obj`` with its CRD's defaults applied."""
    return apply_defaults(_crd_schema(plural), copy.deepcopy(dict(obj)))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, ``null`` removes a key, anything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    out = copy.deepcopy(dict(target)) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out
