"""``GET /v1/namespaces/{ns}/ocrjobs/{name}/results``: a job's results, paged, for tenants granted its namespace."""

from __future__ import annotations

import hashlib

from ocrfleet.intake import job_tenant
from ocrfleet.results import ExtractedField, PageResult
from ocrfleet.store import DocumentRow
from tests.api.conftest import assert_problem
from tests.api.documents import png
from tests.api.test_documents import upload


def _job_documents(api, namespace: str, job: str, n: int, *, masked: tuple[str, ...] = (),
                   sha256: str | None = None) -> list[str]:
    ids = [f"{namespace}-{job}-doc-{i:02d}" for i in range(n)]
    for i, document_id in enumerate(ids):
        api.store.add_document(DocumentRow(id=document_id, tenant=job_tenant(namespace), sha256=sha256 or f"{i:064x}",
                                           job=f"{namespace}.{job}", filename=f"card-{i}.png", requested_type="id_card",
                                           mask_fields=list(masked), status="queued"))
        if i % 2 == 0:  # half processed, half still waiting
            page = PageResult(page=0, width=64, height=32,
                              fields=[ExtractedField(name="id_number", value="110101199003071234")])
            api.store.save_result(document_id, [page], document_type="id_card", processing_ms=5.0)
    return ids


def path(namespace: str, job: str) -> str:
    return f"/v1/namespaces/{namespace}/ocrjobs/{job}/results"


def test_every_document_of_the_job_page_by_page_in_a_stable_order(api):
    key = api.tenant("loans-team", ocrjob_namespaces=["loans"])
    ids = _job_documents(api, "loans", "cards", 7)
    _job_documents(api, "loans", "other", 3)  # another job of the same namespace
    seen, after, pages = [], "", 0
    while True:
        response = api.http.get(path("loans", "cards"), params={"limit": 3, "after": after}, headers=api.auth(key))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["job"] == "loans.cards"
        seen += [(d["document_id"], d["status"], d["filename"]) for d in body["documents"]]
        pages += 1
        if body["next"] is None:
            break
        after = body["next"]
    assert [s[0] for s in seen] == sorted(ids) and pages == 3
    statuses = {s[1] for s in seen}
    assert statuses == {"succeeded", "queued"}


def test_results_are_masked_as_the_job_asked(api):
    key = api.tenant("masked-team", ocrjob_namespaces=["masked-ns"])
    _job_documents(api, "masked-ns", "ids", 1, masked=("id_number",))
    [doc] = api.http.get(path("masked-ns", "ids"), headers=api.auth(key)).json()["documents"]
    value = doc["pages"][0]["fields"][0]["value"]
    assert value == "110***********34", value


def test_a_tenant_named_like_a_namespace_sees_none_of_its_jobs(api):
    """Tenant collision: an API tenant called "team-a" is not the namespace team-a."""
    _job_documents(api, "team-a", "cards", 2)
    namesake = api.tenant("team-a")
    assert_problem(api.http.get(path("team-a", "cards"), headers=api.auth(namesake)), 404, "job_not_found")
    other = api.tenant("team-b", ocrjob_namespaces=["team-b"])
    assert_problem(api.http.get(path("team-a", "cards"), headers=api.auth(other)), 404, "job_not_found")
    assert api.http.get(path("team-b", "cards"), headers=api.auth(other)).json() == {
        "job": "team-b.cards", "documents": [], "next": None}
    assert_problem(api.http.get(path("team-a", "cards")), 401)
    assert_problem(api.http.get(path("team-b", "cards"), params={"limit": 0}, headers=api.auth(other)), 422)


def test_a_job_result_is_never_reused_for_a_tenant_named_like_its_namespace(api):
    """The same bytes processed by an OcrJob of namespace "shared" and uploaded by API tenant
    "shared": the upload is processed on its own, not answered from the job's result."""
    data = png()
    _job_documents(api, "shared", "cards", 1, sha256=hashlib.sha256(data).hexdigest())
    namesake = api.tenant("shared")
    assert upload(api, namesake, data, "first.png").status_code == 202  # the blob now exists
    again = upload(api, namesake, data, "card.png").json()
    assert not again["cached"], "an API tenant got an OcrJob's result"
    stats = api.http.get("/v1/stats", headers=api.auth(namesake)).json()
    assert stats["documents"] == 2, "the job's document is not counted as the tenant's"
