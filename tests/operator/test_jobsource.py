"""What an OcrJob turns into on the queue, from the job as the API server returns it (CRD defaults)."""

from __future__ import annotations

import json

from ocrfleet_operator import jobsource

from ocrfleet.masking import SENSITIVE_FIELDS

from .conftest import apply_defaults, crd_schema, make_cluster

URLS = ["https://docs.example.com/inbox/a.pdf", "https://docs.example.com/inbox/b.png"]


def job(spec: dict) -> dict:
    """OcrJob ``ocr/batch`` of pool ``pool`` as the API server returns it (the CRD's defaults applied)."""
    return apply_defaults(crd_schema("ocrjobs"), {
        "metadata": {"name": "batch", "namespace": "ocr", "uid": "1111-uid"},
        "spec": {"clusterRef": {"name": "pool"}, **spec}})


def test_a_job_that_sets_only_its_cluster_and_source_gets_the_crd_defaults():
    task = jobsource.template(job({"source": {"urls": URLS}}), make_cluster({"masking": {"default": []}}))
    assert (task.document_type, task.priority, task.max_attempts) == ("auto", "normal", 3)
    assert task.mask_fields == ()
    assert task.job == "ocr.batch" and task.namespace == "ocr"


def test_the_jobs_own_settings_and_the_pools_masking_reach_every_document():
    invoices = job({"source": {"urls": URLS}, "documentType": "invoice", "priority": "high",
                    "maxAttemptsPerDocument": 5, "maskFields": ["account_number"]})
    tasks = jobsource.url_documents(invoices, make_cluster({"masking": {"default": ["name"]}}))
    assert len(tasks) == 2
    for task in tasks:
        assert (task.document_type, task.priority, task.max_attempts) == ("invoice", "high", 5)
        assert task.mask_fields == ("account_number", "name")
    everything = jobsource.template(invoices, make_cluster())  # the pool's default masks all
    assert set(everything.mask_fields) == set(SENSITIVE_FIELDS)


def test_a_volume_source_is_one_listing_task_with_the_crd_defaulted_glob():
    inbox = job({"source": {"volume": {"path": "inbox"}}})
    assert jobsource.url_documents(inbox, make_cluster()) is None
    listing = jobsource.listing(inbox, make_cluster())
    assert listing.kind == "listing"
    assert json.loads(listing.source) == {"volume": {"path": "inbox", "glob": "*"}}
