"""The reconcile ticks (:func:`clusters.tick`, :func:`jobs.tick`) against real Redis and a fake
Kubernetes API at the HTTP transport (:mod:`.kubefake`).

Each test drives a tick the way kopf does (the object as a GET returns it, once per timer
tick) and asserts what a user sees: the status ``kubectl get -o yaml`` shows, the entries in
the pool's Redis streams, the replicas of the worker Deployment, the objects that remain.
Objects carry the CRD's defaults, as the API server returns them (:mod:`.conftest`).

Feeding runs on the operator's feeder threads (:class:`GatedFeeder`: the real
:class:`~ocrfleet_operator.runtime.Feeder`, whose feeds start when a test lets them), so a tick
and the feed it hands over do not overlap here: each tick sees a feed either not started or
done, and no outcome depends on thread timing.
"""

from __future__ import annotations

import copy
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from ocrfleet_operator import builders, clusters, jobs, jobsource, stores
from ocrfleet_operator.jobsource import job_key
from ocrfleet_operator.runtime import Feeder, Runtime
from ocrfleet_operator.settings import OperatorSettings

from ocrfleet import keys
from ocrfleet.progress import JobProgress
from ocrfleet.queue import Task, WorkQueue

from .conftest import apply_defaults, crd_schema, make_cluster
from .kubefake import FakeApiServer

NS, POOL = "ocr", "pool"
POOL_KEY = keys.pool(NS, POOL)
URLS = ["https://docs.example/a.pdf", "https://docs.example/b.pdf", "https://docs.example/c.pdf"]
T0 = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)


def settings(**overrides) -> OperatorSettings:
    # No throttle on progress-only writes: each tick's status is visible at once.
    return OperatorSettings(status_min_interval=0, metrics_port=0, liveness_port=0, **overrides)


class GatedFeeder(Feeder):
    """The operator's feeder whose feeds wait until :meth:`open` (or :meth:`close`, which skips them)."""

    def __init__(self) -> None:
        super().__init__()
        self._gate = threading.Event()
        self._closed = False

    def submit(self, key, feed) -> bool:
        gate = self._gate

        def when_open() -> None:
            gate.wait()
            if not self._closed:
                feed()

        return super().submit(key, when_open)

    def open(self) -> None:
        """Let every feed handed over so far run; later ones wait for the next call."""
        gate, self._gate = self._gate, threading.Event()
        gate.set()

    def close(self) -> None:
        self._closed = True
        self._gate.set()
        super().close()


@pytest.fixture
def api() -> FakeApiServer:
    return FakeApiServer()


@pytest.fixture
def operator(api, redis_client):
    """Starts operators over the fake API (a second call is a restarted operator); closes them all."""
    started: list[Runtime] = []

    def start(**overrides) -> Runtime:
        rt = Runtime.create(settings(**overrides), kube=api.kube())
        rt.feeder.close()
        rt.feeder = GatedFeeder()
        started.append(rt)
        return rt

    yield start
    for rt in started:
        rt.close()


@pytest.fixture
def rt(operator) -> Runtime:
    return operator()


@pytest.fixture
def queue(redis_client) -> WorkQueue:
    """The pool's queue as its workers see it."""
    q = WorkQueue(redis_client, POOL_KEY)
    q.ensure_groups()
    return q


def add_pool(api: FakeApiServer, redis_server, spec: dict | None = None) -> dict:
    return api.put(make_cluster({"redis": {"url": redis_server.url}, **(spec or {})}, name=POOL, namespace=NS,
                                images=False))


def make_job(spec: dict, name: str = "march") -> dict:
    body = {"apiVersion": "ocrfleet.io/v1alpha1", "kind": "OcrJob", "metadata": {"name": name, "namespace": NS},
            "spec": {"clusterRef": {"name": POOL}, **copy.deepcopy(spec)}}
    return apply_defaults(crd_schema("ocrjobs"), body)


class Events:
    """The Events the handlers post on phase changes (the ``on_phase`` hook of :func:`jobs.tick`)."""

    def __init__(self) -> None:
        self.posted: list[tuple[str, str]] = []

    def __call__(self, phase: str, reason: str, message: str) -> None:
        self.posted.append((phase, reason))


