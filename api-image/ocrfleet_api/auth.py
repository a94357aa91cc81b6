"""Who is calling: API keys (stored hashed), tenants, and optional HMAC request signing.

A request names its key in ``Authorization: Bearer <key>`` (or ``X-API-Key``). A signed
request adds three headers::

    X-Ocrfleet-Timestamp:      unix seconds when it was signed
    X-Ocrfleet-Content-SHA256: hex SHA-256 of the raw request body
    X-Ocrfleet-Signature:      hex HMAC-SHA256(signing secret,
                               "<timestamp>\\n<METHOD>\\n<path>[?<query>]\\n<content sha256>")

Signing is checked when the headers are present, and required when the tenant or the
deployment asks for it. A signature is refused outside the timestamp window and when it was
seen before (replay): each accepted signature is remembered in Redis for twice the window.
The body is held to its declared hash by :func:`read_body` (small bodies, read at once, after
the key was checked) or by the upload reader while it streams (:mod:`ocrfleet_api.uploads`).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import time
from collections import OrderedDict
from dataclasses import dataclass

from fastapi import Request
from redis import exceptions as redis_errors

from ocrfleet import keys
from ocrfleet.masking import MaskPolicy
from ocrfleet_api.blocking import Blocking
from ocrfleet_api.problems import Problem
from ocrfleet_api.tenants import KeyRecord, TenantDirectory, hash_key, signing_secret, split_key

TIMESTAMP_HEADER = "x-ocrfleet-timestamp"
CONTENT_HEADER = "x-ocrfleet-content-sha256"
SIGNATURE_HEADER = "x-ocrfleet-signature"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    tenant: str
    key_id: str
    rate_limit: int | None
    mask: MaskPolicy = MaskPolicy()
    """What every result this caller submits or reads is masked by at least (its tenant's policy,
    else the deployment's default)."""
    ocrjob_namespaces: tuple[str, ...] = ()
    """Namespaces whose OcrJob results this caller may read."""
    body_sha256: str | None = None
    """For a signed request: the SHA-256 its body must have."""


def _unauthorized(code: str, detail: str) -> Problem:
    return Problem(401, code, detail, title="Unauthorized", headers={"WWW-Authenticate": 'Bearer realm="ocrfleet"'})


def canonical_request(timestamp: str, method: str, path_with_query: str, content_sha256: str) -> bytes:
    """The bytes a client signs."""
    return f"{timestamp}\n{method.upper()}\n{path_with_query}\n{content_sha256}".encode()


def sign(secret: str, timestamp: str, method: str, path_with_query: str, body: bytes) -> dict[str, str]:
    """The headers that sign a request (for clients, tests and the benchmark)."""
    content = hashlib.sha256(body).hexdigest()
    mac = hmac.new(secret.encode(), canonical_request(timestamp, method, path_with_query, content), "sha256")
    return {"X-Ocrfleet-Timestamp": timestamp, "X-Ocrfleet-Content-SHA256": content,
            "X-Ocrfleet-Signature": mac.hexdigest()}


class Authenticator:
    """Checks keys and signatures; looked-up keys are trusted for ``cache_s`` seconds."""

    def __init__(self, directory: TenantDirectory, redis, blocking: Blocking, *, pool: str, master_key: str,
                 require_signatures: bool, window_s: int, cache_s: float, mask_default: MaskPolicy,
                 miss_cache_s: float = 30.0, failure_limit: int = 60) -> None:
        self.directory = directory
        self.redis = redis
        self.pool = pool
        self.blocking = blocking
        self.master_key = master_key
        self.require_signatures = require_signatures
        self.window_s = window_s
        self.cache_s = cache_s
        self.mask_default = mask_default
        self.miss_cache_s = miss_cache_s
        self.failure_limit = failure_limit
        self._cache: dict[str, tuple[float, KeyRecord]] = {}
        self._misses: dict[str, float] = {}
        self._known: OrderedDict[str, None] = OrderedDict()
        """Key ids that were valid recently: looked up even from an address over its failure limit."""

    async def authenticate(self, request: Request) -> Principal:
        api_key = _presented_key(request)
        if not api_key:
            raise _unauthorized("missing_api_key",
                                "no API key; send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
        key_id = split_key(api_key)
        address = request.client.host if request.client else "-"
        record = await self._record(key_id, address) if key_id else None
        if record is None or not hmac.compare_digest(record.key_sha256, hash_key(api_key)):
            await self._failed(address)
            raise _unauthorized("invalid_api_key", "the API key is not valid; check it or ask for a new one")
        if record.revoked:
            raise _unauthorized("revoked_api_key", f"the API key {record.key_id} was revoked; use another key")
        if not record.tenant_active:
            raise Problem(403, "tenant_disabled", f"tenant {record.tenant!r} is disabled; contact the operator")
        body_sha256 = None
        if SIGNATURE_HEADER in request.headers or record.require_signature or self.require_signatures:
            body_sha256 = await self._verify_signature(request, record)
        mask = self.mask_default if record.mask_fields is None else MaskPolicy.from_names(record.mask_fields)
        return Principal(tenant=record.tenant, key_id=record.key_id, rate_limit=record.rate_limit, mask=mask,
                         ocrjob_namespaces=record.ocrjob_namespaces, body_sha256=body_sha256)

    async def _record(self, key_id: str, address: str) -> KeyRecord | None:
        """The key's record: from the cache, else from the database unless this address has
        failed too often or the id is known to name no key (probes cost no lookup)."""
        now = time.monotonic()
        cached = self._cache.get(key_id)
        if cached and cached[0] > now:
            return cached[1]
        if self._misses.get(key_id, 0.0) > now:
            return None
        if key_id not in self._known and await self._failures(address) >= self.failure_limit:
            retry = 60 - int(time.time() % 60)
            raise Problem(429, "too_many_failed_authentications",
                          f"this address failed to authenticate {self.failure_limit} times this minute; "
                          f"retry after {retry} s", title="Too many requests", headers={"Retry-After": str(retry)})
        record = await self.blocking.read(self.directory.lookup, key_id)
        if record is None and self.miss_cache_s > 0:
            if len(self._misses) > 100_000:
                self._misses.clear()
            self._misses[key_id] = now + self.miss_cache_s
        if record is not None:
            self._known[key_id] = None
            self._known.move_to_end(key_id)
            if len(self._known) > 10_000:
                self._known.popitem(last=False)
        if record is not None and self.cache_s > 0:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key_id] = (now + self.cache_s, record)
        return record

    def _failures_key(self, address: str) -> str:
        return keys.auth_failures(self.pool, address, int(time.time() // 60))  # this minute's counter

    async def _failures(self, address: str) -> int:
        """This minute's failures of ``address`` (0 with Redis away: reads must not need it)."""
        try:
            return int(await self.redis.get(self._failures_key(address)) or 0)
        except (redis_errors.ConnectionError, redis_errors.TimeoutError):
            return 0

    async def _failed(self, address: str) -> None:
        name = self._failures_key(address)
        pipe = self.redis.pipeline(transaction=False)
        pipe.incr(name)
        pipe.expire(name, 120)
        with contextlib.suppress(redis_errors.ConnectionError, redis_errors.TimeoutError):
            await pipe.execute()

    async def _verify_signature(self, request: Request, record: KeyRecord) -> str:
        headers = request.headers
        timestamp, content, signature = (headers.get(h) for h in (TIMESTAMP_HEADER, CONTENT_HEADER, SIGNATURE_HEADER))
        if not (timestamp and content and signature):
            raise _unauthorized("signature_required",
                                "this tenant requires signed requests; send X-Ocrfleet-Timestamp, "
                                "X-Ocrfleet-Content-SHA256 and X-Ocrfleet-Signature")
        try:
            skew = abs(time.time() - int(timestamp))
        except ValueError:
            raise _unauthorized("invalid_signature", "X-Ocrfleet-Timestamp must be unix seconds") from None
        if skew > self.window_s:
            raise _unauthorized("signature_expired",
                                f"the signature's timestamp is {skew:.0f} s away from the server's clock; "
                                f"sign within {self.window_s} s of sending")
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        secret = signing_secret(self.master_key, record.key_id)
        expected = hmac.new(secret.encode(), canonical_request(timestamp, request.method, path, content.lower()),
                            "sha256").hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise _unauthorized("invalid_signature",
                                "the request signature does not match; sign timestamp, method, path and "
                                "body hash with the key's signing secret")
        fresh = await self.redis.set(keys.signature_seen(self.pool, record.tenant, expected), b"1", nx=True,
                                     ex=2 * self.window_s)
        if not fresh:
            raise _unauthorized("signature_replayed", "this signed request was already received; sign each "
                                "request anew")
        return content.lower()


async def read_body(request: Request, principal: Principal) -> bytes:
    """A small (non-upload) body, read after authentication and, for a signed request, held to
    its declared hash. Its size is capped before routing (:mod:`ocrfleet_api.bodycap`)."""
    body = await request.body()
    if principal.body_sha256 is not None:
        check_signed_body(principal.body_sha256, hashlib.sha256(body).hexdigest())
    return body


def check_signed_body(declared_sha256: str, body_sha256: str) -> None:
    """The one check that a signed request's body is the body it signed (raw and multipart alike)."""
    if not hmac.compare_digest(body_sha256, declared_sha256):
        raise _unauthorized("invalid_signature", "the body does not match X-Ocrfleet-Content-SHA256")


def _presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return request.headers.get("x-api-key") or None
