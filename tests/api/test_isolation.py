"""Tenant isolation: one tenant never reads, checks or batches against another's documents."""

from __future__ import annotations

import hashlib

from ocrfleet.results import ExtractedField, PageResult
from tests.api.conftest import assert_problem
from tests.api.documents import png


def test_tenants_never_see_each_others_documents(api):
    alpha, beta = api.tenant("iso-alpha"), api.tenant("iso-beta")
    data = png(seed=42)
    sha = hashlib.sha256(data).hexdigest()
    doc = api.http.post("/v1/documents", files={"file": ("id.png", data, "image/png")}, headers=api.auth(alpha)).json()
    page = PageResult(page=0, width=64, height=32, fields=[ExtractedField(name="name", value="Han Meimei")])
    api.store.save_result(doc["document_id"], [page], document_type="id_card", processing_ms=10.0)

    # alpha sees its result (and warms the result cache)...
    assert api.http.get(doc["status_url"], headers=api.auth(alpha)).status_code == 200
    hit = api.http.post("/v1/documents/check-cache", json={"sha256": sha}, headers=api.auth(alpha))
    assert hit.status_code == 200 and hit.json()["pages"][0]["fields"][0]["value"] == "Han Meimei"

    # ...beta gets nothing: not the document, not the cached result, not the stats.
    assert_problem(api.http.get(doc["status_url"], headers=api.auth(beta)), 404, "document_not_found")
    assert_problem(api.http.post("/v1/documents/check-cache", json={"sha256": sha}, headers=api.auth(beta)),
                   404, "not_cached")
    assert api.http.get("/v1/stats", headers=api.auth(beta)).json()["documents"] == 0

    # beta uploading the same bytes gets its own document, processed anew (never alpha's result).
    mine = api.http.post("/v1/documents", files={"file": ("id.png", data, "image/png")}, headers=api.auth(beta))
    assert mine.status_code == 202 and not mine.json()["cached"] and mine.json()["status"] == "queued"
    assert api.queued() == 2


def test_batches_are_private(api):
    alpha, beta = api.tenant("iso-alpha"), api.tenant("iso-beta")
    batch = api.http.post("/v1/batches", files=[("files", ("a.png", png(), "image/png"))],
                          headers=api.auth(alpha)).json()
    assert api.http.get(batch["status_url"], headers=api.auth(alpha)).status_code == 200
    assert_problem(api.http.get(batch["status_url"], headers=api.auth(beta)), 404, "batch_not_found")


def test_idempotency_keys_are_per_tenant(api):
    alpha, beta = api.tenant("iso-alpha"), api.tenant("iso-beta")
    h = {"Idempotency-Key": "same-key"}
    a = api.http.post("/v1/documents", files={"file": ("a.png", png(), "image/png")}, headers=api.auth(alpha) | h)
    b = api.http.post("/v1/documents", files={"file": ("a.png", png(), "image/png")}, headers=api.auth(beta) | h)
    assert a.status_code == b.status_code == 202
    assert "idempotent-replayed" not in b.headers
    assert a.json()["document_id"] != b.json()["document_id"]