def job_tick(rt: Runtime, api: FakeApiServer, *, name: str = "march", now: datetime | None = None,
             events: Events | None = None) -> dict:
    """One tick on the job as the API returns it now, then its status as the API shows it."""
    jobs.tick(rt, api.get("OcrJob", NS, name), now=now, on_phase=events)
    return (api.get("OcrJob", NS, name) or {}).get("status")


def fed(rt: Runtime, api: FakeApiServer, name: str = "march", *, key: str | None = None) -> None:
    """Let the feeds handed over run, and wait (bounded) until the job's documents are in Redis
    (``key``: another task handed to the feeder, e.g. ``UID:delete``)."""
    uid = key or api.get("OcrJob", NS, name)["metadata"]["uid"]
    rt.feeder.open()
    deadline = time.monotonic() + 5
    while rt.feeder.busy(uid):
        assert time.monotonic() < deadline, "feeding did not finish within 5 s"
        time.sleep(0.002)


def waiting(redis_client) -> list[Task]:
    """Every entry in the pool's streams (waiting or in flight), most urgent priority first."""
    return [Task.from_fields(fields) for p in keys.PRIORITIES
            for _mid, fields in redis_client.xrange(keys.stream(POOL_KEY, p))]


def condition(status: dict, ctype: str) -> tuple[str, str]:
    found = [c for c in status["conditions"] if c["type"] == ctype]
    assert len(found) == 1, status["conditions"]
    return found[0]["status"], found[0]["reason"]


def admitted(rt, api, redis_server, job_spec: dict, **kw) -> dict:
    """A pool and a job of it, ticked until every document is enqueued; returns the job's status."""
    add_pool(api, redis_server)
    api.put(make_job(job_spec))
    job_tick(rt, api, **kw)
    fed(rt, api)
    return job_tick(rt, api, **kw)


# -- OcrJob ----------------------------------------------------------------------------------


def test_a_job_of_a_missing_cluster_waits_in_pending_and_starts_once_the_cluster_exists(
        rt, api, redis_server, redis_client):
    api.put(make_job({"clusterRef": {"name": "nightly"}, "source": {"urls": URLS}}))
    events = Events()

    status = job_tick(rt, api, events=events)
    assert (status["phase"], status["reason"]) == ("Pending", "ClusterNotFound")
    assert "spec.clusterRef" in status["message"]
    assert events.posted == [("Pending", "ClusterNotFound")]
    assert redis_client.keys("*") == []  # nothing enqueued anywhere

    api.put(make_cluster({"redis": {"url": redis_server.url}}, name="nightly", namespace=NS))
    job_tick(rt, api)
    fed(rt, api)
    status = job_tick(rt, api)
    assert (status["phase"], status["reason"]) == ("Running", "Processing")
    assert status["counts"]["total"] == status["counts"]["enqueued"] == 3
    queued = [Task.from_fields(f) for _mid, f in redis_client.xrange(keys.stream(keys.pool(NS, "nightly")))]
    assert [t.source for t in queued] == URLS


def test_a_waiting_job_costs_no_reads_and_catches_up_every_30_s_or_when_a_document_finishes(
        rt, api, redis_server, redis_client, queue):
    status = admitted(rt, api, redis_server, {"source": {"urls": URLS}}, now=T0)
    assert (status["phase"], status["queuePosition"]) == ("Running", 0)
    job = api.get("OcrJob", NS, "march")
    queue.enqueue(Task(document_id="later-doc", tenant="acme"))  # arrived after the job: never ahead of it
    queue.enqueue(Task(document_id="urgent-doc", tenant="acme", priority="high"))  # taken first: ahead of it
    calls = len(api.calls)
    reads = lambda: redis_client.info("commandstats").get("cmdstat_hgetall", {}).get("calls", 0)  # noqa: E731
    before = reads()
    for seconds in (3, 6, 9, 27):
        assert job_tick(rt, api, now=T0 + timedelta(seconds=seconds))["queuePosition"] == 0
    assert len(api.calls) == calls, "standing still: no API call, no status write"
    assert reads() - before == 1, "its counters are read once; then the pool's sequence says nothing moved"
    # the 30 s catch-up sees the urgent work ahead
    assert job_tick(rt, api, now=T0 + timedelta(seconds=31))["queuePosition"] == 1
    # a finished document is shown at the next tick, whenever that is
    JobProgress(redis_client, POOL_KEY).record_outcome(job_key(job["metadata"]), "d1", succeeded=True, pages=1,
                                                       now=(T0 + timedelta(seconds=32)).timestamp())
    assert job_tick(rt, api, now=T0 + timedelta(seconds=33))["counts"]["succeeded"] == 1


