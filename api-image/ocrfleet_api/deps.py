"""Typed dependencies the routers declare: the process's services and the calling tenant.

``TenantDep`` authenticates, applies the tenant's rate limit and, for a signed request,
holds the (small) body to its declared hash. ``StreamingTenantDep`` does the same but leaves
the body unread: upload routes check its hash while they stream it. :func:`parse_json` parses
a small JSON body into a model once the caller is authenticated (a body parameter would make
FastAPI read it first).

Each is one function of the request alone: FastAPI solves a dependency tree anew for every
request, and on the hottest route (check-cache) a tree of twelve cost two thirds of the
request's CPU. The API-key schemes the OpenAPI document names are declared there
(:mod:`ocrfleet_api.openapi`), for the routes that depend on :func:`authenticated`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError

from ocrfleet_api.auth import Principal, read_body
from ocrfleet_api.problems import invalid_body
from ocrfleet_api.services import Services


async def get_services(request: Request) -> Services:
    # async on purpose: FastAPI runs a plain `def` dependency in the thread pool, a hop per request.
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


async def authenticated(request: Request) -> Principal:
    services: Services = request.app.state.services
    principal = await services.auth.authenticate(request)
    request.state.quota = await services.limiter.check(principal.tenant, principal.rate_limit)
    return principal


async def tenant_with_body(request: Request) -> Principal:
    principal = await authenticated(request)
    await read_body(request, principal)
    return principal


AUTHENTICATING = (authenticated, tenant_with_body)
"""The dependencies that authenticate: a route on either names the API-key schemes in OpenAPI."""
SELF_AUTHENTICATING: set = set()
"""Route functions that await :func:`tenant_with_body` themselves (see :func:`authenticates_itself`)."""


def authenticates_itself(endpoint):
    """Marks a route that takes only the request and awaits :func:`tenant_with_body` first thing:
    no dependency to solve per request. For check-cache, whose whole answer costs less than
    FastAPI's solving of two dependencies; OpenAPI names its API-key schemes all the same."""
    SELF_AUTHENTICATING.add(endpoint)
    return endpoint

TenantDep = Annotated[Principal, Depends(tenant_with_body)]
StreamingTenantDep = Annotated[Principal, Depends(authenticated)]


def parse_json(model: type[BaseModel], body: bytes) -> BaseModel:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise invalid_body(exc) from None
