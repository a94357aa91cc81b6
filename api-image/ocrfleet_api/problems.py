"""RFC 9457 problem details: every error the API returns is one, and says what to do.

:class:`Problem` is the one exception routers raise; the handlers installed by
:func:`install` turn it, the shared core's :class:`~ocrfleet.errors.OcrfleetError`\\ s,
validation errors, unknown routes and unexpected failures into ``application/problem+json``.
"""

from __future__ import annotations

import logging
from typing import Any

import redis.exceptions
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ocrfleet.errors import DocumentTooLarge, OcrfleetError, TemporaryError, UnsupportedType

log = logging.getLogger(__name__)

PROBLEM_BASE = "https://ocrfleet.io/problems/"
MEDIA_TYPE = "application/problem+json"


class ProblemDetails(BaseModel):
    """The body of every error response (RFC 9457), as ``application/problem+json``."""

    type: str = Field(description="A URI naming the problem: https://ocrfleet.io/problems/ and its code.",
                      examples=["https://ocrfleet.io/problems/rate_limited"])
    title: str = Field(description="A short summary of the problem type.", examples=["Too many requests"])
    status: int = Field(description="The HTTP status code.", examples=[429])
    detail: str = Field(description="What went wrong with this request, and what to do.",
                        examples=["tenant 'acme-loans' is limited to 600 requests per 60 s; retry after 12 s"])
    instance: str | None = Field(None, description="The path of the request.", examples=["/v1/documents"])
    code: str = Field(description="A stable, machine-readable code (the last segment of type).",
                      examples=["rate_limited"])
    errors: list[dict[str, Any]] | None = Field(
        None, description="For invalid requests: each offending location (loc), message (msg) and type.",
        examples=[[{"loc": ["body", "sha256"], "msg": "String should match pattern '^[0-9a-fA-F]{64}$'",
                    "type": "string_pattern_mismatch"}]])


class Problem(Exception):
    """An error response: status, a stable code, and a detail that says what to do."""

    def __init__(self, status: int, code: str, detail: str, *, title: str | None = None,
                 headers: dict[str, str] | None = None, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title or code.replace("_", " ").capitalize()
        self.headers = headers or {}
        self.errors = errors

    def response(self, instance: str | None = None) -> JSONResponse:
        body = ProblemDetails(type=PROBLEM_BASE + self.code, title=self.title, status=self.status,
                              detail=self.detail, instance=instance, code=self.code, errors=self.errors)
        return JSONResponse(body.model_dump(exclude_none=True), status_code=self.status,
                            headers=self.headers, media_type=MEDIA_TYPE)


def from_error(exc: OcrfleetError) -> Problem:
    """The problem for an error of the shared core (a rejected document, a dependency away)."""
    if isinstance(exc, DocumentTooLarge):
        return Problem(413, exc.code, exc.message, title="Document too large")
    if isinstance(exc, UnsupportedType):
        return Problem(415, exc.code, exc.message, title="Unsupported document type")
    if isinstance(exc, TemporaryError):  # its message names internal hosts: logged, not answered
        log.warning("temporary failure: %s", exc.message)
        return unavailable("a service this API depends on is temporarily unavailable; retry shortly")
    return Problem(422, exc.code, exc.message, title="Invalid document")


def invalid_body(exc: ValidationError) -> Problem:
    """A JSON body that does not match its model."""
    return Problem(422, "invalid_request", f"the JSON body is invalid: {exc.errors()[0]['msg']}",
                   errors=[{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()])


def unavailable(detail: str, retry_after: int = 5) -> Problem:
    return Problem(503, "unavailable", detail, title="Service unavailable",
                   headers={"Retry-After": str(retry_after)})


PROBLEM: dict[str, Any] = {"model": ProblemDetails}
"""An error response in a route's ``responses`` (:mod:`ocrfleet_api.openapi` gives every 4xx and
5xx its ``application/problem+json`` content)."""

RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {**PROBLEM, "description": text}
    for status, text in {
        400: "The request body could not be parsed",
        401: "No valid API key or signature",
        403: "The tenant is disabled",
        422: "The request or the document is invalid",
        429: "Rate limit exceeded; see Retry-After",
        503: "Overloaded or a dependency is away; see Retry-After",
    }.items()
}
"""Error responses every authenticated route may give, for the OpenAPI document."""


def install(app: FastAPI) -> None:
    """Register the handlers that make every error a problem document."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return exc.response(request.url.path)

    @app.exception_handler(OcrfleetError)
    async def _core(request: Request, exc: OcrfleetError) -> JSONResponse:
        return from_error(exc).response(request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()]
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5])
        return Problem(422, "invalid_request", f"the request is invalid: {where}",
                       title="Invalid request", errors=errors).response(request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {400: "malformed_request", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, f"http_{exc.status_code}")
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 400 and detail == "There was an error parsing the body":
            detail = "the request body could not be parsed; send UTF-8 JSON as the operation documents"
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"there is no resource at {request.url.path}; see /docs for the API"
        return Problem(exc.status_code, code, detail, headers=dict(exc.headers or {})).response(request.url.path)

    @app.exception_handler(redis.exceptions.ConnectionError)
    @app.exception_handler(redis.exceptions.TimeoutError)
    @app.exception_handler(redis.exceptions.OutOfMemoryError)
    @app.exception_handler(redis.exceptions.BusyLoadingError)
    async def _redis_away(request: Request, exc: Exception) -> JSONResponse:
        log.warning("redis unavailable: %s", exc)
        return unavailable("the queue (Redis) is unreachable; retry shortly").response(request.url.path)

    @app.exception_handler(sqlalchemy.exc.OperationalError)
    async def _db_away(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", exc)
        return unavailable("the results database is unreachable; retry shortly").response(request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return Problem(500, "internal_error", "an unexpected error occurred; it has been logged",
                       title="Internal error").response(request.url.path)