def test_a_waiting_job_of_a_settled_pool_is_ticked_in_full_every_300_s(rt, api, redis_server, redis_client, queue):
    """Nothing finished for longer than the rate's window: its status cannot change but by urgent
    work arriving, so its full tick (and its catch-up of that work) comes every 300 s."""
    admitted(rt, api, redis_server, {"source": {"urls": URLS}}, now=T0)
    for seconds in range(3, 100, 3):  # the pool stands still past SETTLED_AFTER_S
        job_tick(rt, api, now=T0 + timedelta(seconds=seconds))
    queue.enqueue(Task(document_id="urgent-doc", tenant="acme", priority="high"))
    reads = lambda: redis_client.info("commandstats").get("cmdstat_hgetall", {}).get("calls", 0)  # noqa: E731
    before = reads()
    for seconds in range(100, 390, 3):
        assert job_tick(rt, api, now=T0 + timedelta(seconds=seconds))["queuePosition"] == 0
    assert reads() == before, "settled: no counter read for 300 s"
    assert job_tick(rt, api, now=T0 + timedelta(seconds=393))["queuePosition"] == 1


def test_url_documents_are_enqueued_once_however_often_the_job_ticks_and_after_a_restart(
        operator, api, redis_server, redis_client):
    first = operator()
    add_pool(api, redis_server)
    api.put(make_job({"source": {"urls": URLS}, "priority": "high"}))
    status = job_tick(first, api)  # admitted; its feed has not run yet
    assert (status["phase"], status["reason"], status["counts"]["enqueued"]) == ("Pending", "Enqueuing", 0)
    admission = api.writes("OcrJob", sub="status")[0].body["status"]  # written before any feeding
    assert (admission["phase"], admission["message"]) == ("Pending", "admitted; listing and enqueuing documents")
    fed(first, api)
    status = job_tick(first, api)
    assert (status["phase"], status["counts"]["enqueued"], status["counts"]["inFlight"]) == ("Running", 3, 3)
    assert status["results"]["url"].endswith("/v1/namespaces/ocr/ocrjobs/march/results")
    for _ in range(3):
        job_tick(first, api)
        fed(first, api)

    first.close()
    restarted = operator()
    for _ in range(2):
        status = job_tick(restarted, api)
        fed(restarted, api)

    tasks = waiting(redis_client)
    assert [t.source for t in tasks] == URLS
    assert {t.priority for t in tasks} == {"high"}
    assert {(t.job, t.tenant, t.namespace) for t in tasks} == {("ocr.march", "ocrjob:ocr", NS)}
    assert status["counts"]["enqueued"] == 3


def test_a_restarted_operator_enqueues_only_what_a_crash_mid_feed_left_out(operator, api, redis_server,
                                                                              redis_client, queue):
    cluster = add_pool(api, redis_server)
    job = api.put(make_job({"source": {"urls": URLS}}))
    # What an operator that died after its first batch left in Redis: the total, two of three in.
    jkey = jobsource.job_key(job["metadata"])
    progress = JobProgress(redis_client, POOL_KEY)
    progress.set_total(jkey, 3)
    tasks = jobsource.url_documents(job, cluster)
    progress.record_enqueued(jkey, queue.enqueue_new(tasks[:2], dedupe_set=keys.job_enqueued(POOL_KEY, jkey)))

    restarted = operator()
    job_tick(restarted, api)
    fed(restarted, api)
    status = job_tick(restarted, api)

    assert sorted(t.source for t in waiting(redis_client)) == URLS
    assert status["counts"]["enqueued"] == 3


