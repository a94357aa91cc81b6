"""Attacks a security review reproduced against the API, each performed here and refused.

Every test sends the attack to the real API process (uvicorn, real Redis and PostgreSQL) and
asserts what a user would see: a clear problem document, bounded memory, and nothing that was
accepted lost.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import pytest
from ocrfleet_api.auth import sign
from ocrfleet_api.tenants import TenantDirectory
from ocrfleet_dev.localproc import PostgresServer, free_port
from sqlalchemy import select

from ocrfleet import keys
from ocrfleet.masking import SENSITIVE_FIELDS
from ocrfleet.queue import Task
from ocrfleet.results import ExtractedField, PageResult, TextLine
from ocrfleet.store import PageRow, ResultStore, make_engine
from tests.api.conftest import MASTER_KEY, PeakRss, api_env, assert_problem, launch_api, stop_api
from tests.api.documents import png
from tests.api.test_documents import upload
from tests.conftest import redis_pool_user

MiB = 1024 * 1024


def _zeros(total: int, chunk: int = MiB):
    sent = 0
    while sent < total:
        yield b"0" * chunk
        sent += chunk


def test_huge_unauthenticated_body_is_refused_before_it_is_read(api):
    """A 400 MiB body to check-cache without a key: refused at once, the server's memory flat."""
    with PeakRss(api.server) as rss:
        declared = api.http.post("/v1/documents/check-cache", content=_zeros(400 * MiB), headers={
            "Content-Type": "application/json", "Content-Length": str(400 * MiB)})
        try:  # streamed without a length: the key is checked before the body is read
            streamed = api.http.post("/v1/documents/check-cache", content=_zeros(400 * MiB),
                                     headers={"Content-Type": "application/json"})
            streamed_status = streamed.status_code
        except httpx.TransportError:  # the server answered 401 and closed while we still sent
            streamed_status = 401
    body = assert_problem(declared, 413, "body_too_large")
    assert "65536 bytes" in body["detail"]
    assert streamed_status == 401
    assert rss.growth < 20 * MiB, f"server memory grew by {rss.growth / MiB:.0f} MiB"


def test_huge_authenticated_json_body_is_cut_off_at_the_cap(api):
    key = api.tenant("acme")
    with PeakRss(api.server) as rss:
        try:
            r = api.http.post("/v1/documents/check-cache", content=_zeros(400 * MiB),
                              headers=api.auth(key) | {"Content-Type": "application/json"})
            status = r.status_code
            assert_problem(r, 413, "body_too_large")
        except httpx.TransportError:
            status = 413
        # A body sent to a route that takes none is capped the same way.
        big_get = api.http.request("GET", "/v1/documents/abc", content=b"x" * (1 * MiB),
                                   headers=api.auth(key))
    assert status == 413
    assert_problem(big_get, 413, "body_too_large")
    assert rss.growth < 20 * MiB, f"server memory grew by {rss.growth / MiB:.0f} MiB"
    # A well-formed check still works.
    assert_problem(api.http.post("/v1/documents/check-cache", json={"sha256": "0" * 64}, headers=api.auth(key)),
                   404, "not_cached")


ID_NUMBER = "110101199003074258"


def _raw_id_card() -> list[PageResult]:
    """An ID card page as a worker stores it for a document nobody asked to mask."""
    return [PageResult(page=0, width=64, height=32, document_type="id_card",
                       lines=[TextLine(text="姓名 李雷", confidence=0.9),
                              TextLine(text=f"公民身份号码 {ID_NUMBER}", confidence=0.9)],
                       fields=[ExtractedField(name="id_number", value=ID_NUMBER),
                               ExtractedField(name="name", value="李雷")])]


def _processed(api, key, data: bytes) -> dict:
    first = upload(api, key, data, "card.png").json()
    api.store.save_result(first["document_id"], _raw_id_card(), document_type="id_card", processing_ms=80.0)
    return first


def test_a_document_answered_from_the_cache_is_masked_everywhere(api):
    """Resubmitted with mask_fields: the fields, the text lines and what is stored are masked."""
    key = api.tenant("cache-mask")
    data = png()
    _processed(api, key, data)
    for asked in ("id_number", "all"):
        again = upload(api, key, data, "card.png", mask_fields=asked).json()
        assert again["cached"], again
        served = api.http.get(again["status_url"], headers=api.auth(key)).text
        assert ID_NUMBER not in served and "110***********58" in served
        with api.store.session() as s:
            stored = " ".join(s.scalars(select(PageRow.result).where(PageRow.document_id == again["document_id"])))
        assert ID_NUMBER not in stored, "the raw number was stored under a masked document"
        if asked == "all":
            assert "李雷" not in served and "李*" in served, "'all' masks the name too"
    # check-cache answers as the upload would: masked as asked.
    sha = hashlib.sha256(data).hexdigest()
    hit = api.http.post("/v1/documents/check-cache", json={"sha256": sha, "mask_fields": ["id_number"]},
                        headers=api.auth(key))
    assert hit.status_code == 200 and ID_NUMBER not in hit.text and "110***********58" in hit.text


