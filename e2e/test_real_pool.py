"""ocrfleet as a platform team runs it, on the real node: every pod runs our images.

- ``helm install`` from the repository root runs the operator as a pod from its image, with the
  chart's securityContext, and its metrics adapter serves the HPA through the real Service;
- a CPU pool (``workers.gpu.count: 0``: Triton ``KIND_CPU``) on the real node: API and worker
  pods Ready by their real probes (Triton strict readiness with the models loaded), the HPA
  reads the queue depth, and a document POSTed to the API Service comes back with its result.

Redis and PostgreSQL run on the host, bound to the node's bridge address (pods reach it, and
nothing outside the machine can); the documents volume is a hostPath PersistentVolume on the
node, shared by the API and worker pods (the pool's manifests: :mod:`e2e.realpool`).
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
from ocrfleet_api.tenants import TenantDirectory
from ocrfleet_dev import docgen
from ocrfleet_dev.localproc import PostgresServer, RedisServer

from e2e.mainjob import SYSTEM
from e2e.node import NODE_IP
from e2e.operator_helpers import get_json, poll, report
from e2e.realpool import (
    MASTER_KEY,
    POOL,
    Submitter,
    assert_each_stored_once,
    held_by,
    pool_manifests,
    pool_ready,
    worker_pods,
)
from ocrfleet.store import ResultStore, make_engine

pytestmark = pytest.mark.slow
pytest_plugins = ["e2e.real_support"]


@pytest.fixture(scope="module")
def backing(tmp_path_factory):
    """Redis and PostgreSQL for the pool's pods, on the node's bridge address."""
    with RedisServer(host=NODE_IP) as redis_server, PostgresServer(host=NODE_IP) as pg:
        store = ResultStore(make_engine(pg.url))
        store.create_schema()
        yield redis_server, pg, store


def operator_pod(cluster) -> dict:
    pods = json.loads(cluster.kubectl("get", "pods", "-n", SYSTEM, "-l", "app.kubernetes.io/name=ocrfleet",
                                      "-o", "json"))["items"]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return pods[0]


def test_helm_install_runs_the_operator_as_a_pod_from_its_image(real_cluster, installed):
    pod = operator_pod(real_cluster)
    assert pod["spec"]["nodeName"] == "real-0"
    assert pod["status"]["phase"] == "Running"
    container = pod["spec"]["containers"][0]
    assert container["image"].startswith("ghcr.io/ocrfleet/operator:")
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    state = pod["status"]["containerStatuses"][0]
    assert state["ready"] and state["restartCount"] == 0, state
    logs = real_cluster.kubectl("logs", "-n", SYSTEM, pod["metadata"]["name"])
    assert "listening on https://" in logs, logs[-3000:]


@pytest.fixture(scope="module")
def documents_volume(tmp_path_factory):
    """The host directory behind the pool's ReadWriteMany documents claim."""
    documents = tmp_path_factory.mktemp("documents")
    documents.chmod(0o777)  # a hostPath volume: the images' user writes it
    return documents


@pytest.fixture(scope="module")
def pool(real_cluster, installed, backing, documents_volume, request):
    """A CPU pool on the real node, Ready by its pods' real probes."""
    redis_server, pg, store = backing
    namespace = f"real-{uuid.uuid4().hex[:6]}"
    documents = documents_volume
    real_cluster.kubectl("create", "namespace", namespace)
    t0 = time.monotonic()
    real_cluster.kubectl("apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": pool_manifests(namespace, redis_server.url, pg.url,
                                                                     str(documents))}))

    try:
        poll(lambda: pool_ready(real_cluster, namespace), 420, "the pool to be Ready (API and worker pods Ready by their probes)", interval=2)
    except AssertionError:
        print(real_cluster.kubectl("get", "pods,events", "-n", namespace, "-o", "wide", check=False))
        raise
    report(request, f"CPU pool Ready on the real node in {time.monotonic() - t0:.0f} s")
    yield namespace, store
    real_cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    real_cluster.kubectl("delete", "pv", f"{namespace}-documents", "--wait=false", check=False)


