"""The operator's Prometheus metrics, scraped from the real exposition after real ticks (real Redis,
the fake Kubernetes API at the HTTP transport)."""

from __future__ import annotations

import functools

import pytest
from ocrfleet_dev import promscrape
from ocrfleet_dev.localproc import free_port
from ocrfleet_operator import clusters, jobs, metrics

from ocrfleet.queue import Task

from . import test_ticks as ticks
from .test_ticks import NS, POOL, URLS, admitted, cluster_tick, finish, job_tick, make_job, rendered_pool

# the tick tests' fixtures: an operator over the fake API and the pool's queue
api, operator, rt, queue = ticks.api, ticks.operator, ticks.rt, ticks.queue


@pytest.fixture(scope="module")
def scrape():
    """Reads the exposition served on a free local port."""
    port = free_port()
    metrics.serve("127.0.0.1", port)
    return functools.partial(promscrape.scrape, f"http://127.0.0.1:{port}/metrics")


@pytest.fixture(autouse=True)
def fresh_job_phases(monkeypatch):
    """Only this test's jobs count (the other tick tests leave theirs behind in the same namespace)."""
    monkeypatch.setattr(metrics, "JOBS", metrics.JobPhases())


def value(samples, metric: str, **labels) -> float | None:
    return samples.get((metric, tuple(sorted(labels.items()))))


def test_a_cluster_tick_shows_its_queue_depth_its_tick_and_its_status_write(scrape, rt, api, redis_server, queue):
    rendered_pool(rt, api, redis_server, {"workers": {"minReplicas": 1}})
    api.roll_out(NS)
    for i in range(3):
        queue.enqueue(Task(document_id=f"d{i}", tenant="acme"))
    before = scrape()
    cluster_tick(rt, api)
    after = scrape()

    def delta(metric, **labels):
        return (value(after, metric, **labels) or 0) - (value(before, metric, **labels) or 0)

    assert value(after, "ocrfleet_operator_queue_depth", namespace=NS, name=POOL) == 3
    assert delta("ocrfleet_operator_reconciles_total", kind="OcrCluster", outcome="ok") == 1
    assert delta("ocrfleet_operator_reconcile_seconds_count", kind="OcrCluster") == 1
    assert delta("ocrfleet_operator_status_writes_total", kind="OcrCluster") == 1

    queue.enqueue(Task(document_id="d3", tenant="acme"))
    cluster_tick(rt, api)
    assert value(scrape(), "ocrfleet_operator_queue_depth", namespace=NS, name=POOL) == 4


def test_a_pools_conditions_are_series_an_alert_can_watch(scrape, rt, api, redis_server):
    rendered_pool(rt, api, redis_server, {"workers": {"minReplicas": 1}})
    cluster_tick(rt, api)  # nothing rolled out yet
    conditions = {t: value(scrape(), "ocrfleet_operator_pool_condition", namespace=NS, name=POOL, type=t)
                  for t in metrics.POOL_CONDITIONS}
    assert conditions["Ready"] == 0 and conditions["Progressing"] == 1, conditions
    api.roll_out(NS)
    cluster_tick(rt, api)
    assert value(scrape(), "ocrfleet_operator_pool_condition", namespace=NS, name=POOL, type="Ready") == 1
    metrics.forget_pool(NS, POOL)  # the pool deleted
    assert value(scrape(), "ocrfleet_operator_pool_condition", namespace=NS, name=POOL, type="Ready") is None


def test_a_failing_tick_counts_as_an_error(scrape, rt, api, redis_server):
    rendered_pool(rt, api, redis_server)
    before = scrape()
    broken = api.get("OcrCluster", NS, POOL)
    del broken["spec"]["workers"]
    with pytest.raises(KeyError):
        clusters.tick(rt, broken)
    after = scrape()
    assert ((value(after, "ocrfleet_operator_reconciles_total", kind="OcrCluster", outcome="error") or 0)
            - (value(before, "ocrfleet_operator_reconciles_total", kind="OcrCluster", outcome="error") or 0)) == 1


def test_jobs_count_in_the_phase_of_their_last_tick_until_deleted(scrape, rt, api, redis_server, redis_client,
                                                                  queue):
    admitted(rt, api, redis_server, {"source": {"urls": URLS}})
    phases = {p: value(scrape(), "ocrfleet_operator_jobs", namespace=NS, phase=p)
              for p in ("Pending", "Running", "Succeeded", "Failed", "Suspended")}
    assert phases == {"Pending": 0, "Running": 1, "Succeeded": 0, "Failed": 0, "Suspended": 0}
    assert value(scrape(), "ocrfleet_operator_job_documents", namespace=NS, name="march", state="total") == 3
    assert value(scrape(), "ocrfleet_operator_job_documents", namespace=NS, name="march", state="done") == 0
    before = scrape()

    api.put(make_job({"source": {"urls": URLS[:1]}}, name="april"))
    job_tick(rt, api, name="april")  # admitted: Pending
    finish(queue, redis_client, [True, True, True])
    job_tick(rt, api)  # march: every document done
    samples = scrape()
    assert value(samples, "ocrfleet_operator_jobs", namespace=NS, phase="Pending") == 1
    assert value(samples, "ocrfleet_operator_jobs", namespace=NS, phase="Running") == 0
    assert value(samples, "ocrfleet_operator_jobs", namespace=NS, phase="Succeeded") == 1
    assert value(samples, "ocrfleet_operator_job_documents", namespace=NS, name="march", state="done") is None
    assert ((value(samples, "ocrfleet_operator_reconciles_total", kind="OcrJob", outcome="ok") or 0)
            - (value(before, "ocrfleet_operator_reconciles_total", kind="OcrJob", outcome="ok") or 0)) == 2
    assert (value(samples, "ocrfleet_operator_status_writes_total", kind="OcrJob") or 0) \
        > (value(before, "ocrfleet_operator_status_writes_total", kind="OcrJob") or 0)

    jobs.cleanup(rt, api.get("OcrJob", NS, "march"))
    samples = scrape()
    assert value(samples, "ocrfleet_operator_jobs", namespace=NS, phase="Succeeded") == 0
    assert value(samples, "ocrfleet_operator_jobs", namespace=NS, phase="Pending") == 1
    jobs.cleanup(rt, api.get("OcrJob", NS, "april"))
    assert value(scrape(), "ocrfleet_operator_jobs", namespace=NS, phase="Pending") is None  # no job: no series

