"""Idempotency keys: the same ``Idempotency-Key`` twice returns the first answer.

The first request with a key claims it in Redis (``SET NX``, a short-lived *pending* marker),
does its work and stores its answer under the key for ``ttl_s``; a repeat gets that answer
back without its body being read, so nothing is stored or enqueued twice. A repeat that
arrives while the first is still running gets 409; a first request that fails releases the
key, so the client may retry with it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from ocrfleet import keys
from ocrfleet_api.problems import Problem

HEADER = "Idempotency-Key"
_PENDING = b"pending"
_PENDING_TTL_S = 300
_VALID = re.compile(r"^[\x21-\x7e]{1,255}$")


@dataclass(frozen=True)
class StoredAnswer:
    status: int
    body: dict


class IdempotencyKeys:
    def __init__(self, redis, *, ttl_s: int) -> None:
        self.redis = redis
        self.ttl_s = ttl_s

    async def claim(self, tenant: str, key: str) -> StoredAnswer | None:
        """Claim ``key`` for a new request, or return the first request's answer."""
        if not _VALID.match(key):
            raise Problem(422, "invalid_idempotency_key",
                          f"{HEADER} must be 1-255 printable ASCII characters without spaces")
        name = keys.idempotency(tenant, key)
        if await self.redis.set(name, _PENDING, nx=True, ex=_PENDING_TTL_S):
            return None
        stored = await self.redis.get(name)
        if stored is None:  # expired between the two calls: claim again
            return await self.claim(tenant, key)
        if stored == _PENDING:
            raise Problem(409, "idempotency_key_in_use",
                          f"a request with this {HEADER} is still being processed; retry in a moment",
                          title="Conflict", headers={"Retry-After": "1"})
        data = json.loads(stored)
        return StoredAnswer(status=data["status"], body=data["body"])

    async def complete(self, tenant: str, key: str, status: int, body: dict) -> None:
        await self.redis.set(keys.idempotency(tenant, key), json.dumps({"status": status, "body": body}),
                             ex=self.ttl_s)

    async def release(self, tenant: str, key: str) -> None:
        await self.redis.delete(keys.idempotency(tenant, key))
