"""Smoke tests of the built images, each run as a container the way its pod runs it.

- every image: its own non-root user, no compiler;
- the API image answers ``/readyz`` against real Redis and PostgreSQL;
- the worker image renders the model repository, its Triton loads the models (strict
  readiness), and one document submitted to the API container is processed by the worker
  container and read back over HTTP.

The operator image's smoke test needs the control plane: ``e2e/test_operator_image.py``.
"""

from __future__ import annotations

import json

import httpx
import pytest
from ocrfleet_api.tenants import TenantDirectory
from ocrfleet_dev import docgen
from ocrfleet_dev.localproc import free_port

from ocrfleet.store import ResultStore, make_engine
from tests.images.conftest import Container, ran, shared_dir

pytestmark = pytest.mark.slow
MASTER_KEY = "smoke-test-signing-master-key-0123456789"


@pytest.mark.parametrize("name", ["operator", "api", "worker"])
def test_image_runs_as_its_own_user_without_a_compiler(images, name):
    run = ran(images[name].tag, "sh", "-c", "id -u; for c in gcc cc g++ clang; do command -v $c; done; true")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.split()
    assert lines[0] == "10001", f"{name} runs as uid {lines[0]}"
    assert lines[1:] == [], f"{name} carries a compiler: {lines[1:]}"


@pytest.mark.parametrize("name, own, absent", [
    ("operator", "ocrfleet_operator", ["ocrfleet_api", "ocrfleet_worker", "torch", "tritonclient", "fastapi"]),
    ("api", "ocrfleet_api", ["ocrfleet_operator", "ocrfleet_worker", "torch", "tritonclient", "kopf"]),
    ("worker", "ocrfleet_worker", ["ocrfleet_operator", "ocrfleet_api", "kopf", "fastapi"]),
])
def test_image_carries_the_core_and_its_own_package_only(images, name, own, absent):
    """Each Dockerfile installs the core and its own extra: no torch in the operator or API, and no
    other image's package (not even an empty one)."""
    script = ("import importlib.util, json, sys; "
              "print(json.dumps({m: importlib.util.find_spec(m) is not None for m in sys.argv[1:]}))")
    run = ran(images[name].tag, "python3", "-c", script, "ocrfleet", own, *absent)
    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout)
    assert found["ocrfleet"] and found[own], found
    assert [m for m in absent if found[m]] == [], f"the {name} image carries {found}"


def api_env(redis_url: str, database_url: str, port: int, metrics_port: int = 0) -> dict[str, str]:
    return {"OCRFLEET_REDIS_URL": redis_url, "OCRFLEET_DATABASE_URL": database_url,
            "OCRFLEET_HOST": "127.0.0.1", "OCRFLEET_PORT": str(port), "OCRFLEET_WORKERS": "2",
            "OCRFLEET_METRICS_PORT": str(metrics_port),
            "OCRFLEET_SIGNING_MASTER_KEY": MASTER_KEY, "OCRFLEET_CLUSTER": "smoke"}


def test_api_image_is_ready_against_real_redis_and_postgres(images, redis_server, postgres_url, tmp_path):
    port, metrics_port = free_port(), free_port()
    data = shared_dir(tmp_path / "data")
    with Container(images["api"].tag, ["python", "-m", "ocrfleet_api"], name="api",
                   env=api_env(redis_server.url, postgres_url, port, metrics_port), volumes={data: "/data"}) as api:
        ready = api.wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2), 90, "/readyz")
        assert ready.status_code == 200, ready.text
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)  # two workers, merged
        assert metrics.status_code == 200 and "ocrfleet_api_requests_total" in metrics.text


def test_worker_image_serves_the_model_and_processes_a_document(images, redis_server, postgres_url, tmp_path):
    worker_tag = images["worker"].tag
    data, models = shared_dir(tmp_path / "data"), shared_dir(tmp_path / "models")
    # the init container: the repository rendered for a CPU pool, weights copied out of the image
    render = ran(worker_tag, "python3", "-m", "ocrfleet_worker.triton_repository", "render", "--out", "/models",
                 "--copy-weights", env={"OCRFLEET_TRITON_KIND": "cpu"}, volumes={models: "/models"})
    assert render.returncode == 0, render.stdout + render.stderr

    http, grpc, metrics, api_port = free_port(), free_port(), free_port(), free_port()
    triton = Container(worker_tag, ["tritonserver", "--model-repository=/models", "--strict-readiness=true",
                                    "--http-address=127.0.0.1", f"--http-port={http}",
                                    "--grpc-address=127.0.0.1", f"--grpc-port={grpc}",
                                    "--metrics-address=127.0.0.1", f"--metrics-port={metrics}"],
                       name="triton", volumes={models: "/models"})
    with triton:
        triton.wait_for(lambda: httpx.get(f"http://127.0.0.1:{http}/v2/health/ready", timeout=2).status_code == 200,
                        180, "Triton to load every model (strict readiness)")
        for model in ("ocr_det", "ocr_cls", "ocr_rec"):
            assert httpx.get(f"http://127.0.0.1:{http}/v2/models/{model}/ready", timeout=5).status_code == 200

        core = {"OCRFLEET_REDIS_URL": redis_server.url, "OCRFLEET_DATABASE_URL": postgres_url,
                "OCRFLEET_BLOB_ROOT": "/data/blobs", "OCRFLEET_CLUSTER": "smoke"}
        worker_env = {**core, "OCRFLEET_TRITON_URL": f"127.0.0.1:{grpc}", "OCRFLEET_CONSUMER_NAME": "smoke-0"}
        api_env_ = {**api_env(redis_server.url, postgres_url, api_port), "OCRFLEET_BLOB_ROOT": "/data/blobs"}
        with Container(images["api"].tag, ["python", "-m", "ocrfleet_api"], name="api", env=api_env_,
                       volumes={data: "/data"}) as api, \
             Container(worker_tag, ["python3", "-m", "ocrfleet_worker"], name="worker", env=worker_env,
                       volumes={data: "/data"}) as worker:
            base = f"http://127.0.0.1:{api_port}"
            api.wait_for(lambda: httpx.get(f"{base}/readyz", timeout=2).status_code == 200, 90, "/readyz")
            store = ResultStore(make_engine(postgres_url))
            directory = TenantDirectory(store, MASTER_KEY)
            directory.create_tenant("smoke", mask_fields=[])  # compares raw fields with the truth
            key = directory.issue_key("smoke").api_key
            truth_path = docgen.generate(tmp_path / "docs", 1, seed=7, kinds=("id_card",), clean_fraction=1.0)[0]
            truth = json.loads(truth_path.read_text())
            document = (truth_path.parent / truth["file"]).read_bytes()
            headers = {"Authorization": f"Bearer {key}"}
            accepted = httpx.post(f"{base}/v1/documents", headers=headers, timeout=30,
                                  files={"file": (truth["file"], document, "application/octet-stream")})
            assert accepted.status_code == 202, accepted.text
            document_id = accepted.json()["document_id"]

            def result():
                assert api.running(), api.logs()
                body = httpx.get(f"{base}/v1/documents/{document_id}", headers=headers, timeout=10).json()
                return body if body["status"] in ("succeeded", "failed") else None

            final = worker.wait_for(result, 180, "the document's result")
            assert final["status"] == "succeeded", final
            fields = {f["name"]: f["value"] for f in final["pages"][0]["fields"]}
            assert final["pages"][0]["document_type"] == "id_card"
            assert fields.get("birth_date") == truth["fields"]["birth_date"], (fields, truth["fields"])