def test_suspend_takes_waiting_documents_out_and_resume_puts_them_back(rt, api, redis_server, redis_client, queue):
    admitted(rt, api, redis_server, {"source": {"urls": URLS}})
    taken = queue.read("pool-worker-a")  # one document is in flight on a worker
    assert len(taken) == 1

    api.edit_spec("OcrJob", NS, "march", {"suspend": True})
    status = job_tick(rt, api)
    assert (status["phase"], status["reason"]) == ("Suspended", "Suspended")
    assert condition(status, "Suspended") == ("True", "Suspended")
    assert [t.document_id for t in waiting(redis_client)] == [taken[0].task.document_id]  # in flight stays
    assert status["counts"]["enqueued"] == 1
    assert job_tick(rt, api)["phase"] == "Suspended"  # and stays so

    api.edit_spec("OcrJob", NS, "march", {"suspend": False})
    job_tick(rt, api)
    fed(rt, api)
    status = job_tick(rt, api)
    assert (status["phase"], status["counts"]["enqueued"]) == ("Running", 3)
    assert condition(status, "Suspended") == ("False", "Processing")
    assert sorted(t.source for t in waiting(redis_client)) == URLS


def finish(queue: WorkQueue, redis_client, outcomes: list[bool], consumer: str = "pool-worker-a") -> None:
    """A worker takes the next documents, records each outcome (succeeded or not) and acks it."""
    progress = JobProgress(redis_client, POOL_KEY)
    for delivery, succeeded in zip(queue.read(consumer, count=len(outcomes)), outcomes, strict=True):
        progress.record_outcome(delivery.task.job, delivery.task.document_id, succeeded=succeeded, pages=2,
                                now=time.time())
        queue.ack(delivery)


def test_progress_in_redis_folds_into_counts_and_the_job_succeeds_once(rt, api, redis_server, redis_client, queue):
    events = Events()
    admitted(rt, api, redis_server, {"source": {"urls": URLS}}, events=events)

    finish(queue, redis_client, [True])
    status = job_tick(rt, api, events=events)
    assert status["phase"] == "Running"
    assert {k: status["counts"][k] for k in ("succeeded", "failed", "done", "inFlight")} == \
        {"succeeded": 1, "failed": 0, "done": 1, "inFlight": 2}
    assert status["message"] == "1/3 documents done, 0 failed"
    assert "startTime" in status and "completionTime" not in status

    finish(queue, redis_client, [True, True])
    status = job_tick(rt, api, events=events)
    assert (status["phase"], status["reason"]) == ("Succeeded", "AllDocumentsProcessed")
    assert status["counts"]["succeeded"] == status["counts"]["done"] == 3
    assert condition(status, "Complete") == ("True", "AllDocumentsProcessed")
    assert condition(status, "Failed")[0] == "False"
    assert "completionTime" in status and "etaSeconds" not in status and "queuePosition" not in status
    job_tick(rt, api, events=events)
    assert events.posted == [("Pending", "Enqueuing"), ("Running", "Processing"),
                             ("Succeeded", "AllDocumentsProcessed")]  # one Event per phase change


def test_a_job_fails_once_more_documents_failed_than_max_failed_fraction_allows(rt, api, redis_server,
                                                                                 redis_client, queue):
    admitted(rt, api, redis_server, {"source": {"urls": URLS}, "failurePolicy": {"maxFailedFraction": 0.1}})
    finish(queue, redis_client, [False])  # 1 of 3 is over 10 %: the job fails at once
    status = job_tick(rt, api)
    assert (status["phase"], status["reason"]) == ("Failed", "TooManyFailures")
    assert status["message"] == ("1 of 3 documents failed; spec.failurePolicy.maxFailedFraction allows 0")
    assert condition(status, "Failed") == ("True", "TooManyFailures")
    assert condition(status, "Complete")[0] == "False"
    assert "completionTime" in status


def test_failures_within_max_failed_fraction_let_the_job_succeed(rt, api, redis_server, redis_client, queue):
    admitted(rt, api, redis_server, {"source": {"urls": URLS}, "failurePolicy": {"maxFailedFraction": 0.34}})
    finish(queue, redis_client, [False])  # 1 of 3 is within 34 %
    assert job_tick(rt, api)["phase"] == "Running"
    finish(queue, redis_client, [True, True])
    status = job_tick(rt, api)
    assert (status["phase"], status["reason"], status["counts"]["failed"]) == ("Succeeded", "AllDocumentsProcessed", 1)
    assert status["message"] == "3/3 documents done, 1 failed"


