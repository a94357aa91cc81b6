"""The OpenAPI document, saying what the API really does.

FastAPI generates the paths and schemas from the routers; :func:`document` then states what a
generator cannot see: every error body is a problem document under ``application/problem+json``
only, with its schema; the headers answers carry (``Location``, ``Retry-After``,
``Idempotent-Replayed``, ``WWW-Authenticate``, the RateLimit fields); and how a request is signed
(the ``X-Ocrfleet-*`` headers, as security schemes beside the API key). operationIds are the
route functions' names in camelCase, so they change only when a route is renamed.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts

from ocrfleet_api.deps import AUTHENTICATING, SELF_AUTHENTICATING
from ocrfleet_api.problems import MEDIA_TYPE

PROBLEM_SCHEMA = {"$ref": "#/components/schemas/ProblemDetails"}
_INT = {"type": "integer", "minimum": 0}

HEADERS: dict[str, dict[str, Any]] = {
    "Location": {"description": "Where to read the status of what was accepted (its status_url).",
                 "schema": {"type": "string", "format": "uri-reference"}},
    "Idempotent-Replayed": {"description": "`true` when this is the stored answer to an earlier request with the "
                            "same Idempotency-Key: nothing was submitted again.",
                            "schema": {"type": "string", "enum": ["true"]}},
    "Retry-After": {"description": "Seconds to wait before sending the request again.", "schema": _INT},
    "WWW-Authenticate": {"description": "The scheme to authenticate with: `Bearer realm=\"ocrfleet\"`.",
                         "schema": {"type": "string"}},
    "RateLimit-Limit": {"description": "Requests the tenant may send per rate-limit window.", "schema": _INT},
    "RateLimit-Remaining": {"description": "Requests left in this window.", "schema": _INT},
    "RateLimit-Reset": {"description": "Seconds until the window ends and the count starts again.", "schema": _INT},
}
RATE_LIMIT = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
#: The headers each status carries, and whether every such answer has them.
BY_STATUS: dict[str, dict[str, bool]] = {
    "202": {"Location": True, "Idempotent-Replayed": False},
    "401": {"WWW-Authenticate": True},
    "409": {"Retry-After": True},
    "429": {"Retry-After": True},
    "503": {"Retry-After": True},
}

API_KEY = {  # the two ways to present a key (ocrfleet_api.auth reads both)
    "HTTPBearer": {"type": "http", "scheme": "bearer", "description": "An API key: `Authorization: Bearer ofk_...`"},
    "APIKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                     "description": "An API key, alternatively."},
}
SIGNING = {  # the names as documented; auth's constants are their lower-case forms
    "SignedTimestamp": ("X-Ocrfleet-Timestamp", "Unix seconds when the request was signed; within the server's window."),
    "SignedContent": ("X-Ocrfleet-Content-SHA256", "Hex SHA-256 of the raw request body (of the empty body for a GET)."),
    "Signature": ("X-Ocrfleet-Signature", "Hex HMAC-SHA256, with the key's signing secret, of the timestamp, method, "
                  "path with query and body hash, one per line. Required for tenants that require signing; "
                  "checked whenever sent."),
}


def operation_id(route: APIRoute) -> str:
    head, *rest = route.name.split("_")
    return head + "".join(word.capitalize() for word in rest)


def document(app: FastAPI) -> dict[str, Any]:
    """The served document (built once, then cached on the app as FastAPI does)."""
    if app.openapi_schema is None:
        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        _security(doc, [route for route in iter_route_contexts(app.routes)
                        if isinstance(route.original_route, APIRoute) and (
                            route.endpoint in SELF_AUTHENTICATING or _authenticates(route.dependant))])
        for operation in (op for item in doc["paths"].values() for op in item.values()):
            _responses(operation)
        app.openapi_schema = doc
    return app.openapi_schema


def _responses(operation: dict[str, Any]) -> None:
    authenticated = "security" in operation
    for status, response in operation["responses"].items():
        if status[0] in "45":
            response["content"] = {MEDIA_TYPE: {"schema": PROBLEM_SCHEMA}}
        headers = {name: {**HEADERS[name], "required": required}
                   for name, required in BY_STATUS.get(status, {}).items()}
        if authenticated and status != "401":
            headers |= {name: {**HEADERS[name], "required": status == "429"} for name in RATE_LIMIT}
        if headers:
            response["headers"] = headers


def _authenticates(dependant: Dependant) -> bool:
    return any(d.call in AUTHENTICATING or _authenticates(d) for d in dependant.dependencies)


def _security(doc: dict[str, Any], routes: list) -> None:
    schemes = doc.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes |= API_KEY
    for name, (header, description) in SIGNING.items():
        schemes[name] = {"type": "apiKey", "in": "header", "name": header, "description": description}
    signed = {name: [] for name in SIGNING}
    for route in routes:
        for method in route.methods:
            operation = doc["paths"][route.path_format][method.lower()]
            operation["security"] = [{key: []} for key in API_KEY] + [{key: [], **signed} for key in API_KEY]
