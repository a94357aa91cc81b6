"""Typed dependencies the routers declare: the process's services and the calling tenant.

``TenantDep`` authenticates, applies the tenant's rate limit and, for a signed request,
holds the (small) body to its declared hash. ``StreamingTenantDep`` does the same but leaves
the body unread: upload routes check its hash while they stream it. :func:`json_body` parses
a small JSON body into a model only after the caller was authenticated (a body parameter
would make FastAPI read it first).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPBearer
from pydantic import BaseModel, ValidationError

from ocrfleet_api.auth import Principal, read_body
from ocrfleet_api.problems import invalid_body
from ocrfleet_api.services import Services

# Declared so the OpenAPI document names the schemes; the Authenticator does the checking.
_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer ofk_...`")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key, alternatively.")


async def get_services(request: Request) -> Services:
    # async on purpose: FastAPI runs a plain `def` dependency in the thread pool, a hop per request.
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


async def authenticated(request: Request, services: ServicesDep, _b: Annotated[object, Depends(_bearer)],
                        _k: Annotated[object, Depends(_api_key)]) -> Principal:
    principal = await services.auth.authenticate(request)
    request.state.quota = await services.limiter.check(principal.tenant, principal.rate_limit)
    return principal


async def tenant_with_body(request: Request, principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
    await read_body(request, principal)
    return principal


TenantDep = Annotated[Principal, Depends(tenant_with_body)]
StreamingTenantDep = Annotated[Principal, Depends(authenticated)]


def parse_json(model: type[BaseModel], body: bytes) -> BaseModel:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise invalid_body(exc) from None


def json_body(model: type[BaseModel]):
    """A dependency: the request's JSON body as ``model``, read once the caller is authenticated."""
    async def parse(request: Request, _principal: TenantDep) -> BaseModel:
        return parse_json(model, await request.body())
    return Depends(parse)
