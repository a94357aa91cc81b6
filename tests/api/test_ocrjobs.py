"""``GET /v1/ocrjobs/{name}/results``: an OcrJob's results, paged, for its namespace's tenant only."""

from __future__ import annotations

from ocrfleet.results import ExtractedField, PageResult
from ocrfleet.store import DocumentRow
from tests.api.conftest import assert_problem


def _job_documents(api, tenant: str, job: str, n: int, *, masked: tuple[str, ...] = ()) -> list[str]:
    ids = [f"{job}-doc-{i:02d}" for i in range(n)]
    for i, document_id in enumerate(ids):
        api.store.add_document(DocumentRow(id=document_id, tenant=tenant, sha256=f"{i:064x}", job=f"{tenant}.{job}",
                                           filename=f"card-{i}.png", requested_type="id_card",
                                           mask_fields=list(masked), status="queued"))
        if i % 2 == 0:  # half processed, half still waiting
            page = PageResult(page=0, width=64, height=32,
                              fields=[ExtractedField(name="id_number", value="110101199003071234")])
            api.store.save_result(document_id, [page], document_type="id_card", processing_ms=5.0)
    return ids


def test_every_document_of_the_job_page_by_page_in_a_stable_order(api):
    key = api.tenant("loans")
    ids = _job_documents(api, "loans", "cards", 7)
    _job_documents(api, "loans", "other", 3)  # another job of the same namespace
    seen, after, pages = [], "", 0
    while True:
        response = api.http.get("/v1/ocrjobs/cards/results", params={"limit": 3, "after": after},
                                headers=api.auth(key))
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
    key = api.tenant("masked-ns")
    _job_documents(api, "masked-ns", "ids", 1, masked=("id_number",))
    [doc] = api.http.get("/v1/ocrjobs/ids/results", headers=api.auth(key)).json()["documents"]
    value = doc["pages"][0]["fields"][0]["value"]
    assert value != "110101199003071234" and value.endswith("1234"), value


def test_another_namespace_sees_an_empty_job_and_no_key_sees_nothing(api):
    _job_documents(api, "team-a", "cards", 2)
    other = api.tenant("team-b")
    body = api.http.get("/v1/ocrjobs/cards/results", headers=api.auth(other)).json()
    assert body == {"job": "team-b.cards", "documents": [], "next": None}
    assert_problem(api.http.get("/v1/ocrjobs/cards/results"), 401)
    assert_problem(api.http.get("/v1/ocrjobs/cards/results", params={"limit": 0}, headers=api.auth(other)), 422)
