"""The API reference of ocrfleet's custom resources, generated from the CRDs in ``crds/``::

    python -m ocrfleet_dev.crdref > docs/api-reference.md

Per kind and served version: the resource's names and ``kubectl get`` columns, then one table
per object of its schema (the root, ``spec``, ``status`` and every nested object, array items'
objects included), a row per field with its path, type, default, description and validation
(required, enum, bounds, lengths, pattern, CEL rules). The CRDs are the one source: their
descriptions are what ``kubectl explain`` shows, and ``tests/operator/test_crd_reference.py``
fails when a field has none (:func:`undescribed`) or when ``docs/api-reference.md`` differs
from what this module renders. Standard library and PyYAML only.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from ocrfleet_dev.coretypes import EMBEDDED

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"
OUTPUT = "docs/api-reference.md"
COMMAND = f"python -m ocrfleet_dev.crdref > {OUTPUT}"

#: Root properties whose schema the API server allows no description for: the root ``metadata``
#: may carry nothing but its type (kubectl explain shows ObjectMeta's own documentation).
UNDESCRIBABLE = frozenset({"metadata"})
K8S_REFERENCE = "https://kubernetes.io/docs/reference/generated/kubernetes-api/v1.37/"
"""Where the Kubernetes core types the CRDs embed (``coretypes.EMBEDDED``) are documented."""
METADATA_TEXT = "Standard object metadata (ObjectMeta): name, namespace, labels, annotations, ..."


# -- walking a schema ------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """One property of a schema: its path from the root (``spec.workers.gpu.count``; array items
    as ``[]``, map values as ``.*``), its own schema, and whether its parent requires it."""

    path: str
    schema: Mapping
    required: bool


def fields(schema: Mapping, prefix: str = "") -> Iterator[Field]:
    """Every property below ``schema``, depth first in the file's order, nested objects, array
    items' and map values' properties included."""
    required = set(schema.get("required") or ())
    for name, sub in (schema.get("properties") or {}).items():
        path = f"{prefix}.{name}" if prefix else name
        yield Field(path, sub, name in required)
        if path not in EMBEDDED:  # a Kubernetes core type: its own reference documents it
            yield from _nested(sub, path)


def _nested(schema: Mapping, path: str) -> Iterator[Field]:
    yield from fields(schema, path)
    if isinstance(schema.get("items"), Mapping):
        yield from _nested(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), Mapping):
        yield from _nested(schema["additionalProperties"], f"{path}.*")


def undescribed(schema: Mapping) -> list[str]:
    """The paths of the properties of ``schema`` (an ``openAPIV3Schema``) without a non-empty
    description; ``(root)`` when the schema itself has none. The root ``metadata`` is exempt."""
    missing = [] if _description(schema) else ["(root)"]
    for f in fields(schema):
        if f.path in UNDESCRIBABLE:
            continue
        if not _description(f.schema):
            missing.append(f.path)
    return missing


def crd_undescribed(crd: Mapping) -> list[str]:
    """:func:`undescribed` over every version of a CRD, each path prefixed with its version."""
    return [f"{version['name']}: {path}" for version in crd["spec"]["versions"]
            for path in undescribed(version["schema"]["openAPIV3Schema"])]


def _description(schema: Mapping) -> str:
    value = schema.get("description")
    return value.strip() if isinstance(value, str) else ""


# -- rendering -------------------------------------------------------------------------------


def crd_files(directory: Path = CRD_DIR) -> list[Path]:
    return sorted(directory.glob("*.yaml"))


def render(paths: Iterable[Path]) -> str:
    """The whole reference for the CRD files ``paths``, as Markdown."""
    crds = [yaml.safe_load(Path(p).read_text()) for p in paths]
    out = [
        "# API reference",
        "",
        f"<!-- Generated from crds/ by `{COMMAND}`; do not edit by hand.",
        "     tests/operator/test_crd_reference.py fails when this file is out of date. -->",
        "",
        "Every field of ocrfleet's custom resources, as the CRDs in `crds/` define them; the descriptions",
        "are the ones `kubectl explain` shows (`kubectl explain ocrcluster.spec.workers`). The API server",
        "applies the defaults when an object is written; a field marked *required* must be set.",
        "",
    ]
    for crd in crds:
        for version in crd["spec"]["versions"]:
            kind = crd["spec"]["names"]["kind"]
            out.append(f"- [{kind} {version['name']}](#{_anchor(kind, version['name'])})")
    out.append("")
    for crd in crds:
        for version in crd["spec"]["versions"]:
            out += _render_version(crd, version)
    return "\n".join(out).rstrip("\n") + "\n"


def _render_version(crd: Mapping, version: Mapping) -> list[str]:
    spec, names = crd["spec"], crd["spec"]["names"]
    kind, vname = names["kind"], version["name"]
    schema = version["schema"]["openAPIV3Schema"]
    facts = [f"`{crd['metadata']['name']}`", spec["scope"].lower(), f"`apiVersion: {spec['group']}/{vname}`"]
    if names.get("shortNames"):
        facts.append("short names " + ", ".join(f"`{n}`" for n in names["shortNames"]))
    if names.get("categories"):
        facts.append("categories " + ", ".join(f"`{c}`" for c in names["categories"]))
    facts.append(", ".join(w for w, on in (("served", version.get("served")), ("storage version", version.get("storage")))
                           if on) or "not served")
    if "status" in (version.get("subresources") or {}):
        facts.append("status subresource")
    out = [f'<a id="{_anchor(kind, vname)}"></a>', "", f"## {kind} {vname}", "",
           _text(_description(schema)), "", "; ".join(facts) + ".", ""]
    columns = version.get("additionalPrinterColumns") or []
    if columns:
        out += ["`kubectl get` columns (priority 1: with `-o wide` only):", "",
                "| column | type | JSONPath | priority | description |", "|---|---|---|---|---|"]
        out += [f"| {_text(c['name'])} | {c['type']} | {_code(c['jsonPath'])} | {c.get('priority', 0)} | "
                f"{_text(c.get('description', ''))} |" for c in columns]
        out.append("")
    for path, obj in _objects(schema):
        out += _render_object(kind, vname, path, obj)
    return out


def _objects(schema: Mapping) -> Iterator[tuple[str, Mapping]]:
    """The schema's objects that have properties, each with its path ("" for the root)."""
    yield "", schema
    for f in fields(schema):
        target = None if f.path in EMBEDDED else _properties_holder(f.schema)
        if target is not None:
            yield _holder_path(f), target


