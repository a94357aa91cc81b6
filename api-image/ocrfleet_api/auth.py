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
The body is held to its declared hash by :func:`verify_body` (small bodies, read at once) or
by the upload reader while it streams (:mod:`ocrfleet_api.uploads`).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

from fastapi import Request

from ocrfleet import keys
from ocrfleet_api.blocking import Blocking
from ocrfleet_api.problems import Problem
from ocrfleet_api.tenants import KeyRecord, TenantDirectory, hash_key, signing_secret, split_key

TIMESTAMP_HEADER = "x-ocrfleet-timestamp"
CONTENT_HEADER = "x-ocrfleet-content-sha256"
SIGNATURE_HEADER = "x-ocrfleet-signature"
MAX_SIGNED_BODY = 1 << 20
"""A signed non-upload request body is read whole to check its hash; larger ones are refused."""


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    tenant: str
    key_id: str
    rate_limit: int | None
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

    def __init__(self, directory: TenantDirectory, redis, blocking: Blocking, *, master_key: str, require_signatures: bool,
                 window_s: int, cache_s: float) -> None:
        self.directory = directory
        self.redis = redis
        self.blocking = blocking
        self.master_key = master_key
        self.require_signatures = require_signatures
        self.window_s = window_s
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, KeyRecord]] = {}

    async def authenticate(self, request: Request) -> Principal:
        api_key = _presented_key(request)
        if not api_key:
            raise _unauthorized("missing_api_key",
                                "no API key; send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
        key_id = split_key(api_key)
        record = await self._record(key_id) if key_id else None
        if record is None or not hmac.compare_digest(record.key_sha256, hash_key(api_key)):
            raise _unauthorized("invalid_api_key", "the API key is not valid; check it or ask for a new one")
        if record.revoked:
            raise _unauthorized("revoked_api_key", f"the API key {record.key_id} was revoked; use another key")
        if not record.tenant_active:
            raise Problem(403, "tenant_disabled", f"tenant {record.tenant!r} is disabled; contact the operator")
        body_sha256 = None
        if SIGNATURE_HEADER in request.headers or record.require_signature or self.require_signatures:
            body_sha256 = await self._verify_signature(request, record)
        return Principal(tenant=record.tenant, key_id=record.key_id, rate_limit=record.rate_limit,
                         body_sha256=body_sha256)

    async def _record(self, key_id: str) -> KeyRecord | None:
        now = time.monotonic()
        cached = self._cache.get(key_id)
        if cached and cached[0] > now:
            return cached[1]
        record = await self.blocking(self.directory.lookup, key_id)
        if record is not None and self.cache_s > 0:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key_id] = (now + self.cache_s, record)
        return record

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
        fresh = await self.redis.set(keys.signature_seen(record.tenant, expected), b"1", nx=True,
                                     ex=2 * self.window_s)
        if not fresh:
            raise _unauthorized("signature_replayed", "this signed request was already received; sign each "
                                "request anew")
        return content.lower()


async def verify_body(request: Request, principal: Principal) -> None:
    """For a signed request with a small body: read it and hold it to its declared hash."""
    if principal.body_sha256 is None:
        return
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_SIGNED_BODY:
        raise Problem(413, "body_too_large", f"a signed request body may be at most {MAX_SIGNED_BODY} bytes here")
    body = await request.body()
    if not hmac.compare_digest(hashlib.sha256(body).hexdigest(), principal.body_sha256):
        raise _unauthorized("invalid_signature", "the body does not match X-Ocrfleet-Content-SHA256")


def _presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return request.headers.get("x-api-key") or None