def test_a_masked_result_is_never_served_to_a_request_that_masks_less(api):
    key = api.tenant("cache-less")
    data = png()
    first = upload(api, key, data, "card.png", mask_fields="id_number").json()
    masked = _raw_id_card()
    masked[0].fields[0] = ExtractedField(name="id_number", value="110***********58", masked=True)
    api.store.save_result(first["document_id"], masked, document_type="id_card", processing_ms=80.0)
    again = upload(api, key, data, "card.png").json()
    assert not again["cached"] and again["status"] == "queued", "processed anew, not copied from a masked one"


def test_the_deployment_default_masks_a_tenant_without_a_policy(api):
    """A tenant with no policy of its own gets the deployment's default (every sensitive field):
    masked on upload, on read and on check-cache, and a request cannot ask for less."""
    key = api.tenant("default-policy", mask_fields=None)
    data = png()
    first = upload(api, key, data, "card.png").json()
    task = Task.from_fields(api.redis.xrange(keys.stream("default", "normal"))[-1][1])
    assert set(task.mask_fields) == set(SENSITIVE_FIELDS), "the worker is asked to mask by the default"
    api.store.save_result(first["document_id"], _raw_id_card(), document_type="id_card", processing_ms=80.0)
    served = api.http.get(first["status_url"], headers=api.auth(key)).text
    assert ID_NUMBER not in served and "李雷" not in served
    hit = api.http.post("/v1/documents/check-cache", json={"sha256": hashlib.sha256(data).hexdigest()},
                        headers=api.auth(key))
    assert hit.status_code == 200 and ID_NUMBER not in hit.text and "李雷" not in hit.text
    # "none" on a request does not lift the deployment's floor.
    again = upload(api, key, data, "card.png", mask_fields="none")
    assert ID_NUMBER not in api.http.get(again.json()["status_url"], headers=api.auth(key)).text


@pytest.mark.parametrize("key", [None, "change-me", "short-but-random-1234"])
def test_the_api_refuses_to_start_with_a_known_or_missing_signing_key(tmp_path, key):
    """With the old default anyone holding an API key could derive its signing secret."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCRFLEET_")}
    env |= {"OCRFLEET_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}", "OCRFLEET_PORT": str(free_port()),
            "OCRFLEET_HOST": "127.0.0.1"}
    if key is not None:
        env["OCRFLEET_SIGNING_MASTER_KEY"] = key
    for program in (["ocrfleet_api"], ["ocrfleet_api.admin", "create-tenant", "acme"]):
        done = subprocess.run([sys.executable, "-m", *program], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode != 0, f"{program[0]} started with signing key {key!r}"
        assert "OCRFLEET_SIGNING_MASTER_KEY" in done.stderr and "openssl rand" in done.stderr, done.stderr[-2000:]


def test_an_api_on_a_pool_limited_redis_user_works_and_keeps_every_key_in_its_pool(
        api, redis_server, postgres_url, document_site, tmp_path):
    """Rate limits, idempotency answers, seen signatures and usage counters live under the pool's
    prefix, so the pool's ACL user is all its API needs."""
    pool = keys.pool("team-a", "ocr")
    url = redis_pool_user(api.redis, redis_server, pool)
    env = api_env(url, postgres_url, tmp_path, free_port(), document_site.url) | {
        "OCRFLEET_CLUSTER": "ocr", "OCRFLEET_CLUSTER_NAMESPACE": "team-a"}
    server = launch_api(env, tmp_path)
    try:
        key = api.tenant("team-a-tenant")
        with httpx.Client(base_url=server.url, timeout=30) as http:
            files = {"file": ("card.png", png(), "image/png")}
            body = http.build_request("POST", "/v1/documents", files=files)
            content = body.read()
            signed = sign(key.signing_secret, str(int(time.time())), "POST", "/v1/documents", content) | {
                "Content-Type": body.headers["content-type"], "Idempotency-Key": "first"} | api.auth(key)
            first = http.post("/v1/documents", content=content, headers=signed)
            assert first.status_code == 202, first.text
            again = http.post("/v1/documents", content=content, headers=signed | {
                **sign(key.signing_secret, str(int(time.time()) - 30), "POST", "/v1/documents", content)})
            assert again.status_code == 202 and again.headers.get("idempotent-replayed") == "true"
            sha = hashlib.sha256(png()).hexdigest()
            assert http.post("/v1/documents/check-cache", json={"sha256": sha}, headers=api.auth(key)).status_code == 404
            assert http.get("/v1/stats", headers=api.auth(key)).status_code == 200
        stray = [k.decode() for k in api.redis.keys("*") if not k.decode().startswith(f"ocrfleet:{pool}:")
                 and not k.decode().startswith("ocrfleet:default:")]
        assert stray == [], f"keys outside the pool's prefix: {stray}"
        assert api.redis.keys(f"ocrfleet:{pool}:signature:*") and api.redis.keys(f"ocrfleet:{pool}:idempotency:*")
    finally:
        stop_api(server)


