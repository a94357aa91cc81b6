"""``/v1/ocrjobs``: the results of an OcrJob, for the tenant its namespace is."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ocrfleet.store import ResultStore
from ocrfleet_api.deps import ServicesDep, TenantDep
from ocrfleet_api.masking import apply_policy
from ocrfleet_api.problems import RESPONSES, Problem
from ocrfleet_api.schemas import JobResults

router = APIRouter(prefix="/v1/ocrjobs", tags=["ocrjobs"], responses=RESPONSES)


@router.get("/{name}/results", response_model=JobResults, summary="An OcrJob's results, paged")
async def job_results(
    name: str, principal: TenantDep, services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=500, description="Documents per page.")] = 100,
    after: Annotated[str, Query(max_length=64, description="The `next` of the previous page.")] = "",
) -> JobResults:
    """Every document of the OcrJob ``name`` in the key's namespace (its tenant), in id order,
    with status and masked result; a document not processed yet shows its status only. The job's
    ``status.results`` names this route."""
    if len(name) > 253:
        raise Problem(404, "job_not_found", "no OcrJob by that name")
    job = f"{principal.tenant}.{name}"
    rows = await services.blocking(_page, services.store, job, principal.tenant, limit, after)
    documents = [apply_policy(result, masks) for result, masks in rows]
    return JobResults(job=job, documents=documents,
                      next=documents[-1].document_id if len(documents) == limit else None)


def _page(store: ResultStore, job: str, tenant: str, limit: int, after: str):
    return store.job_documents(job, tenant=tenant, limit=limit, after=after)