def _properties_holder(schema: Mapping) -> Mapping | None:
    """The schema whose properties a field's own table lists: the field's, its items' or its values'."""
    for candidate in (schema, schema.get("items"), schema.get("additionalProperties")):
        if isinstance(candidate, Mapping) and candidate.get("properties"):
            return candidate
    return None


def _holder_path(f: Field) -> str:
    if f.schema.get("properties"):
        return f.path
    return f"{f.path}[]" if isinstance(f.schema.get("items"), Mapping) and f.schema["items"].get("properties") \
        else f"{f.path}.*"


def _render_object(kind: str, version: str, path: str, obj: Mapping) -> list[str]:
    title = f"{kind} `{path}`" if path else kind
    intro = _text(_description(obj)) if path and _description(obj) else ""
    # the root's table follows the version's heading, whose anchor it shares
    out = [f'<a id="{_anchor(kind, version, path)}"></a>', ""] if path else []
    out += [f"### {title}", ""]
    if intro:
        out += [intro, ""]
    out += ["| field | type | default | description | validation |", "|---|---|---|---|---|"]
    required = set(obj.get("required") or ())
    for name, sub in obj["properties"].items():
        full = f"{path}.{name}" if path else name
        field = Field(full, sub, name in required)
        description = _description(sub) or (METADATA_TEXT if not path and name in UNDESCRIBABLE else "")
        default = _code(json.dumps(sub["default"], ensure_ascii=False)) if "default" in sub else ""
        out.append(f"| {_code(full)} | {_type(kind, version, field)} | {default} | {_text(description)} | "
                   f"{'; '.join(_validation(field))} |")
    out.append("")
    return out


