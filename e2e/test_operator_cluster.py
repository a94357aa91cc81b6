"""OcrCluster against the real API server with the operator running: children, status, drift,
garbage collection, examples and validation."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from ocrfleet_dev import coretypes
from ocrfleet_dev.localproc import RedisServer

from e2e.kstatus import kstatus
from e2e.operator_helpers import get_json, poll, with_redis

# The operator, its Redis and CRDs: one set of session fixtures for every operator test module.
pytest_plugins = ["e2e.operator_support"]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

CLUSTER = """
apiVersion: ocrfleet.io/v1alpha1
kind: OcrCluster
metadata: {name: pool}
spec:
  workers: {minReplicas: 1, maxReplicas: 3, targetQueueDepthPerWorker: 10, scaleDownStabilizationSeconds: 30,
            gpu: {count: 1}}
  api: {replicas: 1}
"""


def apply(cluster, namespace, manifest: str) -> str:
    return cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)


def rejected(cluster, namespace, manifest: str) -> str:
    with pytest.raises(subprocess.CalledProcessError) as info:
        apply(cluster, namespace, manifest)
    return info.value.stderr


def condition(obj, ctype):
    for c in (obj or {}).get("status", {}).get("conditions", []):
        if c["type"] == ctype:
            return c
    return {}


def test_cluster_children_status_drift_and_garbage_collection(kind_cluster, ns, operator_redis):
    apply(kind_cluster, ns, with_redis(CLUSTER, operator_redis.url))
    get = lambda *a: get_json(kind_cluster, *a, "-n", ns)  # noqa: E731

    hpa = poll(lambda: get("hpa", "pool-worker", "--ignore-not-found"), 30, "the HPA")
    worker = get("deployment", "pool-worker")
    api = get("deployment", "pool-api")
    assert get("service", "pool-api")["spec"]["ports"][0]["port"] == 80
    pdbs = {p["metadata"]["name"] for p in get("pdb")["items"]}
    assert pdbs == {"pool-api", "pool-worker"}
    # the pool names an external Redis, so only its database and object store are managed
    stores = {s["metadata"]["name"] for s in get("statefulsets")["items"]}
    assert stores == {"pool-database", "pool-objects"}
    credentials = get("secret", "pool-credentials")
    assert "ownerReferences" not in credentials["metadata"], "the credentials outlive the pool, like its data"
    owner = get("ocrcluster", "pool")["metadata"]["uid"]
    for child in (hpa, worker, api):
        assert child["metadata"]["ownerReferences"][0]["uid"] == owner

    pod = worker["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    assert set(containers) == {"worker", "triton"}
    assert containers["triton"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert containers["triton"]["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"  # every model ready
    assert worker["spec"]["replicas"] == 1
    assert hpa["spec"]["minReplicas"] == 1 and hpa["spec"]["maxReplicas"] == 3
    metric = hpa["spec"]["metrics"][0]["external"]
    assert metric["metric"]["selector"]["matchLabels"] == {"ocrfleet.io/cluster": "pool"}
    assert metric["target"] == {"type": "AverageValue", "averageValue": "10"}

    # kwok runs the pods: the worker lands on a GPU node, and the cluster turns Ready
    ready = poll(lambda: (o := get("ocrcluster", "pool")) and condition(o, "Ready").get("status") == "True" and o,
                 60, "the OcrCluster to be Ready")
    assert ready["status"]["workers"] == {"desired": 1, "ready": 1}
    assert ready["status"]["observedGeneration"] == ready["metadata"]["generation"]
    assert ready["status"]["api"]["endpoint"] == f"http://pool-api.{ns}.svc:80"
    assert kstatus(kind_cluster, "ocrcluster", ns, "pool")["status"] == "Current", "kstatus: a Ready pool is done"
    worker_pods = get("pods", "-l", "ocrfleet.io/cluster=pool,app.kubernetes.io/component=worker")["items"]
    assert worker_pods[0]["spec"]["nodeName"].startswith(tuple(
        n["metadata"]["name"] for n in get_json(kind_cluster, "nodes", "-l", "nvidia.com/gpu.present=true")["items"]))
    listing = kind_cluster.kubectl("get", "ocrfleet", "-n", ns)
    assert "pool" in listing and "True" in listing

    # a bounds change rolls into the HPA
    kind_cluster.kubectl("patch", "ocrcluster", "pool", "-n", ns, "--type=merge",
                         "-p", '{"spec":{"workers":{"maxReplicas":5,"scaleDownStabilizationSeconds":60}}}')
    poll(lambda: get("hpa", "pool-worker")["spec"]["maxReplicas"] == 5, 30, "maxReplicas 5 on the HPA")
    assert get("hpa", "pool-worker")["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 60

    # drift: a deleted HPA comes back, an edited one is put right
    old_uid = get("hpa", "pool-worker")["metadata"]["uid"]
    kind_cluster.kubectl("delete", "hpa", "pool-worker", "-n", ns)
    poll(lambda: (h := get("hpa", "pool-worker", "--ignore-not-found")) and h["metadata"]["uid"] != old_uid,
         30, "the deleted HPA to come back")
    kind_cluster.kubectl("patch", "hpa", "pool-worker", "-n", ns, "--type=merge", "-p", '{"spec":{"maxReplicas":42}}')
    poll(lambda: get("hpa", "pool-worker")["spec"]["maxReplicas"] == 5, 30, "the edited HPA to be repaired")
    kind_cluster.kubectl("delete", "service", "pool-api", "-n", ns)
    poll(lambda: get("service", "pool-api", "--ignore-not-found"), 30, "the deleted Service to come back")

    # deleting the cluster garbage-collects every child (the controller-manager's collector)
    kind_cluster.kubectl("delete", "ocrcluster", "pool", "-n", ns, "--timeout=60s")
    poll(lambda: not get("deployments,hpa,pdb,services,replicasets,pods")["items"], 60,
         "the children to be garbage-collected")


def test_a_pool_whose_redis_hangs_is_still_deleted_promptly(kind_cluster, ns):
    """A frozen Redis (SIGSTOP: connections open, no answers) holds each of the pool's ticks for
    the client's 5 s timeout; the delete must not then wait out kopf's 60 s daemon polling."""
    with RedisServer() as frozen:
        apply(kind_cluster, ns, with_redis(CLUSTER, frozen.url))
        kind_cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({
            "apiVersion": "ocrfleet.io/v1alpha1", "kind": "OcrJob", "metadata": {"name": "waiting"},
            "spec": {"clusterRef": {"name": "pool"}, "source": {"urls": ["https://documents.example.internal/a.png"]}}}))
        poll(lambda: (get_json(kind_cluster, "ocrjob", "waiting", "-n", ns) or {}).get("status", {})
             .get("counts", {}).get("enqueued") == 1, 30, "the job's document enqueued")
        frozen.process.proc.send_signal(signal.SIGSTOP)
        try:
            time.sleep(6)  # both of the pool's timers are now (or were just) stuck in a Redis call
            t0 = time.monotonic()
            kind_cluster.kubectl("delete", "ocrcluster", "pool", "-n", ns, "--timeout=60s")
            took = time.monotonic() - t0
        finally:
            frozen.process.proc.send_signal(signal.SIGCONT)
    assert took < 30, f"deleting a pool with a hung Redis took {took:.1f} s"
    job = poll(lambda: (s := get_json(kind_cluster, "ocrjob", "waiting", "-n", ns)["status"]).get("reason") == "ClusterNotFound"
               and s, 30, "the pool's job to see its pool gone")
    assert "spec.clusterRef" in job["message"], job


def test_unschedulable_workers_make_the_cluster_degraded(kind_cluster, ns, operator_redis):
    apply(kind_cluster, ns, with_redis("""
