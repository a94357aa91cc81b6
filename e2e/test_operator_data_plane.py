"""One OcrJob end to end with the real data plane.

The operator runs against the local control plane (the session fixtures of
:mod:`e2e.operator_support`); beside it, as local processes on the operator's Redis and one
SQLite database, the data plane its pods would run: Triton serving the real model
(:mod:`ocrfleet_worker.triton_server`), the worker (``python -m ocrfleet_worker``) and the API
(``python -m ocrfleet_api``). Fifty generated ID cards go into a folder; ``kubectl apply`` of
an OcrJob over that folder must go Pending -> Running -> Succeeded with 50/50, and every
result must be readable over HTTP as the job's tenant (its namespace), fields matching the
generator's truth.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from ocrfleet_dev import docgen
from ocrfleet_dev.localproc import LocalProcess, free_port

from e2e.operator_helpers import get_json, poll, with_redis

pytest_plugins = ["e2e.operator_support"]
pytestmark = pytest.mark.slow

DOCUMENTS = 50
POOL = "realdata"
CLUSTER = {"apiVersion": "ocrfleet.io/v1alpha1", "kind": "OcrCluster", "metadata": {"name": POOL},
           # masks nothing, so the test can compare every extracted field with the truth
           "spec": {"workers": {"gpu": {"count": 0}}, "api": {"replicas": 1}, "masking": {"default": []}}}
ROOT = Path(__file__).resolve().parent.parent


def data_plane_env(operator, ns: str, database_url: str) -> dict[str, str]:
    """What the pods of the pool would read: the operator's Redis and blob store, one database."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("OCRFLEET_")},
            "OCRFLEET_CLUSTER": POOL, "OCRFLEET_CLUSTER_NAMESPACE": ns, "OCRFLEET_REDIS_URL": operator.env["OCRFLEET_REDIS_URL"],
            "OCRFLEET_BLOB_ROOT": operator.env["OCRFLEET_BLOB_ROOT"], "OCRFLEET_DATABASE_URL": database_url,
            "OCRFLEET_SIGNING_MASTER_KEY": "data-plane-signing-master-key-0123456789abcdef"}


@pytest.fixture
def triton(tmp_path):
    from ocrfleet_dev.triton import TritonServer

    with TritonServer(workdir=tmp_path / "triton") as server:
        yield server


@pytest.fixture
def api_key(operator, ns, tmp_path):
    """The job's tenant (its namespace) and an API key for it, made with the API's admin command."""
    env = data_plane_env(operator, ns, f"sqlite:///{tmp_path / 'ocrfleet.db'}")
    admin = [sys.executable, "-m", "ocrfleet_api.admin"]
    subprocess.run([*admin, "create-tenant", ns, "--mask-fields", "none", "--ocrjob-namespaces", ns], env=env, check=True, capture_output=True, timeout=60)
    issued = subprocess.run([*admin, "issue-key", ns], env=env, check=True, capture_output=True, text=True,
                            timeout=60)
    return json.loads(issued.stdout)["api_key"]


@pytest.fixture
def data_plane(operator, ns, triton, api_key, tmp_path):
    """The API and one worker as processes; yields the API's base URL."""
    env = data_plane_env(operator, ns, f"sqlite:///{tmp_path / 'ocrfleet.db'}")
    port = free_port()
    api = LocalProcess("api", [sys.executable, "-m", "ocrfleet_api"], workdir=tmp_path,
                       env={**env, "OCRFLEET_HOST": "127.0.0.1", "OCRFLEET_PORT": str(port)})
    worker = LocalProcess("worker", [sys.executable, "-m", "ocrfleet_worker"], workdir=tmp_path,
                          env={**env, "OCRFLEET_ENGINE": "triton", "OCRFLEET_TRITON_URL": triton.grpc_url,
                               "OCRFLEET_CONSUMER_NAME": "e2e-worker", "PYTHONPATH": str(ROOT), "OCRFLEET_METRICS_PORT": "0",
                               # the pool's documents volume, where the worker lists and reads the job
                               "OCRFLEET_SOURCE_VOLUME_ROOT": str(tmp_path / "volume")})
    base = f"http://127.0.0.1:{port}"
    try:
        api.start(lambda: httpx.get(f"{base}/readyz", timeout=2).status_code == 200, timeout=60)
        worker.spawn()
        yield base, worker
    finally:
        worker.stop(timeout=30)
        api.stop()