def test_a_finished_job_is_deleted_ttl_seconds_after_it_finished(rt, api, redis_server, redis_client, queue):
    admitted(rt, api, redis_server, {"source": {"urls": URLS}, "ttlSecondsAfterFinished": 60}, now=T0)
    finish(queue, redis_client, [True, True, True])
    assert job_tick(rt, api, now=T0)["completionTime"] == "2026-03-02T09:00:00Z"

    job_tick(rt, api, now=T0 + timedelta(seconds=59))
    uid = api.get("OcrJob", NS, "march")["metadata"]["uid"]
    fed(rt, api, key=f"{uid}:delete")
    assert api.get("OcrJob", NS, "march") is not None
    job_tick(rt, api, now=T0 + timedelta(seconds=60))
    fed(rt, api, key=f"{uid}:delete")  # off the timer's thread, so kopf can release the object
    assert api.get("OcrJob", NS, "march") is None
    assert [(c.method, c.name) for c in api.writes("OcrJob") if c.method == "DELETE"] == [("DELETE", "march")]


def test_a_job_deleted_by_its_ttl_and_applied_again_unchanged_processes_nothing(rt, api, redis_server,
                                                                                 redis_client, queue):
    """GitOps after a TTL (Argo CD recreates what the operator deleted): the same manifest again
    gets a new uid, and so new document ids, but it ran before with this spec: it is Succeeded
    at once with the counts it ended with, and nothing goes into the queue."""
    spec = {"source": {"urls": URLS}, "ttlSecondsAfterFinished": 60, "failurePolicy": {"maxFailedFraction": 0.5}}
    admitted(rt, api, redis_server, spec, now=T0)
    finish(queue, redis_client, [True, True, False])
    first = api.get("OcrJob", NS, "march")
    job_tick(rt, api, now=T0)
    job_tick(rt, api, now=T0 + timedelta(seconds=60))
    fed(rt, api, key=f"{first['metadata']['uid']}:delete")
    assert api.get("OcrJob", NS, "march") is None
    jobs.cleanup(rt, first)  # the delete handler

    events = Events()
    api.put(make_job(spec))
    assert api.get("OcrJob", NS, "march")["metadata"]["uid"] != first["metadata"]["uid"]
    status = job_tick(rt, api, now=T0 + timedelta(seconds=61), events=events)
    assert (status["phase"], status["reason"]) == ("Succeeded", "CompletedBefore")
    assert first["metadata"]["uid"] in status["message"] and "2/3 documents" not in status["message"]
    assert {k: status["counts"][k] for k in ("total", "succeeded", "failed", "done")} == \
        {"total": 3, "succeeded": 2, "failed": 1, "done": 3}
    fed(rt, api)
    assert waiting(redis_client) == [] and events.posted == [("Succeeded", "CompletedBefore")]
    assert condition(status, "Complete") == ("True", "CompletedBefore")

    # another spec under the same name is another job: it runs
    rt.kube.delete("OcrJob", NS, "march")
    api.put(make_job({"source": {"urls": URLS[:2]}}))
    job_tick(rt, api)
    fed(rt, api)
    assert job_tick(rt, api)["phase"] == "Running" and len(waiting(redis_client)) == 2


def test_a_finished_job_without_ttl_stays(rt, api, redis_server, redis_client, queue):
    admitted(rt, api, redis_server, {"source": {"urls": URLS}}, now=T0)
    finish(queue, redis_client, [True, True, True])
    job_tick(rt, api, now=T0)
    job_tick(rt, api, now=T0 + timedelta(days=30))
    assert api.get("OcrJob", NS, "march")["status"]["phase"] == "Succeeded"


def test_a_volume_job_hands_one_listing_task_to_the_pool_and_fails_with_its_listing_error(
        operator, api, redis_server, redis_client):
    first = operator()
    status = admitted(first, api, redis_server, {"source": {"volume": {"path": "inbox/2026-03"}}})
    assert (status["phase"], status["reason"]) == ("Pending", "Enqueuing")  # until a worker lists it
    job_tick(operator(), api)

    (listing,) = waiting(redis_client)
    assert (listing.kind, listing.source) == ("listing", '{"volume": {"glob": "*", "path": "inbox/2026-03"}}')

    JobProgress(redis_client, POOL_KEY).record_source_error("ocr.march", "inbox/2026-03: no such directory")
    status = job_tick(first, api)
    assert (status["phase"], status["reason"]) == ("Failed", "SourceError")
    assert status["message"] == "inbox/2026-03: no such directory"


