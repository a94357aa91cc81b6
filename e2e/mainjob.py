"""The main job as a user runs it, on the real node: shared by ``make demo`` and its e2e test.

A pool from ``examples/ocrcluster-minimal.yaml`` (defaults only: its own Redis, PostgreSQL and
object store), documents put into the pool's object store, an OcrJob over them, its progress
from the job's status, and its results read through the pool's API. Every step goes through
what a user has: kubectl, the pool's Services (a Service's ClusterIP answers on the real node's
host, through kube-proxy) and the pool's credentials Secret.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import yaml

from e2e.images import archive, build_all
from e2e.operator_helpers import get_json, poll
from ocrfleet.blobs import S3BlobStore

ROOT = Path(__file__).resolve().parent.parent
RELEASE, SYSTEM = "ocrfleet", "ocrfleet-system"
REAL = {"ocrfleet.io/node": "real"}
"""The nodeSelector of pods that must run on the real node (beside it, kwok nodes are tainted anyway)."""


def load_images(cluster, log: Callable[[str], None] = print) -> None:
    """Build (or find) every image and import it into the real node's containerd."""
    for name, built in build_all(log=log).items():
        t0 = time.monotonic()
        if cluster.load_docker_image(archive(name, built), built.image.public_tag):
            log(f"image {built.image.public_tag} imported into the node in {time.monotonic() - t0:.0f} s")


