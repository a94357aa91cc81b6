"""``/v1/namespaces/{namespace}/ocrjobs``: an OcrJob's results, for tenants granted its namespace.

An OcrJob's documents belong to the tenant ``ocrjob:<namespace>`` (:func:`ocrfleet.intake.job_tenant`),
a space no API tenant shares. A key reads them only when its tenant was granted the namespace
(``admin create-tenant ... --ocrjob-namespaces``); any other key gets 404, as if the job did not
exist.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from ocrfleet.intake import job_tenant
from ocrfleet.masking import MaskPolicy, mask_result
from ocrfleet.store import ResultStore
from ocrfleet_api.deps import ServicesDep, TenantDep
from ocrfleet_api.problems import PROBLEM, RESPONSES, Problem
from ocrfleet_api.schemas import JobResults

router = APIRouter(prefix="/v1/namespaces/{namespace}/ocrjobs", tags=["ocrjobs"], responses=RESPONSES)

_NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"


@router.get("/{name}/results", response_model=JobResults, summary="An OcrJob's results, paged",
            responses={404: {**PROBLEM, "description": "No such job this key may read"}})
async def get_job_results(
    namespace: Annotated[str, Path(max_length=63, pattern=_NAME, description="The OcrJob's namespace.")],
    name: Annotated[str, Path(max_length=253, pattern=_NAME, description="The OcrJob's name.")],
    principal: TenantDep, services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=500, description="Documents per page.")] = 100,
    after: Annotated[str, Query(max_length=64, description="The `next` of the previous page.")] = "",
) -> JobResults:
    """Every document of the OcrJob ``namespace/name``, in id order, with status and masked
    result; a document not processed yet shows its status only. The job's ``status.results``
    names this route."""
    if namespace not in principal.ocrjob_namespaces:
        raise Problem(404, "job_not_found", f"no OcrJob {namespace}/{name} this key may read; a tenant reads "
                      "a namespace's jobs once it is granted it (admin create-tenant --ocrjob-namespaces)")
    job = f"{namespace}.{name}"
    rows = await services.blocking.read(_page, services.store, job, job_tenant(namespace), limit, after)
    documents = [mask_result(result, principal.mask | MaskPolicy.from_names(masks)) for result, masks in rows]
    return JobResults(job=job, documents=documents,
                      next=documents[-1].document_id if len(documents) == limit else None)


def _page(store: ResultStore, job: str, tenant: str, limit: int, after: str):
    return store.job_documents(job, tenant=tenant, limit=limit, after=after)