# -- OcrCluster ------------------------------------------------------------------------------


def rendered_pool(rt: Runtime, api: FakeApiServer, redis_server, spec: dict | None = None) -> None:
    """A pool whose children the operator created (kopf's create handler)."""
    clusters.apply_children(rt, add_pool(api, redis_server, spec))


def cluster_tick(rt: Runtime, api: FakeApiServer, now: datetime = T0) -> dict:
    clusters.tick(rt, api.get("OcrCluster", NS, POOL), now=now)
    return api.get("OcrCluster", NS, POOL)["status"]


def worker_pod(api: FakeApiServer, name: str, **status) -> None:
    labels = {builders.CLUSTER_LABEL: POOL, builders.COMPONENT_LABEL: "worker"}
    api.put({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS, "labels": labels},
             "spec": {}, "status": status})


def replicas(api: FakeApiServer) -> int:
    return api.get("Deployment", NS, builders.worker_name(POOL))["spec"]["replicas"]


def test_cluster_status_shows_its_workers_from_the_deployment_and_its_queue_from_redis(rt, api, redis_server,
                                                                                         queue):
    rendered_pool(rt, api, redis_server, {"workers": {"minReplicas": 2, "maxReplicas": 4}})
    api.roll_out(NS)
    api.set_status("Deployment", NS, builders.worker_name(POOL), {"readyReplicas": 1, "updatedReplicas": 2})
    for i, priority in enumerate(["high", "normal", "normal", "low"]):
        queue.enqueue(Task(document_id=f"d{i}", tenant="acme", priority=priority))
    queue.read("pool-worker-a")

    status = cluster_tick(rt, api)
    assert status["workers"] == {"desired": 2, "ready": 1}
    assert status["queue"] == {"depth": 4, "waiting": 3, "inFlight": 1}
    assert status["api"] == {"ready": 2, "endpoint": "http://pool-api.ocr.svc:80"}
    assert condition(status, "Ready") == ("False", "NotAllReplicasReady")
    assert condition(status, "Progressing") == ("True", "ScalingOrRollingOut")
    assert status["notReadySince"] == "2026-03-02T09:00:00Z"

    api.roll_out(NS)
    status = cluster_tick(rt, api, T0 + timedelta(seconds=5))
    assert status["workers"] == {"desired": 2, "ready": 2}
    assert condition(status, "Ready") == ("True", "AllReplicasReady")
    assert condition(status, "Degraded") == ("False", "AsExpected")
    assert "notReadySince" not in status and "idleSince" not in status
    assert status["observedGeneration"] == 1