def helm_install(cluster, *extra: str, timeout: float = 300) -> str:
    """``helm upgrade --install`` of the chart at the repository root, waiting for the operator pod."""
    import subprocess

    proc = subprocess.run([str(cluster.helm), f"--kubeconfig={cluster.kubeconfig_path}", "upgrade", "--install",
                           RELEASE, str(ROOT), "-n", SYSTEM, "--create-namespace", "--wait", "--timeout", "240s",
                           *extra], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"helm install failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


class Pool:
    """An OcrCluster in a namespace, seen from the host."""

    def __init__(self, cluster, namespace: str, name: str) -> None:
        self.cluster, self.namespace, self.name = cluster, namespace, name

    @classmethod
    def from_example(cls, cluster, namespace: str, example: str = "ocrcluster-minimal.yaml") -> Pool:
        cluster.kubectl("create", "namespace", namespace, check=False)
        path = ROOT / "examples" / example
        cluster.kubectl("apply", "-n", namespace, "-f", str(path))
        return cls(cluster, namespace, yaml.safe_load(path.read_text())["metadata"]["name"])

    def get(self, kind: str, name: str) -> dict | None:
        return get_json(self.cluster, kind, name, "-n", self.namespace, "--ignore-not-found", check=False)

    def status(self) -> dict:
        return (self.get("ocrcluster", self.name) or {}).get("status", {})

    def ready(self) -> bool:
        return any(c["type"] == "Ready" and c["status"] == "True" for c in self.status().get("conditions", []))

    def wait_ready(self, timeout: float, on_change: Callable[[str], None] | None = None) -> dict:
        last = ""

        def check():
            nonlocal last
            status = self.status()
            ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
            line = f"{ready.get('status', '?')} {ready.get('reason', '')}: {ready.get('message', '')}"
            if on_change and line != last:
                on_change(line)
            last = line
            return ready.get("status") == "True" and status

        return poll(check, timeout, f"OcrCluster {self.namespace}/{self.name} to be Ready", interval=2)

    # -- the pool's Services and credentials ------------------------------------------------

    def service_url(self, suffix: str, port: int | None = None) -> str:
        service = self.get("service", f"{self.name}-{suffix}")
        if service is None:
            raise LookupError(f"no Service {self.name}-{suffix} in {self.namespace}")
        return f"http://{service['spec']['clusterIP']}:{port or service['spec']['ports'][0]['port']}"

    def credential(self, key: str) -> str:
        secret = self.get("secret", f"{self.name}-credentials") or {}
        return base64.b64decode(secret["data"][key]).decode()

    def objects(self) -> S3BlobStore:
        """The pool's managed object store, with the pool's own keys."""
        return S3BlobStore.from_url("s3://ocrfleet/blobs", endpoint=self.service_url("objects"),
                                    access_key=self.credential("s3-access-key"),
                                    secret_key=self.credential("s3-secret-key"))

    def put_documents(self, paths: list[Path], prefix: str) -> list[str]:
        """Copy documents into the pool's bucket under ``prefix`` (what an OcrJob's source.s3 names)."""
        store = self.objects()
        keys = []
        for path in paths:
            key = f"{prefix.rstrip('/')}/{path.name}"
            store.put_object(store.bucket, key, path.read_bytes())
            keys.append(key)
        return keys

    def api_key(self, tenant: str) -> str:
        """A key of ``tenant`` (granted this namespace's OcrJob results), issued by the API image's
        admin command inside an API pod."""
        exec_ = ("exec", "-n", self.namespace, f"deploy/{self.name}-api", "--", "python", "-m", "ocrfleet_api.admin")
        self.cluster.kubectl(*exec_, "create-tenant", tenant, "--ocrjob-namespaces", self.namespace,
                             check=False)  # exists already: fine
        return json.loads(self.cluster.kubectl(*exec_, "issue-key", tenant, timeout=120))["api_key"]

    # -- jobs --------------------------------------------------------------------------------

    def apply_job(self, manifest: dict) -> str:
        self.cluster.kubectl("apply", "-n", self.namespace, "-f", "-", input=json.dumps(manifest))
        return manifest["metadata"]["name"]

    def job_status(self, name: str) -> dict:
        return (self.get("ocrjob", name) or {}).get("status", {})

    def watch_job(self, name: str, timeout: float, on_status: Callable[[dict], None] | None = None) -> dict:
        """Poll the job's status until it Succeeded or Failed; returns the final status."""
        def finished():
            status = self.job_status(name)
            if on_status:
                on_status(status)
            return status.get("phase") in ("Succeeded", "Failed") and status

        return poll(finished, timeout, f"OcrJob {self.namespace}/{name} to finish", interval=1)

    def job_results(self, name: str, api_key: str, *, page_size: int = 100) -> list[dict]:
        """Every document of the job through the API route its status names, page by page."""
        path = self.job_status(name).get("results", {}).get(
            "path", f"/v1/namespaces/{self.namespace}/ocrjobs/{name}/results")
        documents, after = [], ""
        with httpx.Client(base_url=self.service_url("api"), timeout=30,
                          headers={"Authorization": f"Bearer {api_key}"}) as client:
            while True:
                response = client.get(path, params={"limit": page_size, "after": after})
                response.raise_for_status()
                body = response.json()
                documents += body["documents"]
                if not (after := body["next"]):
                    return documents


def generated_documents(directory: Path, count: int, seed: int) -> list[tuple[Path, dict]]:
    """Generated ID cards, statements, generic pages and PDFs, each with its truth (kept apart)."""
    from ocrfleet_dev import docgen

    out = []
    for truth_path in docgen.generate(directory, count, seed=seed):
        truth = json.loads(truth_path.read_text())
        out.append((truth_path.parent / truth["file"], truth))
    return out


def progress_line(status: dict) -> str:
    """One line of an OcrJob's progress: phase, done/total, failures, pages/s, ETA."""
    counts = status.get("counts", {})
    line = f"{status.get('phase', 'Pending'):9} {counts.get('done', 0):>4}/{counts.get('total', '?')} done"
    if counts.get("failed"):
        line += f", {counts['failed']} failed"
    if "pagesPerSecond" in status:
        line += f"  {status['pagesPerSecond']:.2f} pages/s"
    if "etaSeconds" in status:
        line += f"  ETA {status['etaSeconds']} s"
    return line