def _signal_tree(pid: int, sig: int) -> list[psutil.Process]:
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    for proc in procs:
        proc.send_signal(sig)
    return procs


def test_a_hung_database_answers_503_with_retry_after_and_readiness_goes_false(api, redis_server, document_site,
                                                                                tmp_path):
    """PostgreSQL frozen (SIGSTOP: it accepts connections and never answers, so no client
    timeout fires): reads answer 503 within the database timeout instead of hanging."""
    with PostgresServer() as pg:
        env = api_env(redis_server.url, pg.url, tmp_path, free_port(), document_site.url) | {
            "OCRFLEET_DATABASE_TIMEOUT_S": "2", "OCRFLEET_AUTH_CACHE_S": "60"}
        server = launch_api(env, tmp_path)
        try:
            directory = TenantDirectory(ResultStore(make_engine(pg.url)), MASTER_KEY)
            directory.create_tenant("frozen", mask_fields=[])
            key = directory.issue_key("frozen")
            auth = {"Authorization": f"Bearer {key.api_key}"}
            with httpx.Client(base_url=server.url, timeout=30) as http:
                assert http.get("/v1/documents/" + "0" * 32, headers=auth).status_code == 404  # key now cached
                frozen = _signal_tree(pg.process.proc.pid, signal.SIGSTOP)  # the server and every backend
                try:
                    started = time.monotonic()
                    with ThreadPoolExecutor(12) as pool:
                        answers = list(pool.map(lambda _: http.get("/v1/documents/" + "1" * 32, headers=auth),
                                                range(12)))
                    took = time.monotonic() - started
                    ready = http.get("/readyz")
                    live = http.get("/healthz")
                    other = http.get("/v1/stats", headers={"Authorization": "Bearer ofk_0123456789abcdef_x"})
                finally:
                    for proc in frozen:
                        proc.send_signal(signal.SIGCONT)
                for answer in answers:
                    assert_problem(answer, 503, "unavailable")
                    assert answer.headers["retry-after"] == "2" and "did not answer within 2 s" in answer.text
                assert took < 15, f"12 reads took {took:.0f} s against a hung database"
                assert_problem(ready, 503) and "database no answer" in ready.text
                assert live.status_code == 200
                assert_problem(other, 503, "unavailable")  # an uncached key cannot be looked up either
                deadline = time.monotonic() + 30
                while http.get("/readyz").status_code != 200 and time.monotonic() < deadline:
                    time.sleep(0.5)
                assert http.get("/v1/documents/" + "0" * 32, headers=auth).status_code == 404
        finally:
            stop_api(server)



def test_an_idempotency_key_answers_only_the_request_it_was_first_used_for(api):
    """The same key on another route, or with another body, is refused instead of being
    answered with the first request's answer (a document request once got a batch's back)."""
    key = api.tenant("idem-bound")
    headers = api.auth(key) | {"Idempotency-Key": "order-42"}
    batch = api.http.post("/v1/batches", files=[("files", ("a.png", png(seed=1), "image/png"))], headers=headers)
    assert batch.status_code == 202 and "batch_id" in batch.json()
    single = upload(api, key, png(seed=1), "a.png", headers={"Idempotency-Key": "order-42"})
    body = assert_problem(single, 422, "idempotency_key_reused")
    assert "POST /v1/batches" in body["detail"]
    other = upload(api, key, png(300, 200, seed=2), "b.png", headers={"Idempotency-Key": "doc-7"})
    assert other.status_code == 202
    changed = upload(api, key, png(640, 480, seed=3), "c.png", headers={"Idempotency-Key": "doc-7"})
    assert_problem(changed, 422, "idempotency_key_reused")
    again = upload(api, key, png(300, 200, seed=2), "b.png", headers={"Idempotency-Key": "doc-7"})
    assert again.status_code == 202 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["document_id"] == other.json()["document_id"]
    assert api.queued() == 2


