"""Schemathesis against the served OpenAPI document: no 5xx and no schema violations.

Error answers are held to it as much as successes: their bodies to ``ProblemDetails`` under
``application/problem+json``, their headers (``Retry-After``, ``WWW-Authenticate``, ``Location``)
to what each status declares.

Every operation is called with generated valid (positive) and invalid (negative) inputs,
authenticated as a real tenant. ``positive_data_acceptance`` is left out: a schema cannot say
"a real PNG", so schema-valid uploads of random bytes are rightly refused with 415.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection]
OPERATIONS = [
    ("/v1/documents", "POST"),
    ("/v1/documents/check-cache", "POST"),
    ("/v1/documents/{document_id}", "GET"),
    ("/v1/batches", "POST"),
    ("/v1/batches/{batch_id}", "GET"),
    ("/v1/namespaces/{namespace}/ocrjobs/{name}/results", "GET"),
    ("/v1/stats", "GET"),
    ("/healthz", "GET"),
    ("/readyz", "GET"),
]
# Operations with neither a body nor a parameter: there is nothing to make invalid, so they are
# fuzzed with valid inputs only (a test below keeps this list true to the schema).
WITHOUT_INPUTS = {("/healthz", "GET"), ("/readyz", "GET")}
CASES = [(path, method, mode) for path, method in OPERATIONS for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
         if mode == GenerationMode.POSITIVE or (path, method) not in WITHOUT_INPUTS]


# An over-long body is refused with 413 before it is parsed: a rejection like 400/422.
CONFIG = SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {"expected-statuses": [
    "400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]}}})


@pytest.fixture(scope="session")
def api_schema(api_server):
    return schemathesis.openapi.from_url(api_server.url + "/openapi.json", config=CONFIG)


def test_every_operation_is_fuzzed(api_schema):
    served = {(op.ok().path, op.ok().method.upper()) for op in api_schema.get_all_operations()}
    assert served == set(OPERATIONS)
    without_inputs = {(path, method) for path, method in OPERATIONS
                      if not (api_schema[path][method].body or list(api_schema[path][method].iter_parameters()))}
    assert without_inputs == WITHOUT_INPUTS


@pytest.mark.parametrize(("path", "method", "mode"), CASES, ids=[f"{m} {p} {g.value}" for p, m, g in CASES])
def test_api_conforms_to_its_openapi(api_schema, api, path, method, mode):
    operation = api_schema[path][method]
    key = api.tenant("fuzz")

    @settings(max_examples=25, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case):
        case.call_and_validate(base_url=api.server.url, headers=api.auth(key), checks=CHECKS)

    check()