def _type(kind: str, version: str, f: Field) -> str:
    schema = f.schema
    if f.path in EMBEDDED:
        core = EMBEDDED[f.path]
        link = f"[corev1.{core}]({K8S_REFERENCE}#{core.lower()}-v1-core)"
        return f"[]{link}" if schema.get("type") == "array" else link
    holder = _properties_holder(schema)
    name = _scalar_type(schema)
    if schema.get("type") == "array":
        name = "[]" + _scalar_type(schema.get("items") or {})
    elif schema.get("type") == "object" and isinstance(schema.get("additionalProperties"), Mapping):
        name = "map[string]" + _scalar_type(schema["additionalProperties"])
    if holder is not None:
        return f"[{_text(name)}](#{_anchor(kind, version, _holder_path(f))})"
    return name


def _scalar_type(schema: Mapping) -> str:
    name = schema.get("type", "any")
    if schema.get("format"):
        name += f" ({schema['format']})"
    if name == "object" and schema.get("x-kubernetes-preserve-unknown-fields") and not schema.get("properties"):
        name = "object (free-form)"
    return name


def _validation(f: Field) -> list[str]:
    schema = f.schema
    out = ["required"] if f.required else []
    out += _checks(schema)
    items = schema.get("items")
    if isinstance(items, Mapping) and not items.get("properties"):
        each = _checks(items)
        if each:
            out.append("each item: " + ", ".join(each))
    if schema.get("x-kubernetes-list-type") == "map":
        out.append("a map list keyed by " + ", ".join(_code(k) for k in schema.get("x-kubernetes-list-map-keys") or []))
    for rule in schema.get("x-kubernetes-validations") or []:
        message = f" ({_text(rule['message'])})" if rule.get("message") else ""
        out.append(f"rule {_code(rule['rule'])}{message}")
    return out


def _checks(schema: Mapping) -> list[str]:
    out = []
    if "enum" in schema:
        out.append("one of " + ", ".join(_code(json.dumps(v) if not isinstance(v, str) else v) for v in schema["enum"]))
    out += _bounds(schema, "minimum", "maximum", "{}")
    out += _bounds(schema, "minLength", "maxLength", "length {}")
    out += _bounds(schema, "minItems", "maxItems", "{} items")
    out += _bounds(schema, "minProperties", "maxProperties", "{} entries")
    if schema.get("exclusiveMinimum"):
        out.append("above the minimum")
    if schema.get("exclusiveMaximum"):
        out.append("below the maximum")
    if "pattern" in schema:
        out.append("pattern " + _code(schema["pattern"]))
    return out


def _bounds(schema: Mapping, low: str, high: str, form: str) -> list[str]:
    """``form`` with the range of ``schema[low]``..``schema[high]``, either end open."""
    lo, hi = schema.get(low), schema.get(high)
    if lo is not None and hi is not None:
        return [form.format(f"{_number(lo)} to {_number(hi)}")]
    if lo is not None:
        return [form.format(f"≥ {_number(lo)}")]
    if hi is not None:
        return [form.format(f"≤ {_number(hi)}")]
    return []


def _number(value) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _anchor(kind: str, version: str, path: str = "") -> str:
    tail = re.sub(r"[^a-z0-9]+", "-", path.lower().replace("[]", "-items").replace(".*", "-values")).strip("-")
    return "-".join(p for p in (kind.lower(), version, tail) if p)


_SPECIAL = re.compile(r"([\\`*<>\[\]|])|(?<!\w)_|_(?!\w)")


def _text(value: str) -> str:
    """Plain text for a table cell: one line, Markdown's special characters escaped."""
    return _SPECIAL.sub(lambda m: "\\" + m.group(0), " ".join(value.split()))


def _code(value: str) -> str:
    """A code span for a table cell (a pipe must still be escaped there)."""
    value = " ".join(str(value).split()).replace("|", "\\|")
    fence = "``" if "`" in value else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(f"usage: {COMMAND}   (or: python -m ocrfleet_dev.crdref CRD_DIR)")
        return 0
    directory = Path(args[0]) if args else CRD_DIR
    sys.stdout.write(render(crd_files(directory)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
