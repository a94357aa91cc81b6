"""The main job on the real node, with defaults only: what ``make demo`` shows, as assertions.

- ``examples/ocrcluster-minimal.yaml`` (``spec: {}``) reaches Ready with nothing prepared by
  hand: its own Redis, PostgreSQL and SeaweedFS on claims of the default StorageClass, random
  credentials, CPU workers;
- an OcrJob over 30 generated documents in the pool's object store goes Pending -> Running ->
  Succeeded with 30/30, and every result is read through the API route its status names;
- the managed Redis killed mid-job (SIGKILL of its container): it restarts from its
  append-only file and the job still ends 30/30, each document stored once;
- the operator pod's memory stays flat while it feeds a 200-document job (it enqueues
  references; it never reads a document);
- a real Prometheus, configured from the chart's ServiceMonitor and PodMonitor, scrapes the
  operator, both API pods, the worker and Triton all through those jobs; ocrfleet's alert rules
  evaluate there without error, and every query of the dashboard returns data (the GPU panels
  aside: no DCGM exporter runs without a GPU).
"""

from __future__ import annotations

import collections
import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml

from e2e.mainjob import RELEASE, ROOT, SYSTEM, Pool, generated_documents, progress_line
from e2e.operator_helpers import poll, report
from e2e.prometheus import Prometheus

pytestmark = pytest.mark.slow
pytest_plugins = ["e2e.real_support"]
DOCUMENTS = 30


@pytest.fixture(scope="module")
def pool(real_cluster, installed, request):
    namespace = f"main-{uuid.uuid4().hex[:6]}"
    t0 = time.monotonic()
    pool = Pool.from_example(real_cluster, namespace)
    try:
        pool.wait_ready(900)
    except AssertionError:
        print(real_cluster.kubectl("get", "pods,pvc,events", "-n", namespace, "-o", "wide", check=False))
        raise
    report(request, f"the minimal example pool (defaults only) Ready on the real node in {time.monotonic() - t0:.0f} s")
    yield pool
    real_cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="module")
def prometheus(real_cluster, installed):
    """Debian's Prometheus, scraping every 2 s with the jobs the chart's monitors describe."""
    rendered = subprocess.run(
        [str(real_cluster.helm), "template", RELEASE, str(ROOT), "-n", SYSTEM, "--show-only", "templates/monitoring.yaml",
         "--set", "monitoring.serviceMonitor.enabled=true", "--set", "monitoring.podMonitor.enabled=true"],
        capture_output=True, text=True, check=True, timeout=120).stdout
    monitors = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] in ("PodMonitor", "ServiceMonitor")]
    assert len(monitors) == 2, rendered
    server = Prometheus(monitors, real_cluster.kubectl)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api_key(pool):
    return pool.api_key(pool.namespace)


def job(name: str, prefix: str, **spec) -> dict:
    return {"apiVersion": "ocrfleet.io/v1alpha1", "kind": "OcrJob", "metadata": {"name": name},
            "spec": {"clusterRef": {"name": "minimal"}, "source": {"s3": {"prefix": prefix}}, **spec}}


@pytest.mark.timeout(2400)  # the first test waits for the images on the node, the chart and the pool
def test_the_minimal_pool_runs_its_own_stores_on_the_real_node(real_cluster, pool):
    pods = json.loads(real_cluster.kubectl("get", "pods", "-n", pool.namespace, "-o", "json"))["items"]
    components = sorted(p["metadata"]["labels"]["app.kubernetes.io/component"] for p in pods)
    assert components == ["api", "api", "database", "objects", "redis", "worker"], components
    assert {p["spec"]["nodeName"] for p in pods} == {"real-0"}
    claims = json.loads(real_cluster.kubectl("get", "pvc", "-n", pool.namespace, "-o", "json"))["items"]
    assert sorted(c["status"]["phase"] for c in claims) == ["Bound"] * 3
    assert pool.credential("redis-password") and pool.credential("database-password")