def test_a_managed_store_that_is_not_ready_keeps_the_cluster_not_ready(rt, api, redis_server):
    rendered_pool(rt, api, redis_server)
    api.roll_out(NS)
    api.set_status("StatefulSet", NS, stores.database_name(POOL), {"readyReplicas": 0})

    ready = next(c for c in cluster_tick(rt, api)["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "NotAllReplicasReady")
    assert ready["message"] == "1/1 workers, 2/2 API pods and 1/2 managed stores ready"


def test_busy_workers_cost_more_to_delete_than_idle_ones(rt, api, redis_server, queue):
    rendered_pool(rt, api, redis_server)
    api.roll_out(NS)
    worker_pod(api, "pool-worker-a")
    worker_pod(api, "pool-worker-b")
    for i in range(3):
        queue.enqueue(Task(document_id=f"d{i}", tenant="acme"))
    queue.read("pool-worker-a", count=2)

    cluster_tick(rt, api)
    cost = {n: api.get("Pod", NS, n)["metadata"]["annotations"][clusters.DELETION_COST]
            for n in ("pool-worker-a", "pool-worker-b")}
    assert cost == {"pool-worker-a": "2", "pool-worker-b": "0"}


def test_a_worker_pod_that_cannot_pull_its_image_makes_the_cluster_degraded_at_once(rt, api, redis_server):
    rendered_pool(rt, api, redis_server)
    api.roll_out(NS)
    api.set_status("Deployment", NS, builders.worker_name(POOL), {"readyReplicas": 0})
    worker_pod(api, "pool-worker-a", containerStatuses=[{"name": "worker", "state": {"waiting": {
        "reason": "ImagePullBackOff", "message": "Back-off pulling image ghcr.io/ocrfleet/worker:0.1.0"}}}])

    status = cluster_tick(rt, api)
    assert condition(status, "Degraded") == ("True", "ImagePullBackOff")
    assert condition(status, "Ready") == ("False", "ImagePullBackOff")
    assert condition(status, "Progressing") == ("False", "Degraded")
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert "pool-worker-a" in degraded["message"] and "ghcr.io/ocrfleet/worker" in degraded["message"]


def test_workers_not_ready_past_the_startup_deadline_make_the_cluster_degraded(rt, api, redis_server):
    rendered_pool(rt, api, redis_server, {"workers": {"startupDeadlineSeconds": 120}})
    api.roll_out(NS)
    api.set_status("Deployment", NS, builders.worker_name(POOL), {"readyReplicas": 0})

    assert condition(cluster_tick(rt, api, T0), "Degraded") == ("False", "AsExpected")
    assert condition(cluster_tick(rt, api, T0 + timedelta(seconds=119)), "Degraded") == ("False", "AsExpected")
    status = cluster_tick(rt, api, T0 + timedelta(seconds=120))
    assert condition(status, "Degraded") == ("True", "StartupDeadlineExceeded")
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["lastTransitionTime"] == "2026-03-02T09:02:00Z"

    api.roll_out(NS)
    status = cluster_tick(rt, api, T0 + timedelta(seconds=130))
    assert condition(status, "Degraded") == ("False", "AsExpected")
    assert condition(status, "Ready") == ("True", "AllReplicasReady")


def test_an_idle_pool_scales_to_zero_after_its_idle_time_and_back_when_work_arrives(rt, api, redis_server, queue):
    rendered_pool(rt, api, redis_server, {"workers": {"minReplicas": 0, "maxReplicas": 4,
                                                      "idleSecondsBeforeScaleToZero": 300}})
    api.roll_out(NS)
    assert replicas(api) == 0
    status = cluster_tick(rt, api, T0)
    assert condition(status, "Ready") == ("True", "ScaledToZero")
    assert api.writes("Deployment", sub="scale") == []

    queue.enqueue(Task(document_id="d1", tenant="acme"))
    status = cluster_tick(rt, api, T0 + timedelta(seconds=5))
    assert replicas(api) == 1 and status["workers"]["desired"] == 1
    (scale,) = api.writes("Deployment", sub="scale")
    assert scale.field_manager == clusters.SCALER_MANAGER  # not the HPA's or the applier's field
    api.roll_out(NS)

    queue.ack(queue.read("pool-worker-a")[0])
    idle = T0 + timedelta(seconds=10)
    assert cluster_tick(rt, api, idle)["idleSince"] == "2026-03-02T09:00:10Z"
    cluster_tick(rt, api, idle + timedelta(seconds=299))
    assert replicas(api) == 1
    status = cluster_tick(rt, api, idle + timedelta(seconds=300))
    assert replicas(api) == 0 and status["workers"]["desired"] == 0


def test_a_pool_at_zero_scales_up_to_a_raised_minimum(rt, api, redis_server):
    rendered_pool(rt, api, redis_server, {"workers": {"minReplicas": 0, "maxReplicas": 4}})
    api.edit_spec("OcrCluster", NS, POOL, {"workers": {"minReplicas": 3}})
    status = cluster_tick(rt, api)
    assert replicas(api) == 3 and status["workers"]["desired"] == 3
    assert status["observedGeneration"] == 2


def test_a_pool_whose_redis_is_away_keeps_its_workers_and_its_last_queue_status(rt, api, redis_server):
    rendered_pool(rt, api, redis_server, {"workers": {"minReplicas": 0, "maxReplicas": 4,
                                                      "idleSecondsBeforeScaleToZero": 0}})
    api.edit_spec("OcrCluster", NS, POOL, {"redis": {"url": "redis://127.0.0.1:1/0"}})
    api.set_status("OcrCluster", NS, POOL, {"queue": {"depth": 7, "waiting": 7, "inFlight": 0}})
    api.edit_spec("Deployment", NS, builders.worker_name(POOL), {"replicas": 2})  # kubectl scale
    api.roll_out(NS)

    status = cluster_tick(rt, api, T0 + timedelta(hours=1))
    assert status["queue"] == {"depth": 7, "waiting": 7, "inFlight": 0}
    assert replicas(api) == 2
    assert condition(status, "Ready") == ("True", "AllReplicasReady")


def test_a_pool_the_pod_policy_refuses_is_not_rendered_and_says_why(operator, api, redis_server):
    strict = operator(allowed_image_prefixes=["registry.internal/"])
    cluster = add_pool(api, redis_server)
    assert "refused" in clusters.apply_children(strict, cluster)
    assert api.list("Deployment", NS) == [] and api.list("StatefulSet", NS) == []

    status = cluster_tick(strict, api)
    assert condition(status, "Ready") == ("False", "PolicyViolation")
    assert condition(status, "Degraded") == ("True", "PolicyViolation")
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert "'ghcr.io/ocrfleet/worker:0.1.0' is not under an allowed prefix (registry.internal/)" in degraded["message"]
    assert "workers" not in status and "queue" not in status


def test_a_pool_that_names_no_image_runs_the_operators_and_moves_when_the_operator_does(operator, api, redis_server):
    cluster = add_pool(api, redis_server)
    assert "image" not in cluster["spec"]["workers"], "the CRD defaults no image of ocrfleet's own"

    def images() -> dict[str, set[str]]:
        by_container: dict[str, set[str]] = {}
        for name in (builders.worker_name(POOL), builders.api_name(POOL)):
            pod = api.get("Deployment", NS, name)["spec"]["template"]["spec"]
            for c in pod["containers"] + pod.get("initContainers", []):
                by_container.setdefault(c["name"], set()).add(c["image"])
        return by_container

    def running(worker: str, api_image: str) -> dict[str, set[str]]:
        return {"worker": {worker}, "triton": {worker}, "model-repository": {worker}, "api": {api_image}}

    clusters.apply_children(operator(), cluster)
    assert images() == running("ghcr.io/ocrfleet/worker:0.1.0", "ghcr.io/ocrfleet/api:0.1.0")

    # a chart upgrade restarts the operator with new defaults: the pool follows
    upgraded = operator(worker_image="registry.internal/ocr/worker:0.2.0", api_image="registry.internal/ocr/api:0.2.0")
    clusters.apply_children(upgraded, api.get("OcrCluster", NS, POOL))
    assert images() == running("registry.internal/ocr/worker:0.2.0", "registry.internal/ocr/api:0.2.0")

    # what a spec names wins, and Triton runs the worker image unless told otherwise
    api.edit_spec("OcrCluster", NS, POOL, {"workers": {"image": "registry.internal/ocr/worker:custom"}})
    clusters.apply_children(upgraded, api.get("OcrCluster", NS, POOL))
    assert images() == running("registry.internal/ocr/worker:custom", "registry.internal/ocr/api:0.2.0")


def test_a_keda_pool_is_scaled_by_keda_alone_and_switching_back_restores_the_hpa(rt, api, redis_server, queue):
    rendered_pool(rt, api, redis_server, {"workers": {"autoscaler": "keda", "minReplicas": 0, "maxReplicas": 4}})
    worker = builders.worker_name(POOL)
    assert api.get("ScaledObject", NS, worker) is not None and api.get("HorizontalPodAutoscaler", NS, worker) is None
    api.roll_out(NS)
    queue.enqueue(Task(document_id="d1", tenant="acme"))
    status = cluster_tick(rt, api, T0)
    assert replicas(api) == 0 and api.writes("Deployment", sub="scale") == []  # 0 -> 1 is KEDA's step here
    assert status["queue"]["depth"] == 1

    api.edit_spec("OcrCluster", NS, POOL, {"workers": {"autoscaler": "hpa"}})
    outcome = clusters.apply_children(rt, api.get("OcrCluster", NS, POOL))
    assert outcome[f"ScaledObject/{worker}"] == "deleted"
    assert api.get("ScaledObject", NS, worker) is None and api.get("HorizontalPodAutoscaler", NS, worker) is not None
    cluster_tick(rt, api, T0 + timedelta(seconds=5))
    assert replicas(api) == 1  # the operator's own step from zero is back