apiVersion: ocrfleet.io/v1alpha1
kind: OcrCluster
metadata: {name: greedy}
spec:
  workers: {minReplicas: 1, maxReplicas: 2, gpu: {count: 4}}
  api: {replicas: 1}
""", operator_redis.url))
    degraded = poll(lambda: condition(get_json(kind_cluster, "ocrcluster", "greedy", "-n", ns), "Degraded")
                    .get("status") == "True" and get_json(kind_cluster, "ocrcluster", "greedy", "-n", ns),
                    90, "Degraded: no node has 4 GPUs")
    cond = condition(degraded, "Degraded")
    assert cond["reason"] == "Unschedulable"
    assert "nvidia.com/gpu" in cond["message"]
    assert condition(degraded, "Ready")["status"] == "False"
    # Flux and kpt (kstatus) stop waiting on a Degraded pool: Stalled, Failed, with the pod's reason
    stalled = kstatus(kind_cluster, "ocrcluster", ns, "greedy")
    assert stalled["status"] == "Failed" and "nvidia.com/gpu" in stalled["message"], stalled


def test_every_example_is_accepted(kind_cluster, ns, operator_redis):
    names = []
    for path in sorted(EXAMPLES.glob("*.yaml")):  # the pools (ocrcluster-*) before the jobs
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        for doc in docs:
            manifest = with_redis(doc, operator_redis.url) if doc["kind"] == "OcrCluster" else json.dumps(doc)
            kind_cluster.kubectl("apply", "-n", ns, "-f", "-", input=manifest)
        names += [d["metadata"]["name"] for d in docs if d["kind"] in ("OcrCluster", "OcrJob")]
    listing = kind_cluster.kubectl("get", "ocrfleet", "-n", ns)
    for name in names:
        assert name in listing
    # the defaults come from the CRD
    minimal = get_json(kind_cluster, "ocrc", "minimal", "-n", ns)
    assert minimal["spec"]["workers"]["minReplicas"] == 1
    assert minimal["spec"]["triton"]["maxBatchSize"] == 8  # the issue's default (and TritonModelSettings')
    job = get_json(kind_cluster, "ocrj", "statements-2025-01", "-n", ns)
    assert job["spec"]["failurePolicy"]["maxFailedFraction"] == 0.1
    poll(lambda: get_json(kind_cluster, "ocrj", "statements-2025-01", "-n", ns).get("status", {}).get("phase")
         == "Suspended", 30, "the suspended example job to show Suspended")


def test_the_crds_embed_the_core_schemas_the_api_server_serves(kind_cluster, crds):
    served = json.loads(kind_cluster.kubectl("get", "--raw", "/openapi/v3/api/v1"))
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        assert coretypes.differences(yaml.safe_load(path.read_text()), served) == [], (
            f"{path.name}: regenerate with kubectl get --raw /openapi/v3/api/v1 > core.json; "
            "python -m ocrfleet_dev.coretypes core.json")
        assert coretypes.rewrite(path.read_text(), served) == path.read_text(), path.name
    # the comparison sees a hand edit
    clusters = yaml.safe_load((ROOT / "crds" / "ocrfleet.io_ocrclusters.yaml").read_text())
    del coretypes.embedded_nodes(clusters)["spec.api.affinity"]["properties"]["podAntiAffinity"]
    coretypes.embedded_nodes(clusters)["spec.api.tolerations"]["properties"]["key"]["type"] = "integer"
    assert coretypes.differences(clusters, served) == ["spec.api.tolerations", "spec.api.affinity"]


def test_invalid_manifests_are_rejected_with_a_readable_message(kind_cluster, crds, namespace):
    err = rejected(kind_cluster, namespace, """
