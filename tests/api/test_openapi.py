"""The served OpenAPI document tells a client generator the truth: stable operationIds, every
error under ``application/problem+json`` with its schema, the headers answers carry, the signing
scheme, and a description and an example on every field of every schema.

What the server then does against this document is fuzzed in ``test_openapi_fuzz.py``.
"""

from __future__ import annotations

from ocrfleet_api.auth import CONTENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER
from ocrfleet_api.openapi import SIGNING

OPERATION_IDS = {
    ("post", "/v1/documents"): "submitDocument",
    ("post", "/v1/documents/check-cache"): "checkCache",
    ("get", "/v1/documents/{document_id}"): "getDocument",
    ("post", "/v1/batches"): "submitBatch",
    ("get", "/v1/batches/{batch_id}"): "getBatch",
    ("get", "/v1/namespaces/{namespace}/ocrjobs/{name}/results"): "getJobResults",
    ("get", "/v1/stats"): "getStats",
    ("get", "/healthz"): "healthz",
    ("get", "/readyz"): "readyz",
}


def operations(spec: dict):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def test_operation_ids_are_the_stable_names_clients_are_generated_with(api):
    spec = api.http.get("/openapi.json").json()
    assert {(m, p): op["operationId"] for m, p, op in operations(spec)} == OPERATION_IDS


def test_every_error_is_a_problem_document_with_its_schema_and_nothing_else(api):
    spec = api.http.get("/openapi.json").json()
    errors = 0
    for method, path, operation in operations(spec):
        for status, response in operation["responses"].items():
            if status[0] in "45":
                errors += 1
                assert response["content"] == {"application/problem+json": {
                    "schema": {"$ref": "#/components/schemas/ProblemDetails"}}}, (method, path, status)
            else:
                assert list(response["content"]) == ["application/json"], (method, path, status)
    assert errors >= 40
    assert set(spec["components"]["schemas"]["ProblemDetails"]["required"]) == {"type", "title", "status", "detail",
                                                                                "code"}


def test_the_headers_of_answers_are_documented(api):
    spec = api.http.get("/openapi.json").json()
    submit = spec["paths"]["/v1/documents"]["post"]["responses"]
    assert submit["202"]["headers"]["Location"]["required"] is True
    assert submit["202"]["headers"]["Idempotent-Replayed"]["required"] is False
    assert submit["401"]["headers"]["WWW-Authenticate"]["required"] is True
    assert "RateLimit-Remaining" not in submit["401"]["headers"], "no quota before the key is known"
    for status in ("429", "503"):
        assert submit[status]["headers"]["Retry-After"]["required"] is True
    assert submit["429"]["headers"]["RateLimit-Remaining"]["required"] is True
    assert submit["409"]["headers"]["Retry-After"]["required"] is True
    for method, path, operation in operations(spec):
        if "security" in operation:
            assert "RateLimit-Remaining" in operation["responses"]["200" if method == "get" or "check" in path
                                                                   else "202"]["headers"], (method, path)
    assert "headers" not in spec["paths"]["/healthz"]["get"]["responses"]["200"]


def test_the_signing_headers_are_security_schemes_beside_the_key(api):
    spec = api.http.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert {schemes[name]["name"].lower() for name in SIGNING} == {TIMESTAMP_HEADER, CONTENT_HEADER,
                                                                    SIGNATURE_HEADER}
    security = spec["paths"]["/v1/documents"]["post"]["security"]
    assert {"HTTPBearer": []} in security and {"APIKeyHeader": []} in security
    assert {"HTTPBearer": [], "SignedTimestamp": [], "SignedContent": [], "Signature": []} in security
    assert "security" not in spec["paths"]["/readyz"]["get"]


def test_every_schema_field_has_a_description_and_an_example(api):
    spec = api.http.get("/openapi.json").json()
    missing = []
    for name, schema in spec["components"]["schemas"].items():
        for field, prop in schema.get("properties", {}).items():
            if not prop.get("description"):
                missing.append(f"{name}.{field}: description")
            described_by_its_schema = "$ref" in prop or "$ref" in prop.get("items", {}) or any(
                "$ref" in alt for alt in prop.get("anyOf", []))
            if not (prop.get("examples") or described_by_its_schema):
                missing.append(f"{name}.{field}: example")
    for method, path, operation in operations(spec):
        for parameter in operation.get("parameters", []):
            if not parameter.get("description") and not parameter.get("schema", {}).get("description"):
                missing.append(f"{method} {path} {parameter['name']}: description")
    assert missing == []


def test_list_routes_are_paged_with_a_cursor(api):
    spec = api.http.get("/openapi.json").json()
    for path, schema in (("/v1/batches/{batch_id}", "BatchStatus"),
                         ("/v1/namespaces/{namespace}/ocrjobs/{name}/results", "JobResults")):
        parameters = {p["name"] for p in spec["paths"][path]["get"]["parameters"]}
        assert {"limit", "after"} <= parameters, path
        assert "next" in spec["components"]["schemas"][schema]["properties"], schema
