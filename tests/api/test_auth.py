"""Authentication through HTTP: keys, revocation, disabled tenants, signatures, replays, rate limits."""

from __future__ import annotations

import hashlib
import time

from ocrfleet_api.auth import sign

from tests.api.conftest import MASTER_KEY, assert_problem
from tests.api.documents import png


def test_no_key_is_refused(api):
    r = api.http.get("/v1/stats")
    assert_problem(r, 401, "missing_api_key")
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_wrong_and_malformed_keys_are_refused(api):
    key = api.tenant("acme")
    wrong = key.api_key[:-4] + ("aaaa" if not key.api_key.endswith("aaaa") else "bbbb")
    assert_problem(api.http.get("/v1/stats", headers=api.auth(wrong)), 401, "invalid_api_key")
    assert_problem(api.http.get("/v1/stats", headers=api.auth("not-a-key")), 401, "invalid_api_key")
    assert_problem(api.http.get("/v1/stats", headers=api.auth("ofk_0123456789abcdef_x")), 401, "invalid_api_key")
    assert api.http.get("/v1/stats", headers=api.auth(key)).status_code == 200
    assert api.http.get("/v1/stats", headers={"X-API-Key": key.api_key}).status_code == 200


def test_keys_are_stored_hashed(api):
    key = api.tenant("acme")
    from ocrfleet_api.tables import ApiKeyRow
    from sqlalchemy import select

    with api.store.session() as s:
        row = s.scalars(select(ApiKeyRow)).one()
    assert key.api_key not in (row.key_sha256, row.key_id, row.label)
    assert row.key_sha256 == hashlib.sha256(key.api_key.encode()).hexdigest()


def test_revoked_key_is_refused(api):
    key = api.tenant("acme")
    other = api.directory.issue_key("acme")
    assert api.http.get("/v1/stats", headers=api.auth(key)).status_code == 200
    api.directory.revoke_key(key.key_id)
    assert_problem(api.http.get("/v1/stats", headers=api.auth(key)), 401, "revoked_api_key")
    assert api.http.get("/v1/stats", headers=api.auth(other)).status_code == 200


def test_disabled_tenant_is_refused(api):
    key = api.tenant("acme")
    api.directory.update_tenant("acme", active=False)
    assert_problem(api.http.get("/v1/stats", headers=api.auth(key)), 403, "tenant_disabled")


def _signed(key, method: str, path: str, body: bytes = b"", *, ts: int | None = None) -> dict[str, str]:
    from ocrfleet_api.tenants import signing_secret

    assert signing_secret(MASTER_KEY, key.key_id) == key.signing_secret
    return {**{"Authorization": f"Bearer {key.api_key}"},
            **sign(key.signing_secret, str(ts if ts is not None else int(time.time())), method, path, body)}


def test_signed_requests_bad_signature_and_replay(api):
    key = api.tenant("acme", require_signature=True)
    assert_problem(api.http.get("/v1/stats", headers=api.auth(key)), 401, "signature_required")

    headers = _signed(key, "GET", "/v1/stats")
    assert api.http.get("/v1/stats", headers=headers).status_code == 200
    assert_problem(api.http.get("/v1/stats", headers=headers), 401, "signature_replayed")

    bad = _signed(key, "GET", "/v1/stats")
    bad["X-Ocrfleet-Signature"] = "0" * 64
    assert_problem(api.http.get("/v1/stats", headers=bad), 401, "invalid_signature")

    other_path = _signed(key, "GET", "/v1/stats?day=2020-01-01")
    assert_problem(api.http.get("/v1/stats", headers=other_path), 401, "invalid_signature")

    old = _signed(key, "GET", "/v1/stats", ts=int(time.time()) - 3600)
    assert_problem(api.http.get("/v1/stats", headers=old), 401, "signature_expired")


def test_signature_covers_the_body(api):
    key = api.tenant("acme")
    body = b'{"sha256": "' + b"a" * 64 + b'"}'
    first = int(time.time())
    headers = _signed(key, "POST", "/v1/documents/check-cache", body, ts=first) | {"Content-Type": "application/json"}
    assert_problem(api.http.post("/v1/documents/check-cache", content=body, headers=headers), 404, "not_cached")
    tampered = body.replace(b"a", b"b")
    # another timestamp than the first request's: the same one would be its replay, refused first
    headers = _signed(key, "POST", "/v1/documents/check-cache", body, ts=first - 1) | {
        "Content-Type": "application/json"}
    assert_problem(api.http.post("/v1/documents/check-cache", content=tampered, headers=headers), 401,
                   "invalid_signature")


def test_signed_upload_with_tampered_body_stores_nothing(api):
    key = api.tenant("acme")
    request = api.http.build_request("POST", "/v1/documents", files={"file": ("a.png", png(), "image/png")})
    body = request.read()
    good = _signed(key, "POST", "/v1/documents", body) | {"Content-Type": request.headers["content-type"]}
    r = api.http.post("/v1/documents", content=body, headers=good)
    assert r.status_code == 202, r.text
    request = api.http.build_request("POST", "/v1/documents", files={"file": ("b.png", png(seed=7), "image/png")})
    other = request.read()
    headers = _signed(key, "POST", "/v1/documents", body, ts=int(time.time()) - 30) | {
        "Content-Type": request.headers["content-type"]}
    r = api.http.post("/v1/documents", content=other, headers=headers)
    assert_problem(r, 401, "invalid_signature")
    assert len(api.document_rows()) == 1 and len(api.blobs()) == 1 and api.queued() == 1


def test_rate_limit_per_tenant(api):
    limited = api.tenant("small", rate_limit=3)
    free = api.tenant("big")
    remaining = []
    for _ in range(3):
        r = api.http.get("/v1/stats", headers=api.auth(limited))
        assert r.status_code == 200 and r.headers["ratelimit-limit"] == "3"
        remaining.append(int(r.headers["ratelimit-remaining"]))
    assert remaining == [2, 1, 0], "each answer tells the client its quota"
    r = api.http.get("/v1/stats", headers=api.auth(limited))
    assert_problem(r, 429, "rate_limited")
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert (r.headers["ratelimit-remaining"], r.headers["ratelimit-reset"]) == ("0", r.headers["retry-after"])
    assert api.http.get("/v1/stats", headers=api.auth(free)).status_code == 200