apiVersion: ocrfleet.io/v1alpha1
kind: OcrCluster
metadata: {name: bad}
spec: {workers: {minReplicas: 5, maxReplicas: 2}}
""")
    assert "workers.minReplicas must not exceed workers.maxReplicas" in err

    err = rejected(kind_cluster, namespace, """
apiVersion: ocrfleet.io/v1alpha1
kind: OcrCluster
metadata: {name: bad}
spec: {workers: {maxReplicas: 0, gpu: {count: 99}}, api: {serviceType: Ingress}}
""")
    assert "spec.workers.maxReplicas" in err and "should be greater than or equal to 1" in err
    assert "spec.workers.gpu.count" in err
    assert 'Unsupported value: "Ingress"' in err

    err = rejected(kind_cluster, namespace, """
apiVersion: ocrfleet.io/v1alpha1
kind: OcrCluster
metadata: {name: bad}
spec: {redis: {url: "redis://:hunter2@redis.shared.svc:6379/0"}}
""")
    assert "redis.url carries a password" in err and "urlSecretRef" in err

    # core types are checked by Kubernetes's own schemas: a misspelt field (the decoder stops there)...
    err = rejected(kind_cluster, namespace, """
apiVersion: ocrfleet.io/v1alpha1
kind: OcrCluster
metadata: {name: bad}
spec: {workers: {tolerations: [{keyy: nvidia.com/gpu, operator: Exists}]}}
""")
    assert 'unknown field "spec.workers.tolerations[0].keyy"' in err, err
    # ...and values of the wrong shape, each named by its path
    err = rejected(kind_cluster, namespace, """
apiVersion: ocrfleet.io/v1alpha1
kind: OcrCluster
metadata: {name: bad}
spec:
  workers:
    resources: {limits: {memory: lots}}
  api:
    affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [
      {matchExpressions: [{key: zone, operator: In, values: a}]}]}}}
    topologySpreadConstraints: [{maxSkew: one, topologyKey: zone, whenUnsatisfiable: DoNotSchedule}]
""")
    assert "spec.workers.resources.limits.memory" in err, err
    assert "spec.api.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]" \
           ".matchExpressions[0].values" in err
    assert "spec.api.topologySpreadConstraints[0].maxSkew" in err

    err = rejected(kind_cluster, namespace, """
