"""Idempotency keys: the same ``Idempotency-Key`` twice returns the first answer.

The first request with a key claims it in Redis (``SET NX``, a short-lived *pending* marker),
does its work and stores its answer under the key for ``ttl_s``; a repeat gets that answer
back without its body being read, so nothing is stored or enqueued twice. A repeat that
arrives while the first is still running gets 409; a first request that fails releases the
key, so the client may retry with it.

A key is bound to the request that first used it (:func:`fingerprint`: method, route, body
length and, for a signed request, the body's hash): the same key on another route or with
another body is refused with 422 instead of answered with the first request's answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import Header

from ocrfleet import keys
from ocrfleet_api.problems import Problem

HEADER = "Idempotency-Key"
#: The header as routes declare it (and the OpenAPI document describes it).
IdempotencyKey = Annotated[str | None, Header(
    alias=HEADER, description="Any 1-255 printable ASCII characters naming this submission: a retry with the same "
    "key gets the first answer back (Idempotent-Replayed: true) instead of submitting again.",
    examples=["loan-4711-id-front"])]
_PENDING_TTL_S = 300
_VALID = re.compile(r"^[\x21-\x7e]{1,255}$")


def fingerprint(method: str, path: str, content_length: str | None, body_sha256: str | None) -> str:
    """What a repeat must match: the route and the body (its length; its hash when signed)."""
    return f"{method} {path} {content_length or '-'} {body_sha256 or '-'}"


def _describe(fp: str) -> str:
    method, path, length, _ = (fp.split(" ") + ["", "", "", ""])[:4]
    return f"{method} {path}" + (f" with a {int(length):,}-byte body" if length.isdigit() else "")


@dataclass(frozen=True)
class StoredAnswer:
    status: int
    body: dict


class IdempotencyKeys:
    def __init__(self, redis, pool: str, *, ttl_s: int) -> None:
        self.redis = redis
        self.pool = pool
        self.ttl_s = ttl_s

    async def claim(self, tenant: str, key: str, request: str) -> StoredAnswer | None:
        """Claim ``key`` for a new request (its :func:`fingerprint`), or return the first
        request's answer; a key first used for another request is refused."""
        if not _VALID.match(key):
            raise Problem(422, "invalid_idempotency_key",
                          f"{HEADER} must be 1-255 printable ASCII characters without spaces")
        name = keys.idempotency(self.pool, tenant, key)
        if await self.redis.set(name, json.dumps({"pending": request}), nx=True, ex=_PENDING_TTL_S):
            return None
        stored = await self.redis.get(name)
        if stored is None:  # expired between the two calls: claim again
            return await self.claim(tenant, key, request)
        data = json.loads(stored)
        first = data.get("pending") or data.get("request") or request
        if first != request:
            raise Problem(422, "idempotency_key_reused",
                          f"this {HEADER} was first used for {_describe(first)}; a key names one request, "
                          "use a new key for another")
        if "pending" in data:
            raise Problem(409, "idempotency_key_in_use",
                          f"a request with this {HEADER} is still being processed; retry in a moment",
                          title="Conflict", headers={"Retry-After": "1"})
        return StoredAnswer(status=data["status"], body=data["body"])

    async def complete(self, tenant: str, key: str, request: str, status: int, body: dict) -> None:
        await self.redis.set(keys.idempotency(self.pool, tenant, key),
                             json.dumps({"request": request, "status": status, "body": body}), ex=self.ttl_s)

    async def release(self, tenant: str, key: str) -> None:
        await self.redis.delete(keys.idempotency(self.pool, tenant, key))
