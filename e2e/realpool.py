"""A CPU pool on the real node whose Redis and PostgreSQL run on the host: shared by the
real-node pool tests (:mod:`e2e.test_real_pool`) and the scaling benchmark
(:mod:`bench.scaling_bench`).

Redis and PostgreSQL bind the node's bridge address (pods reach it, nothing outside the machine
can), so the host sees exactly what the pool's pods do: the queue (who holds which message)
and every stored row. The documents volume is a hostPath PersistentVolume on the node, shared
by the API and worker pods. Documents go in through the API Service, as a tenant's client sends
them.
"""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from ocrfleet_api.tenants import TenantDirectory
from ocrfleet_dev import docgen

from e2e.mainjob import REAL
from e2e.operator_helpers import get_json
from ocrfleet import keys
from ocrfleet.store import ResultStore

MASTER_KEY = "real-node-signing-master-key-0123456789abcdef"
POOL = "cpu"
WORKERS = {"minReplicas": 1, "maxReplicas": 2, "gpu": {"count": 0}, "nodeSelector": REAL,
           "targetQueueDepthPerWorker": 4, "startupDeadlineSeconds": 300, "scaleDownStabilizationSeconds": 0,
           "terminationGracePeriodSeconds": 120}
"""The pool's workers: CPU (Triton ``KIND_CPU``), on the real node; ``workers=`` overrides any key."""


def pool_manifests(namespace: str, redis_url: str, database_url: str, documents: str, **workers) -> list[dict]:
    """The pool's Secrets, its documents volume and claim, and the OcrCluster itself."""
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque"}
    return [
        {**secret, "metadata": {"name": "pool-redis", "namespace": namespace}, "stringData": {"url": redis_url}},
        {**secret, "metadata": {"name": "pool-database", "namespace": namespace}, "stringData": {"url": database_url}},
        {**secret, "metadata": {"name": "pool-signing", "namespace": namespace},
         "stringData": {"signingMasterKey": MASTER_KEY}},
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"{namespace}-documents"},
         "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"], "storageClassName": "",
                  "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": documents, "type": "Directory"},
                  "claimRef": {"namespace": namespace, "name": "documents"}}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "documents", "namespace": namespace},
         "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "", "volumeName": f"{namespace}-documents",
                  "resources": {"requests": {"storage": "1Gi"}}}},
        {"apiVersion": "ocrfleet.io/v1alpha1", "kind": "OcrCluster", "metadata": {"name": POOL, "namespace": namespace},
         "spec": {
             "workers": {**WORKERS, **workers},
             "triton": {"instanceCount": 1},
             "api": {"replicas": 1, "nodeSelector": REAL, "authSecretRef": {"name": "pool-signing"}},
             "redis": {"urlSecretRef": {"name": "pool-redis"}},
             "database": {"urlSecretRef": {"name": "pool-database"}},
             "storage": {"pvc": {"claimName": "documents"}},
         }},
    ]


def pool_ready(cluster, namespace: str) -> bool:
    conditions = (get_json(cluster, "ocrcluster", POOL, "-n", namespace) or {}).get("status", {}).get(
        "conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


class Submitter:
    """Documents POSTed to the pool's API Service as one tenant; their ids and truths."""

    def __init__(self, cluster, namespace: str, store: ResultStore, tmp_path: Path) -> None:
        service = get_json(cluster, "service", f"{POOL}-api", "-n", namespace)
        self.base = f"http://{service['spec']['clusterIP']}:80"
        directory = TenantDirectory(store, MASTER_KEY)
        tenant = f"t{uuid.uuid4().hex[:6]}"
        directory.create_tenant(tenant)
        self.headers = {"Authorization": f"Bearer {directory.issue_key(tenant).api_key}"}
        self.tmp_path = tmp_path
        self.store = store

    def documents(self, count: int, *, seed: int, kinds=("bank_statement",)) -> list[tuple[str, bytes]]:
        """Generated documents (file name, bytes), ready to send."""
        out = []
        for truth_path in docgen.generate(self.tmp_path / f"docs-{seed}", count, seed=seed, kinds=kinds):
            truth = json.loads(truth_path.read_text())
            out.append((truth["file"], (truth_path.parent / truth["file"]).read_bytes()))
        return out

    def post(self, documents: list[tuple[str, bytes]], *, concurrency: int = 1) -> list[str]:
        """POST each document; their ids, in order. Every one must be accepted (202)."""
        with httpx.Client(base_url=self.base, headers=self.headers, timeout=30) as client:
            def one(document: tuple[str, bytes]) -> str:
                r = client.post("/v1/documents", files={"file": (document[0], document[1], "application/octet-stream")})
                assert r.status_code == 202, r.text
                return r.json()["document_id"]

            with ThreadPoolExecutor(concurrency) as pool:
                return list(pool.map(one, documents))

    def submit(self, count: int, *, seed: int, kinds=("bank_statement",)) -> list[str]:
        return self.post(self.documents(count, seed=seed, kinds=kinds))

    def statuses(self, ids: list[str]) -> dict[str, str]:
        return {i: httpx.get(f"{self.base}/v1/documents/{i}", headers=self.headers, timeout=10).json()["status"]
                for i in ids}


def held_by(redis_client, namespace: str, consumer: str) -> list[str]:
    """Ids of the messages ``consumer`` holds (read, not yet acked), over every priority stream."""
    held = []
    for priority in keys.PRIORITIES:
        stream = keys.stream(keys.pool(namespace, POOL), priority)
        if redis_client.exists(stream):
            held += [p["message_id"] for p in redis_client.xpending_range(
                stream, keys.CONSUMER_GROUP, "-", "+", 100, consumername=consumer)]
    return held


def worker_pods(cluster, namespace: str) -> list[dict]:
    return json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/component=worker",
                                      "-o", "json"))["items"]


def assert_each_stored_once(store: ResultStore, ids: list[str], redis_client, namespace: str) -> None:
    """Every document succeeded with each of its pages stored once, and nothing was dead-lettered."""
    for document_id in ids:
        result = store.get(document_id)
        assert result is not None and result.status == "succeeded", (document_id, result)
        pages = [p.page for p in result.pages]
        assert pages and len(pages) == len(set(pages)), (document_id, pages)
    dead = keys.dead_letter(keys.pool(namespace, POOL))
    assert redis_client.xlen(dead) == 0, redis_client.xrange(dead)
