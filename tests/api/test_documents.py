"""Submitting and reading documents through HTTP: queue, cache, idempotency, masking, backpressure."""

from __future__ import annotations

import hashlib

import httpx

from ocrfleet import keys
from ocrfleet.queue import Task
from ocrfleet.results import ExtractedField, PageResult
from tests.api.conftest import QUEUE_BOUND, assert_problem
from tests.api.documents import jpeg, pdf, png, png_bomb


def upload(api, key, data: bytes, name: str = "doc.png", headers: dict | None = None, **fields):
    return api.http.post("/v1/documents", headers=api.auth(key) | (headers or {}),
                         files={"file": (name, data, "application/octet-stream")}, data=fields)


def test_upload_is_stored_recorded_and_enqueued(api):
    key = api.tenant("acme")
    data = pdf(pages=3)
    r = upload(api, key, data, "statement.bin", document_type="bank_statement", priority="high",
               mask_fields="account_number")
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "queued" and body["content_type"] == "application/pdf" and body["pages"] == 3
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert r.headers["location"] == body["status_url"] == f"/v1/documents/{body['document_id']}"
    entries = api.redis.xrange(keys.stream("default", "high"))
    assert len(entries) == 1
    task = Task.from_fields(entries[0][1])
    assert (task.document_id, task.tenant, task.document_type, task.mask_fields) == (
        body["document_id"], "acme", "bank_statement", ("account_number",))
    assert task.blob == f"sha256:{body['sha256']}" and task.filename == "statement.bin"
    [blob] = api.blobs()
    assert blob.read_bytes() == data
    status = api.http.get(body["status_url"], headers=api.auth(key)).json()
    assert status["status"] == "queued" and status["tenant"] == "acme"


def test_result_is_masked_per_policy(api):
    key = api.tenant("acme")
    doc = upload(api, key, png(), mask_fields="id_number").json()
    page = PageResult(page=0, width=64, height=32, document_type="id_card",
                      fields=[ExtractedField(name="id_number", value="110101199003074258"),
                              ExtractedField(name="name", value="Li Lei")])
    api.store.save_result(doc["document_id"], [page], document_type="id_card", processing_ms=120.0)
    result = api.http.get(doc["status_url"], headers=api.auth(key)).json()
    fields = {f["name"]: f for f in result["pages"][0]["fields"]}
    assert fields["id_number"]["value"] == "110***********58" and fields["id_number"]["masked"]
    assert fields["name"]["value"] == "Li Lei"


def test_check_cache_and_cached_upload(api):
    key = api.tenant("acme")
    data = jpeg()
    sha = hashlib.sha256(data).hexdigest()
    assert_problem(api.http.post("/v1/documents/check-cache", json={"sha256": sha}, headers=api.auth(key)),
                   404, "not_cached")
    first = upload(api, key, data, "a.jpg").json()
    # Queued is not a result yet: still a miss.
    assert api.http.post("/v1/documents/check-cache", json={"sha256": sha}, headers=api.auth(key)).status_code == 404
    api.store.save_result(first["document_id"], [PageResult(page=0, width=64, height=32)], document_type="generic",
                          processing_ms=50.0)
    hit = api.http.post("/v1/documents/check-cache", json={"sha256": sha.upper()}, headers=api.auth(key))
    assert hit.status_code == 200 and hit.json()["document_id"] == first["document_id"]
    again = upload(api, key, data, "b.jpg").json()
    assert again["cached"] and again["status"] == "succeeded" and again["document_id"] != first["document_id"]
    assert api.queued() == 1, "a cached document must not be enqueued"
    result = api.http.get(again["status_url"], headers=api.auth(key)).json()
    assert result["cached"] and result["status"] == "succeeded" and len(result["pages"]) == 1
    stats = api.http.get("/v1/stats", headers=api.auth(key)).json()
    assert stats["documents"] == 2 and stats["answered_from_cache"] == 1
    assert stats["cache_checks"] == 3 and stats["cache_check_hits"] == 1
    assert stats["cache_hit_rate"] == round(2 / 5, 4) and stats["success_rate"] == 1.0
    assert stats["by_document_type"] == {"generic": 2} and stats["p95_processing_ms"] == 50.0


def test_idempotency_key_returns_the_first_answer(api):
    key = api.tenant("acme")
    h = {"Idempotency-Key": "order-42"}
    first = upload(api, key, png(), headers=h)
    second = upload(api, key, png(), headers=h)  # a retry of the same request
    assert first.status_code == second.status_code == 202
    assert second.json() == first.json() and second.headers["idempotent-replayed"] == "true"
    assert second.headers["location"] == first.headers["location"] == first.json()["status_url"]
    assert api.queued() == 1 and len(api.document_rows()) == 1
    other_tenant = api.tenant("globex")
    assert upload(api, other_tenant, png(), headers=h).json()["document_id"] != first.json()["document_id"]


def test_idempotency_key_is_released_when_the_request_fails(api):
    key = api.tenant("acme")
    h = {"Idempotency-Key": "retry-me"}
    assert_problem(upload(api, key, b"not a document", headers=h), 415)
    assert upload(api, key, png(), headers=h).status_code == 202


def test_backpressure_refuses_submissions_over_the_queue_bound(api):
    key = api.tenant("acme")
    for i in range(QUEUE_BOUND + 1):
        api.redis.xadd(keys.stream("default", "normal"), {"filler": str(i)})
    r = upload(api, key, png())
    assert_problem(r, 503, "queue_full")
    assert int(r.headers["retry-after"]) > 0
    assert api.document_rows() == [] and api.blobs() == []
    # Reads still work while the queue is full.
    assert api.http.get("/v1/stats", headers=api.auth(key)).status_code == 200