@pytest.mark.timeout(1200)
@pytest.mark.usefixtures("prometheus")  # started before the jobs, so that it sees them run
def test_an_ocrjob_over_the_object_store_succeeds_and_its_results_come_through_the_api(
        pool, api_key, tmp_path, request):
    docs = generated_documents(tmp_path / "docs", DOCUMENTS, seed=90)
    pool.put_documents([path for path, _ in docs], "e2e-30/")
    t0 = time.monotonic()
    name = pool.apply_job(job("thirty", "e2e-30/", maskFields=["id_number"]))
    phases = []

    def seen(status):
        if status.get("phase") and (not phases or phases[-1] != status["phase"]):
            phases.append(status["phase"])

    final = pool.watch_job(name, 900, seen)
    report(request, f"OcrJob of {DOCUMENTS} documents: {progress_line(final)} in {time.monotonic() - t0:.0f} s")
    assert final["phase"] == "Succeeded", final
    assert phases[-1] == "Succeeded" and "Running" in phases, phases
    assert final["counts"] == {"total": DOCUMENTS, "enqueued": DOCUMENTS, "succeeded": DOCUMENTS, "failed": 0,
                               "inFlight": 0, "done": DOCUMENTS}
    assert final["results"]["path"] == f"/v1/namespaces/{pool.namespace}/ocrjobs/thirty/results"

    results = pool.job_results(name, api_key, page_size=7)
    truths = {path.name: truth for path, truth in docs}
    assert sorted(r["filename"] for r in results) == sorted(truths)
    assert {r["status"] for r in results} == {"succeeded"}
    cards = [r for r in results if truths[r["filename"]]["kind"] == "id_card"]
    assert cards, "the generated set has ID cards"
    for card in cards:
        fields = {f["name"]: f["value"] for f in card["pages"][0]["fields"]}
        number = truths[card["filename"]]["fields"]["id_number"]
        assert fields.get("id_number") != number, "maskFields: id_number is masked in the job's results"


def _kill_redis(real_cluster, pool) -> str:
    [redis_pod] = json.loads(real_cluster.kubectl(
        "get", "pods", "-n", pool.namespace, "-l", "app.kubernetes.io/component=redis", "-o", "json"))["items"]
    container = redis_pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    real_cluster.node.ctr("tasks", "kill", "--signal", "SIGKILL", container)
    return redis_pod["metadata"]["name"]


@pytest.mark.timeout(1800)
def test_the_managed_redis_killed_mid_job_restarts_from_its_aof_and_loses_nothing(
        real_cluster, pool, api_key, tmp_path, request):
    docs = generated_documents(tmp_path / "docs", DOCUMENTS, seed=91)
    pool.put_documents([path for path, _ in docs], "e2e-redis/")
    name = pool.apply_job(job("redis-killed", "e2e-redis/"))
    poll(lambda: 3 <= pool.job_status(name).get("counts", {}).get("done", 0) < DOCUMENTS, 600,
         "the job to be under way")
    before = pool.job_status(name)["counts"]
    pod = _kill_redis(real_cluster, pool)
    t0 = time.monotonic()
    final = pool.watch_job(name, 900)
    report(request, f"Redis killed at {before['done']}/{DOCUMENTS} done; the job finished "
                    f"{time.monotonic() - t0:.0f} s later: {progress_line(final)}")
    restarts = json.loads(real_cluster.kubectl("get", "pod", pod, "-n", pool.namespace, "-o", "json")
                          )["status"]["containerStatuses"][0]["restartCount"]
    assert restarts >= 1, "the Redis container was killed and restarted"
    assert final["phase"] == "Succeeded", final
    assert (final["counts"]["succeeded"], final["counts"]["done"]) == (DOCUMENTS, DOCUMENTS), final["counts"]
    results = pool.job_results(name, api_key)
    assert len(results) == DOCUMENTS and len({r["document_id"] for r in results}) == DOCUMENTS
    for r in results:  # stored once: one row per document, one result per page
        pages = [p["page"] for p in r["pages"]]
        assert r["status"] == "succeeded" and pages and len(pages) == len(set(pages)), r["filename"]


