"""kubectl explain and the API reference: every CRD field is described, and docs/api-reference.md
is what ``python -m ocrfleet_dev.crdref`` renders from ``crds/``."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from ocrfleet_dev import coretypes, crdref

ROOT = Path(__file__).resolve().parents[2]
CRDS = sorted((ROOT / "crds").glob("*.yaml"))
REFERENCE = ROOT / "docs" / "api-reference.md"


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_both_crds_are_checked():
    assert [p.name for p in CRDS] == ["ocrfleet.io_ocrclusters.yaml", "ocrfleet.io_ocrjobs.yaml"]
    assert crdref.crd_files() == CRDS


@pytest.mark.parametrize("path", CRDS, ids=lambda p: p.name)
def test_every_crd_field_has_a_description(path):
    crd = _load(path)
    missing = crdref.crd_undescribed(crd)
    assert missing == [], (
        f"{path.name}: fields without a description (kubectl explain shows nothing for them); "
        "describe each in the CRD, then regenerate docs/api-reference.md:\n  " + "\n  ".join(missing))
    walked = [f.path for v in crd["spec"]["versions"] for f in crdref.fields(v["schema"]["openAPIV3Schema"])]
    assert {"spec", "status", "status.conditions[].type"} <= set(walked)


SYNTHETIC = {
    "type": "object",
    "description": "A kind.",
    "properties": {
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "description": "The spec.",
            "required": ["a"],
            "properties": {
                "a": {"type": "integer", "description": "   "},
                "b": {"type": "string", "description": "B."},
                "nested": {"type": "object", "description": "N.", "properties": {
                    "deep": {"type": "boolean"},
                    "metadata": {"type": "string"},
                }},
                "list": {"type": "array", "description": "L.", "items": {"type": "object", "properties": {
                    "x": {"type": "string"}, "y": {"type": "string", "description": "Y."}}}},
                "map": {"type": "object", "description": "M.", "additionalProperties": {
                    "type": "object", "properties": {"z": {"type": "number"}}}},
            },
        },
        "status": {"type": "object", "properties": {"ok": {"type": "boolean", "description": "OK."}}},
    },
}


def test_the_walker_catches_every_missing_description():
    """Blank, nested, array items' and map values' properties, the top-level objects and the root;
    only the root metadata (which the API server lets carry nothing but its type) is exempt."""
    assert crdref.undescribed(SYNTHETIC) == [
        "spec.a", "spec.nested.deep", "spec.nested.metadata", "spec.list[].x", "spec.map.*.z", "status"]
    rootless = {k: v for k, v in SYNTHETIC.items() if k != "description"}
    assert crdref.undescribed(rootless)[0] == "(root)"


@pytest.mark.parametrize("path", CRDS, ids=lambda p: p.name)
def test_a_real_crd_with_one_description_removed_fails(path):
    crd = copy.deepcopy(_load(path))
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    del schema["properties"]["status"]["properties"]["conditions"]["items"]["properties"]["reason"]["description"]
    schema["properties"]["spec"]["description"] = ""
    version = crd["spec"]["versions"][0]["name"]
    assert crdref.crd_undescribed(crd) == [f"{version}: spec", f"{version}: status.conditions[].reason"]


def test_the_api_reference_is_up_to_date():
    rendered = crdref.render(CRDS)
    assert REFERENCE.exists() and REFERENCE.read_text() == rendered, (
        "docs/api-reference.md is out of date with crds/; regenerate it from the repository root:\n"
        "  .venv/bin/python -m ocrfleet_dev.crdref > docs/api-reference.md")


def test_the_reference_shows_every_field_with_its_default_and_validation():
    text = REFERENCE.read_text()
    for path in CRDS:
        crd = _load(path)
        kind = crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            assert f"## {kind} {version['name']}" in text
            for f in crdref.fields(version["schema"]["openAPIV3Schema"]):
                assert f"| `{f.path}` |" in text, f"{kind} {version['name']}: {f.path} is missing from the reference"
    workers = next(line for line in text.splitlines() if line.startswith("| `spec.workers.minReplicas` |"))
    assert "`1`" in workers and "0 to 1,000" in workers
    assert "one of `Always`, `IfNotPresent`, `Never`" in text
    assert r"pattern `^[0-9]+(\.[0-9]+)?(Ki\|Mi\|Gi\|Ti)$`" in text  # a pipe escaped inside the table
    assert "rule `self == oldSelf` (clusterRef is immutable" in text


def test_a_synthetic_crd_renders_a_table_per_object(tmp_path):
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "things.example.com"},
           "spec": {"group": "example.com", "scope": "Namespaced",
                    "names": {"kind": "Thing", "plural": "things"},
                    "versions": [{"name": "v1", "served": True, "storage": True,
                                  "schema": {"openAPIV3Schema": SYNTHETIC}}]}}
    (tmp_path / "thing.yaml").write_text(yaml.safe_dump(crd))
    text = crdref.render(crdref.crd_files(tmp_path))
    for section in ("### Thing\n", "### Thing `spec`", "### Thing `spec.nested`", "### Thing `spec.list[]`",
                    "### Thing `spec.map.*`", "### Thing `status`"):
        assert section in text
    assert "| `spec.a` | integer |  |  | required |" in text
    assert "| `spec.list` | [\\[\\]object](#thing-v1-spec-list-items) |" in text
    assert "| `spec.map.*.z` | number |" in text


def test_embedded_core_types_carry_kubernetes_schemas_not_free_form_objects():
    """resources, tolerations, affinity and topologySpreadConstraints are validated by Kubernetes's
    own schemas (generated from the served OpenAPI; e2e/test_operator_cluster.py compares them
    with what the API server of the pinned version serves)."""
    clusters = _load(ROOT / "crds" / "ocrfleet.io_ocrclusters.yaml")
    nodes = coretypes.embedded_nodes(clusters)
    assert sorted(nodes) == sorted(coretypes.EMBEDDED)
    for path in CRDS:
        assert "x-kubernetes-preserve-unknown-fields" not in path.read_text()
    markers = [m["type"] for line in (ROOT / "crds" / "ocrfleet.io_ocrclusters.yaml").read_text().splitlines()
               if (m := coretypes.MARKER.match(line))]
    assert sorted(markers) == sorted(coretypes.EMBEDDED.values())
    toleration = nodes["spec.workers.tolerations"]["properties"]
    assert set(toleration) == {"key", "operator", "value", "effect", "tolerationSeconds"}
    assert toleration["operator"]["enum"] == ["Equal", "Exists", "Gt", "Lt"]
    limits = nodes["spec.workers.resources"]["properties"]["limits"]["additionalProperties"]
    assert limits["x-kubernetes-int-or-string"] is True and limits["pattern"] == coretypes.QUANTITY_PATTERN
    spread = nodes["spec.api.topologySpreadConstraints"]
    assert {"maxSkew", "topologyKey", "whenUnsatisfiable"} <= set(spread["required"])