apiVersion: ocrfleet.io/v1alpha1
kind: OcrCluster
metadata: {name: bad}
spec: {pods: {labels: {ocrfleet.io/cluster: other}}}
""")
    assert "pod labels under ocrfleet.io/ and app.kubernetes.io/ are set by the operator" in err

    job = """
apiVersion: ocrfleet.io/v1alpha1
kind: OcrJob
metadata: {{name: j}}
spec:
  clusterRef: {{name: {cluster}}}
  source: {source}
"""
    err = rejected(kind_cluster, namespace, job.format(
        cluster="pool", source='{urls: ["https://x/a.png"], volume: {path: inbox}}'))
    assert "set exactly one document source" in err
    err = rejected(kind_cluster, namespace, job.format(cluster="pool", source="{}"))
    assert "set exactly one document source" in err
    err = rejected(kind_cluster, namespace, job.format(cluster="pool", source='{urls: ["ftp://x/a.png"]}'))
    assert "spec.source.urls[0]" in err
    err = rejected(kind_cluster, namespace, job.format(cluster="pool", source='{urls: ["file:///etc/passwd"]}'))
    assert "spec.source.urls[0]" in err, "no file:// sources"
    err = rejected(kind_cluster, namespace, job.format(cluster="pool", source="{volume: {path: /etc}}"))
    assert "spec.source.volume.path" in err, "volume paths are relative to the pool's volume"
    err = rejected(kind_cluster, namespace, job.format(cluster="pool", source="{volume: {path: inbox/../../etc}}"))
    assert "must not contain '..'" in err

    apply(kind_cluster, namespace, job.format(cluster="pool", source="{volume: {path: inbox}}"))
    err = rejected(kind_cluster, namespace, job.format(cluster="other", source="{volume: {path: inbox}}"))
    assert "clusterRef is immutable" in err


def test_every_pool_pod_passes_the_restricted_pod_security_level(kind_cluster, ns):
    """The namespace enforces Pod Security "restricted"; the API server admits every pod of a
    default pool (its own Redis, PostgreSQL and object store included) and its NetworkPolicies."""
    kind_cluster.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted",
                         "pod-security.kubernetes.io/enforce-version=latest", "--overwrite")
    apply(kind_cluster, ns, """
apiVersion: ocrfleet.io/v1alpha1
kind: OcrCluster
metadata: {name: strict}
spec: {api: {replicas: 1}, workers: {minReplicas: 1}}
""")
    # the level is enforced here: a plain pod is refused
    with pytest.raises(subprocess.CalledProcessError) as plain:
        kind_cluster.kubectl("run", "plain", "-n", ns, "--image=ghcr.io/ocrfleet/api:0.1.0", "--dry-run=server")
    assert "violates PodSecurity" in plain.value.stderr
    components = {"api", "worker", "redis", "database", "objects"}

    def pods():
        found = get_json(kind_cluster, "pods", "-n", ns, "-l", "ocrfleet.io/cluster=strict")["items"]
        return {p["metadata"]["labels"]["app.kubernetes.io/component"] for p in found} >= components and found

    def refusals() -> list[str]:
        events = get_json(kind_cluster, "events", "-n", ns)["items"]
        return [e["message"] for e in events if "violates PodSecurity" in e.get("message", "")]

    poll(lambda: pods() or (refusals() and pytest.fail(f"pods refused: {refusals()}")), 90,
         "every pod of the pool created under the restricted level")
    assert refusals() == []
    poll(lambda: {p["metadata"]["name"] for p in get_json(kind_cluster, "networkpolicy", "-n", ns)["items"]}
         == {f"strict-{c}" for c in components}, 30, "a NetworkPolicy for each component")


def test_a_pool_outside_the_operators_image_policy_is_refused_with_a_reason(kind_cluster, ns):
    apply(kind_cluster, ns, """
apiVersion: ocrfleet.io/v1alpha1
kind: OcrCluster
metadata: {name: miner}
spec: {api: {replicas: 1}, workers: {image: evil.example.com/miner:1}}
""")
    refused = poll(lambda: condition(get_json(kind_cluster, "ocrcluster", "miner", "-n", ns), "Ready")
                   .get("reason") == "PolicyViolation" and get_json(kind_cluster, "ocrcluster", "miner", "-n", ns),
                   30, "the pool refused by the operator's image policy")
    assert "evil.example.com/miner:1" in condition(refused, "Degraded")["message"]
    stalled = kstatus(kind_cluster, "ocrcluster", ns, "miner")
    assert stalled["status"] == "Failed" and "evil.example.com/miner:1" in stalled["message"], stalled
    assert get_json(kind_cluster, "deployments", "-n", ns)["items"] == [], "nothing of it is rendered"