def _operator_rss_mb(real_cluster) -> float:
    [pod] = json.loads(real_cluster.kubectl("get", "pods", "-n", SYSTEM, "-l", "app.kubernetes.io/name=ocrfleet",
                                            "-o", "json"))["items"]
    container = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    tasks = [line.split() for line in real_cluster.node.ctr("tasks", "ls").splitlines()[1:]]
    pid = next(int(fields[1]) for fields in tasks if fields and fields[0] == container)
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for the operator process {pid}")


def test_the_operator_feeds_a_200_document_job_without_growing(real_cluster, pool, request):
    urls = [f"https://documents.example.internal/inbox/{i:04d}.png" for i in range(200)]
    before = _operator_rss_mb(real_cluster)
    name = pool.apply_job({"apiVersion": "ocrfleet.io/v1alpha1", "kind": "OcrJob", "metadata": {"name": "two-hundred"},
                           "spec": {"clusterRef": {"name": "minimal"}, "source": {"urls": urls}}})
    samples = []
    poll(lambda: (samples.append(_operator_rss_mb(real_cluster)) or
                  pool.job_status(name).get("counts", {}).get("enqueued") == 200), 180, "the job to be fed")
    # the pool allows no URL: its workers refuse the documents (no fetch), and the job fails
    final = pool.watch_job(name, 300)
    after = _operator_rss_mb(real_cluster)
    report(request, f"operator RSS {before:.0f} MB before, max {max(samples):.0f} MB while feeding 200 documents, "
                    f"{after:.0f} MB after")
    assert final["phase"] == "Failed" and final["reason"] == "TooManyFailures", final
    assert final["counts"]["enqueued"] == 200
    assert max(samples + [after]) - before < 25, (before, samples, after)


def test_a_real_prometheus_scrapes_the_pool_with_the_charts_monitors(real_cluster, pool, prometheus, request):
    targets = [t for t in prometheus.targets() if t["labels"].get("namespace") in (pool.namespace, SYSTEM)
               or t["discoveredLabels"].get("__meta_kubernetes_namespace") in (pool.namespace, SYSTEM)]
    seen = collections.Counter((t["labels"].get("container", ""), t["labels"]["endpoint"]) for t in targets)
    # every worker pod is scraped twice (its worker and its Triton); how many there are is the HPA's business
    workers = seen[("worker", "metrics")]
    assert seen == {("api", "metrics"): 2, ("operator", "metrics"): 1, ("triton", "triton-metrics"): workers,
                    ("worker", "metrics"): workers} and workers >= 1, seen
    down = [(t["scrapeUrl"], t["lastError"]) for t in targets if t["health"] != "up"]
    assert not down, down
    assert {t["labels"].get("pool") for t in targets if t["labels"]["container"] != "operator"} == {pool.name}

    rules = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
    assert len(rules) == 8 and all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]
    ready = prometheus.query_range(f'ocrfleet_operator_pool_condition{{namespace="{pool.namespace}",type="Ready"}} == 1')
    assert ready, "the operator's series name the pool's namespace (honorLabels), and it was Ready"

    dashboard = json.loads((ROOT / "monitoring" / "dashboard.json").read_text())
    empty = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$namespace", pool.namespace).replace("$__rate_interval", "30s")
            if not prometheus.query_range(expr):
                empty.append(panel["title"])
    report(request, f"Prometheus: {len(targets)} targets up, {len(rules)} rules ok, "
                    f"{sum(len(p['targets']) for p in dashboard['panels'])} dashboard queries, empty: {empty}")
    assert empty == ["GPU utilisation (DCGM exporter)", "GPU temperature (DCGM exporter)"], empty