def test_options_are_validated_before_anything_is_kept(api):
    key = api.tenant("acme")
    assert_problem(upload(api, key, png(), document_type="passport"), 422, "invalid_request")
    assert_problem(upload(api, key, png(), priority="urgent"), 422, "invalid_request")
    assert_problem(upload(api, key, png(), mask_fields="DROP TABLE"), 422, "invalid_request")
    api.assert_nothing_stored()


def test_url_submission_fetches_only_from_allowed_prefixes(api, document_site):
    key = api.tenant("acme")
    (document_site.root / "docs").mkdir(exist_ok=True)
    (document_site.root / "docs" / "scan.png").write_bytes(png(seed=3))
    (document_site.root / "docs" / "bomb.png").write_bytes(png_bomb(30_000))
    (document_site.root / "secret.png").write_bytes(png())
    r = api.http.post("/v1/documents", json={"url": "http://169.254.169.254/latest"}, headers=api.auth(key))
    assert_problem(r, 422, "url_not_allowed")
    outside = document_site.url.replace("/docs/", "/secret.png")
    assert_problem(api.http.post("/v1/documents", json={"url": outside}, headers=api.auth(key)), 422,
                   "url_not_allowed")
    for sneaky in (document_site.url + "../secret.png", document_site.url + "%2e%2e/secret.png",
                   document_site.url.replace("http://", "http://user:pw@"), "file:///etc/passwd"):
        assert_problem(api.http.post("/v1/documents", json={"url": sneaky}, headers=api.auth(key)), 422,
                       "url_not_allowed")
    missing = api.http.post("/v1/documents", json={"url": document_site.url + "nope.png"}, headers=api.auth(key))
    assert_problem(missing, 422, "url_fetch_failed")
    bomb = api.http.post("/v1/documents", json={"url": document_site.url + "bomb.png"}, headers=api.auth(key))
    assert_problem(bomb, 413, "document_too_large")
    api.assert_nothing_stored()
    ok = api.http.post("/v1/documents", json={"url": document_site.url + "scan.png", "priority": "low",
                                              "mask_fields": ["id_number"]}, headers=api.auth(key))
    assert ok.status_code == 202, ok.text
    assert ok.json()["filename"] == "scan.png" and ok.json()["content_type"] == "image/png"
    [(_id, fields)] = api.redis.xrange(keys.stream("default", "low"))
    assert Task.from_fields(fields).mask_fields == ("id_number",)


def test_batches_and_progress(api):
    key = api.tenant("acme")
    files = [("files", (f"p{i}.png", png(seed=i), "image/png")) for i in range(3)]
    r = api.http.post("/v1/batches", files=files, data={"document_type": "generic"}, headers=api.auth(key))
    assert r.status_code == 202, r.text
    batch = r.json()
    assert batch["total"] == 3 and len({d["document_id"] for d in batch["documents"]}) == 3
    assert api.queued() == 3
    first = batch["documents"][0]["document_id"]
    api.store.save_result(first, [PageResult(page=0, width=64, height=32)], document_type="generic")
    status = api.http.get(batch["status_url"], headers=api.auth(key)).json()
    assert (status["total"], status["queued"], status["succeeded"], status["finished"]) == (3, 2, 1, False)
    assert r.headers["location"] == batch["status_url"]
    # the documents are paged with a cursor: every one exactly once
    pages, after = [], ""
    for _ in range(3):
        page = api.http.get(batch["status_url"], params={"limit": 2, "after": after}, headers=api.auth(key)).json()
        pages.append([d["document_id"] for d in page["documents"]])
        if page["next"] is None:
            break
        after = page["next"]
    assert [len(p) for p in pages] == [2, 1]
    assert sorted(sum(pages, [])) == sorted(d["document_id"] for d in batch["documents"])
    tasks = [Task.from_fields(f) for _id, f in api.redis.xrange(keys.stream("default", "normal"))]
    assert {t.job for t in tasks} == {batch["batch_id"]}


def test_a_bad_document_refuses_the_whole_batch(api):
    key = api.tenant("acme")
    files = [("files", ("ok.png", png(), "image/png")), ("files", ("bad.png", png()[:40], "image/png"))]
    r = api.http.post("/v1/batches", files=files, headers=api.auth(key))
    body = assert_problem(r, 422, "truncated_document")
    assert "bad.png" in body["detail"]
    api.assert_nothing_stored()


def test_health_ready_metrics_openapi(api):
    assert api.http.get("/healthz").json()["status"] == "ok"
    ready = api.http.get("/readyz").json()
    assert ready["checks"] == {"redis": "ok", "database": "ok"}
    key = api.tenant("acme")
    upload(api, key, png())
    text = httpx.get(api.server.metrics_url, timeout=10).text  # a port of its own
    assert 'ocrfleet_api_requests_total{method="POST",route="/v1/documents",status="202"}' in text
    assert "ocrfleet_queue_depth" in text
    assert "ocrfleet_api_request_seconds_bucket" in text
    assert_problem(api.http.get("/metrics"), 404, "not_found")  # never on the tenants' port
    spec = api.http.get("/openapi.json").json()
    assert "/v1/documents/check-cache" in spec["paths"]
    assert_problem(api.http.get("/nowhere"), 404, "not_found")


def test_unknown_form_fields_are_refused(api):
    key = api.tenant("acme")
    body = assert_problem(upload(api, key, png(), mask_field="id_number"), 422, "invalid_request")
    assert "mask_field" in body["detail"]
    api.assert_nothing_stored()