def test_cpu_pool_pods_run_on_the_real_node_and_are_ready_by_their_probes(real_cluster, pool):
    namespace, _ = pool
    pods = json.loads(real_cluster.kubectl("get", "pods", "-n", namespace, "-o", "json"))["items"]
    by_component = {p["metadata"]["labels"]["app.kubernetes.io/component"]: p for p in pods}
    assert set(by_component) == {"api", "worker"}
    worker = by_component["worker"]
    assert worker["spec"]["nodeName"] == "real-0"
    assert not any("nvidia.com/gpu" in (c.get("resources", {}).get("limits") or {})
                   for c in worker["spec"]["containers"])
    ready = {s["name"]: s["ready"] for s in worker["status"]["containerStatuses"]}
    assert ready == {"worker": True, "triton": True}
    logs = real_cluster.kubectl("logs", "-n", namespace, worker["metadata"]["name"], "-c", "model-repository")
    assert "rendered" in logs and "(cpu" in logs, logs


def test_hpa_reads_the_queue_depth_from_the_operator_pod(real_cluster, pool):
    namespace, _ = pool

    def current():
        hpa = get_json(real_cluster, "hpa", f"{POOL}-worker", "-n", namespace) or {}
        metrics = hpa.get("status", {}).get("currentMetrics") or []
        return metrics and metrics[0].get("external", {}).get("current")

    value = poll(current, 90, "the HPA to read ocrfleet_queue_depth")
    assert "averageValue" in value, value


def test_a_document_posted_to_the_api_service_comes_back_with_its_result(real_cluster, pool, tmp_path, request):
    namespace, store = pool
    service = get_json(real_cluster, "service", f"{POOL}-api", "-n", namespace)
    base = f"http://{service['spec']['clusterIP']}:80"  # kube-proxy on the node routes it to the API pod
    directory = TenantDirectory(store, MASTER_KEY)
    directory.create_tenant("loans", mask_fields=[])  # compares raw fields with the truth
    headers = {"Authorization": f"Bearer {directory.issue_key('loans').api_key}"}
    truth_path = docgen.generate(tmp_path / "docs", 1, seed=11, kinds=("id_card",), clean_fraction=1.0)[0]
    truth = json.loads(truth_path.read_text())
    data = (truth_path.parent / truth["file"]).read_bytes()
    t0 = time.monotonic()
    accepted = httpx.post(f"{base}/v1/documents", headers=headers, timeout=30,
                          files={"file": (truth["file"], data, "application/octet-stream")})
    assert accepted.status_code == 202, accepted.text
    document_id = accepted.json()["document_id"]

    def result():
        body = httpx.get(f"{base}/v1/documents/{document_id}", headers=headers, timeout=10).json()
        return body if body["status"] in ("succeeded", "failed") else None

    final = poll(result, 180, "the document's result over the API Service", interval=1)
    report(request, f"a document through the API Service and back in {time.monotonic() - t0:.1f} s")
    assert final["status"] == "succeeded", final
    page = final["pages"][0]
    assert page["document_type"] == "id_card"
    fields = {f["name"]: f["value"] for f in page["fields"]}
    assert fields.get("birth_date") == truth["fields"]["birth_date"], (fields, truth["fields"])


def test_an_ocrjob_over_the_documents_volume_is_listed_and_read_by_the_workers(
        real_cluster, pool, documents_volume, tmp_path, request):
    namespace, store = pool
    inbox = documents_volume / "inbox" / "2025-01"
    inbox.mkdir(parents=True)
    truths = {}
    for truth_path in docgen.generate(tmp_path / "docs", 6, seed=31):
        truth = json.loads(truth_path.read_text())
        (truth_path.parent / truth["file"]).rename(inbox / truth["file"])
        truths[truth["file"]] = truth
    (inbox / "README.txt").write_text("not a document of this job")
    (documents_volume / "inbox" / "escape").symlink_to("/etc")  # a way out of the volume, refused
    t0 = time.monotonic()
    real_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({
        "apiVersion": "ocrfleet.io/v1alpha1", "kind": "OcrJob", "metadata": {"name": "from-volume"},
        "spec": {"clusterRef": {"name": POOL}, "source": {"volume": {"path": "inbox", "glob": "*.*"}},
                 "failurePolicy": {"maxFailedFraction": 0.5}}}))

    def finished():
        status = (get_json(real_cluster, "ocrjob", "from-volume", "-n", namespace) or {}).get("status", {})
        return status.get("phase") in ("Succeeded", "Failed") and status

    final = poll(finished, 600, "the volume job to finish", interval=2)
    report(request, f"OcrJob over the documents volume: {final['counts']} in {time.monotonic() - t0:.0f} s")
    # six documents and the README (it fails: not a document); nothing from /etc came in
    assert final["phase"] == "Succeeded" and final["counts"]["total"] == 7, final
    assert final["counts"]["succeeded"] == 6 and final["counts"]["failed"] == 1, final
    with store.session() as s:
        from ocrfleet.store import DocumentRow

        rows = s.query(DocumentRow).filter(DocumentRow.job == f"{namespace}.from-volume").all()
        names = sorted(r.filename for r in rows)
    assert names == sorted([*truths, "README.txt"]), names