def test_key_probes_are_limited_per_address_and_cost_no_database_lookup(api, redis_server, document_site,
                                                                         tmp_path):
    """After five failed keys from one address, unknown keys get 429 without a lookup and a
    repeated unknown key id is answered from memory: with the database frozen they are still
    answered at once. A key that was valid before keeps working."""
    with PostgresServer() as pg:
        env = api_env(redis_server.url, pg.url, tmp_path, free_port(), document_site.url) | {
            "OCRFLEET_AUTH_FAILURE_LIMIT": "5", "OCRFLEET_CLUSTER": "probed", "OCRFLEET_DATABASE_TIMEOUT_S": "3"}
        server = launch_api(env, tmp_path)
        try:
            directory = TenantDirectory(ResultStore(make_engine(pg.url)), MASTER_KEY)
            directory.create_tenant("real", mask_fields=[])
            good = {"Authorization": f"Bearer {directory.issue_key('real').api_key}"}
            bogus = [{"Authorization": f"Bearer ofk_{os.urandom(8).hex()}_guess"} for _ in range(8)]
            with httpx.Client(base_url=server.url, timeout=30) as http:
                assert http.get("/v1/stats", headers=good).status_code == 200
                for h in bogus[:5]:
                    assert_problem(http.get("/v1/stats", headers=h), 401, "invalid_api_key")
                limited = http.get("/v1/stats", headers=bogus[5])
                assert_problem(limited, 429, "too_many_failed_authentications")
                assert int(limited.headers["retry-after"]) > 0
                frozen = _signal_tree(pg.process.proc.pid, signal.SIGSTOP)
                try:
                    started = time.monotonic()
                    again = http.get("/v1/stats", headers=bogus[0])  # a known miss: from memory
                    fresh = http.get("/v1/stats", headers=bogus[6])  # over the limit: no lookup
                    took = time.monotonic() - started
                finally:
                    for proc in frozen:
                        proc.send_signal(signal.SIGCONT)
                assert_problem(again, 401, "invalid_api_key")
                assert_problem(fresh, 429, "too_many_failed_authentications")
                assert took < 2, "no probe waited for the (frozen) database"
                assert http.get("/v1/stats", headers=good).status_code == 200, "a known key is still let in"
        finally:
            stop_api(server)


def test_with_redis_away_reads_still_work_and_no_error_names_an_internal_host(api, postgres_url, document_site,
                                                                               tmp_path):
    """The API's Redis is unreachable: reading a result needs only the database; a submission
    is refused with 503 saying what to do, without hosts, ports or library errors."""
    dead_port = free_port()
    env = api_env(f"redis://127.0.0.1:{dead_port}/0", postgres_url, tmp_path, free_port(), document_site.url)
    server = launch_api(env, tmp_path)
    try:
        key = api.tenant("redis-away")
        doc = upload(api, key, png())  # through the session's server (its Redis is fine)
        document_id = doc.json()["document_id"]
        with httpx.Client(base_url=server.url, timeout=30) as http:
            read = http.get(f"/v1/documents/{document_id}", headers=api.auth(key))
            assert read.status_code == 200 and read.json()["status"] == "queued", read.text
            refused = http.post("/v1/documents", headers=api.auth(key), files={"file": ("a.png", png(), "image/png")})
            checked = http.post("/v1/documents/check-cache", json={"sha256": "0" * 64}, headers=api.auth(key))
            ready = http.get("/readyz")
        assert_problem(refused, 503)
        assert_problem(ready, 503)
        assert checked.status_code == 404
        for answer in (refused, ready):
            for secret in (str(dead_port), "127.0.0.1", "redis://", "Errno", "Traceback", "ConnectionRefused"):
                assert secret not in answer.text, f"{secret!r} leaked: {answer.text}"
    finally:
        stop_api(server)


def test_a_hostile_filename_is_kept_as_a_clean_basename(api):
    key = api.tenant("names")
    sent = "..\\..\\windows\\system32\\scan\x1b[31m\u202egnp.exe"
    body = upload(api, key, png(), sent).json()
    assert body["filename"] == "scan[31mgnp.exe"
    [row] = api.document_rows()
    assert row.filename == "scan[31mgnp.exe", "stored without path, escape or direction override"
    assert upload(api, key, png(seed=4), "../..").json()["filename"] is None