def phase_events(kind_cluster, ns: str, name: str) -> list[str]:
    events = json.loads(kind_cluster.kubectl("get", "events", "-n", ns, "-o", "json",
                                             "--field-selector", f"involvedObject.name={name}"))["items"]
    events.sort(key=lambda e: int(e["metadata"]["resourceVersion"]))  # timestamps have 1 s resolution
    return [e["reason"] for e in events if e["reason"] in ("Pending", "Running", "Succeeded", "Failed")]


def test_an_ocrjob_over_generated_id_cards_runs_through_the_real_data_plane(
        kind_cluster, ns, operator, data_plane, api_key, tmp_path):
    base, worker = data_plane
    folder = tmp_path / "volume" / "incoming"  # the documents only; their truth files stay apart
    folder.mkdir(parents=True)
    truths = {}
    for path in docgen.generate(tmp_path / "generated", DOCUMENTS, seed=50, kinds=("id_card",),
                                clean_fraction=1.0):
        truth = json.loads(path.read_text())
        truths[truth["file"]] = truth
        (path.parent / truth["file"]).rename(folder / truth["file"])
    kind_cluster.kubectl("apply", "-n", ns, "-f", "-", input=with_redis(CLUSTER, operator.env["OCRFLEET_REDIS_URL"]))
    job = {"apiVersion": "ocrfleet.io/v1alpha1", "kind": "OcrJob", "metadata": {"name": "cards"},
           "spec": {"clusterRef": {"name": POOL},
                    "source": {"volume": {"path": "incoming"}}}}

    t0 = time.monotonic()
    kind_cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(job))

    def status():
        return (get_json(kind_cluster, "ocrjob", "cards", "-n", ns) or {}).get("status", {})

    poll(lambda: status().get("phase") in ("Running", "Succeeded"), 60, "the job to run")
    to_running = time.monotonic() - t0

    def finished():
        assert worker.running, f"the worker exited:\n{worker.log_tail()}"
        s = status()
        return s.get("phase") in ("Succeeded", "Failed") and s

    final = poll(finished, 200, f"the job to finish ({DOCUMENTS} documents)", interval=1)
    elapsed = time.monotonic() - t0
    assert final["phase"] == "Succeeded", final
    assert final["counts"] == {"total": DOCUMENTS, "enqueued": DOCUMENTS, "succeeded": DOCUMENTS, "failed": 0,
                               "inFlight": 0, "done": DOCUMENTS}
    assert phase_events(kind_cluster, ns, "cards") == ["Pending", "Running", "Succeeded"]

    # every result, over HTTP, as the job's tenant, from the route the job's status names
    assert final["results"]["path"] == f"/v1/namespaces/{ns}/ocrjobs/cards/results"
    headers = {"Authorization": f"Bearer {api_key}"}
    exact = {"name": 0, "id_number": 0, "birth_date": 0}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        documents, after = [], ""
        while True:
            listed = client.get(final["results"]["path"], params={"limit": 20, "after": after})
            assert listed.status_code == 200, listed.text
            documents += listed.json()["documents"]
            if not (after := listed.json()["next"]):
                break
        assert sorted(d["filename"] for d in documents) == sorted(truths)
        for result in documents:
            assert (result["status"], result["tenant"]) == ("succeeded", f"ocrjob:{ns}")
            assert result["job"] == f"{ns}.cards"
            truth = truths[result["filename"]]
            page = result["pages"][0]
            assert page["document_type"] == "id_card", (result["filename"], page["document_type"])
            got = {f["name"]: f["value"] for f in page["fields"]}
            for name in exact:
                exact[name] += got.get(name) == truth["fields"][name]
        # another tenant's key would not see them; no key gets a problem document, not a result
        anonymous = httpx.get(f"{base}/v1/documents/{documents[0]['document_id']}", timeout=10)
        assert anonymous.status_code == 401
    for name, hits in exact.items():  # clean cards: the model bench reads >= 98 % of fields exactly
        assert hits >= DOCUMENTS - 2, f"{name}: only {hits}/{DOCUMENTS} exact"
    print(f"\nMEASURED real_job documents={DOCUMENTS} apply_to_running_s={to_running:.1f} "
          f"apply_to_succeeded_s={elapsed:.1f} exact_fields={exact}")