# -- faults: a killed worker container, a busy worker scaled away ------------------------------------


@pytest.fixture
def redis_client(backing):
    import redis

    client = redis.Redis.from_url(backing[0].url, decode_responses=True)
    yield client
    client.close()


def test_worker_container_killed_mid_document_restarts_and_loses_nothing(real_cluster, pool, redis_client, tmp_path):
    namespace, store = pool
    submitter = Submitter(real_cluster, namespace, store, tmp_path)
    ids = submitter.submit(6, seed=21)

    def victim():
        for pod in worker_pods(real_cluster, namespace):
            if pod["status"].get("phase") == "Running" and held_by(redis_client, namespace, pod["metadata"]["name"]):
                return pod
        return None

    pod = poll(victim, 180, "a worker to hold a document", interval=0.2)
    status = next(s for s in pod["status"]["containerStatuses"] if s["name"] == "worker")
    container_id = status["containerID"].split("://", 1)[1]
    real_cluster.node.ctr("tasks", "kill", "--signal", "SIGKILL", container_id)

    def restarted():
        pods = {p["metadata"]["name"]: p for p in worker_pods(real_cluster, namespace)}
        again = pods.get(pod["metadata"]["name"])
        worker = next((s for s in (again or {}).get("status", {}).get("containerStatuses", [])
                       if s["name"] == "worker"), {})
        return worker.get("restartCount", 0) > status["restartCount"] and worker.get("ready")

    poll(restarted, 180, "the killed worker container to restart and be ready", interval=1)
    poll(lambda: set(submitter.statuses(ids).values()) <= {"succeeded", "failed"}, 400,
         "every accepted document to finish", interval=2)
    assert set(submitter.statuses(ids).values()) == {"succeeded"}
    assert_each_stored_once(store, ids, redis_client, namespace)


def test_scale_down_of_a_busy_worker_lets_its_document_finish_once(real_cluster, pool, redis_client, tmp_path):
    namespace, store = pool
    patch = {"spec": {"workers": {"minReplicas": 2, "maxReplicas": 2}}}
    real_cluster.kubectl("patch", "ocrcluster", POOL, "-n", namespace, "--type=merge", "-p", json.dumps(patch))

    def ready_workers() -> list[str]:  # Ready and staying (an earlier test's pod may still be leaving)
        return [p["metadata"]["name"] for p in worker_pods(real_cluster, namespace)
                if not p["metadata"].get("deletionTimestamp")
                and all(s["ready"] for s in p["status"].get("containerStatuses", [{"ready": False}]))]

    names = poll(lambda: len(ready_workers()) == 2 and ready_workers(), 300, "two Ready workers", interval=2)
    submitter = Submitter(real_cluster, namespace, store, tmp_path)
    ids = submitter.submit(24, seed=31)
    poll(lambda: all(held_by(redis_client, namespace, name) for name in names), 180,
         f"both workers ({', '.join(names)}) to hold a document", interval=0.05)

    patch = {"spec": {"workers": {"minReplicas": 1, "maxReplicas": 1}}}
    real_cluster.kubectl("patch", "ocrcluster", POOL, "-n", namespace, "--type=merge", "-p", json.dumps(patch))

    def leaving():
        gone = [p for p in worker_pods(real_cluster, namespace)
                if p["metadata"].get("deletionTimestamp") and p["metadata"]["name"] in names]
        return gone and (gone[0]["metadata"]["name"], held_by(redis_client, namespace, gone[0]["metadata"]["name"]))

    name, held = poll(leaving, 120, "the HPA to scale a worker away", interval=0.2)
    assert held, f"{name} held nothing when it was told to go"
    poll(lambda: name not in {p["metadata"]["name"] for p in worker_pods(real_cluster, namespace)}, 150,
         f"{name} to finish its document and go")
    assert held_by(redis_client, namespace, name) == [], f"{name} left messages for another worker to reclaim"
    poll(lambda: set(submitter.statuses(ids).values()) <= {"succeeded", "failed"}, 400,
         "every accepted document to finish", interval=2)
    assert set(submitter.statuses(ids).values()) == {"succeeded"}
    assert_each_stored_once(store, ids, redis_client, namespace)
    with store.session() as s:  # nothing was tried twice: the leaving worker finished what it held
        from ocrfleet.store import DocumentRow

        assert {s.get(DocumentRow, i).attempts for i in ids} == {1}
