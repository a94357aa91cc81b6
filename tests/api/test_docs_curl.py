"""docs/api.md's shell blocks, run as a tenant runs them: bash, curl, jq and openssl against a real
API process (``python -m ocrfleet_api``) on real Redis and PostgreSQL, with a real worker process
(``python -m ocrfleet_dev.worker``: the worker's main over the replay engine, which answers with
the generated documents' truth) and an OcrJob fed by the operator's own code, its documents
fetched by the worker from a loopback web server.

A block marked ``<!-- tested: NAME -->`` runs in ``bash -euo pipefail`` in one directory for
the whole walk (files a block writes are there for the next, as in a tenant's shell); what a
block gets from an earlier one (``DOC_ID``, the key) comes as the variables the doc names. The
doc's ``admin`` function runs ``kubectl exec ... python -m ocrfleet_api.admin``; here it runs
that program against the test database. Every request goes to 127.0.0.1: proxies are unset.

The server is this module's own, so its windows are short enough to wait out: a 3-second rate
window, a queue bound of 4 with ``Retry-After: 1``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import pytest
from ocrfleet_api.tenants import TenantDirectory
from ocrfleet_dev import docgen
from ocrfleet_dev.kubeobjects import defaulted
from ocrfleet_dev.localproc import free_port
from ocrfleet_operator import jobsource

from ocrfleet import intake, keys
from ocrfleet.progress import JobProgress
from ocrfleet.queue import WorkQueue
from tests.api.conftest import MASTER_KEY, api_env, launch_api, stop_api
from tests.api.documents import png

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "api.md"
CLUSTER = "docs-curl"
NAMESPACE = "loans"
JOB = "id-cards-batch"
TESTED = re.compile(r"<!-- tested: ([a-z-]+) -->\n```bash\n(.*?)\n```", re.DOTALL)
RUN = ("tenant", "check-cache", "upload", "result", "batch", "idempotency", "unauthorized", "too-large",
       "retry", "ocrjob", "signing", "signed-upload", "revoke")
PROXIES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


def doc_blocks() -> dict[str, str]:
    found: dict[str, str] = {}
    for name, body in TESTED.findall(DOC.read_text()):
        assert name not in found, f"docs/api.md has two blocks marked tested: {name}"
        found[name] = body
    return found


def test_every_tested_block_of_the_doc_is_run_here():
    assert sorted(doc_blocks()) == sorted(RUN), "a block marked <!-- tested: NAME --> in docs/api.md " \
        "that this module does not run, or one it runs that the doc no longer has"
    for tool in ("bash", "curl", "jq", "openssl"):
        assert shutil.which(tool), f"{tool} is needed to run docs/api.md's blocks"


class Shell:
    """Runs the doc's blocks in one working directory with the variables a tenant would have set."""

    def __init__(self, workdir: Path, base_env: dict[str, str], admin_env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = base_env
        self.blocks = doc_blocks()
        assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in admin_env.items())
        program = f"{shlex.quote(sys.executable)} -m ocrfleet_api.admin"
        self.preamble = f'set -euo pipefail\nadmin() {{ {assignments} {program} "$@"; }}\n'

    def script(self, *names: str, edit=lambda text: text) -> str:
        return self.preamble + "\n".join(edit(self.blocks[n]) for n in names) + "\n"

    def run(self, *names: str, timeout: float = 60, edit=lambda text: text, **env: str) -> str:
        done = subprocess.run(["bash", "-c", self.script(*names, edit=edit)], cwd=self.workdir,
                              env={**self.env, **env}, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, (f"docs/api.md block(s) {names} exited {done.returncode}:\n"
                                      f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}")
        return done.stdout

    def start(self, *names: str, stderr: Path, **env: str) -> subprocess.Popen:
        """The blocks in the background, their stderr written to ``stderr`` as it comes."""
        with open(stderr, "w") as errors:
            return subprocess.Popen(["bash", "-c", self.script(*names)], cwd=self.workdir, env={**self.env, **env},
                                    stdout=subprocess.PIPE, stderr=errors, text=True)


def json_lines(text: str) -> list:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def json_values(text: str) -> list:
    """The JSON values jq printed one after another (pretty-printed)."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while (at := len(text) - len(text[at:].lstrip())) < len(text):
        value, at = decoder.raw_decode(text, at)
        values.append(value)
    return values


@pytest.fixture
def documents(tmp_path):
    """Generated ID cards (clean, with their truth for the replay engine)."""
    folder = tmp_path / "samples"
    docgen.generate(folder, 7, seed=12, kinds=("id_card",), clean_fraction=1.0)
    return sorted(p for p in folder.iterdir() if not p.name.endswith(".truth.json"))


@pytest.fixture
def pool(redis_server, postgres_url, store, redis_client, document_site, documents):
    """This module's API process and one worker process over the replay engine, on one pool."""
    workdir = Path(tempfile.mkdtemp(prefix="ocrfleet-docs-api-"))
    env = api_env(redis_server.url, postgres_url, workdir, free_port(), document_site.url) | {
        "OCRFLEET_CLUSTER": CLUSTER, "OCRFLEET_RATE_LIMIT_WINDOW_S": "3", "OCRFLEET_MAX_QUEUE_DEPTH": "4",
        "OCRFLEET_BACKPRESSURE_RETRY_AFTER_S": "1"}
    server = launch_api(env, workdir)
    worker_log = workdir / "worker.log"
    with open(worker_log, "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "ocrfleet_dev.worker"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "OCRFLEET_CLUSTER": CLUSTER, "OCRFLEET_REDIS_URL": redis_server.url,
                 "OCRFLEET_DATABASE_URL": postgres_url, "OCRFLEET_BLOB_ROOT": str(server.blob_root),
                 "OCRFLEET_REPLAY_DIR": str(documents[0].parent), "OCRFLEET_BLOCK_MS": "200",
                 "OCRFLEET_METRICS_PORT": "0", "OCRFLEET_CONSUMER_NAME": "docs-worker",
                 "OCRFLEET_SOURCE_URL_ALLOWLIST": json.dumps([document_site.url])})
    server.worker = worker
    server.worker_log = worker_log
    try:
        yield server
    finally:
        worker.send_signal(signal.SIGCONT)
        worker.kill()
        worker.wait(10)
        stop_api(server)
        shutil.rmtree(workdir, ignore_errors=True)


def _enqueue_ocrjob(redis_client, document_site, cards: list[Path]) -> str:
    """What the operator does for an OcrJob with a URL source: its own task building and enqueueing."""
    (document_site.root / "docs").mkdir(exist_ok=True)
    urls = []
    for i, card in enumerate(cards, start=1):
        (document_site.root / "docs" / f"card-{i}.png").write_bytes(card.read_bytes())
        urls.append(f"{document_site.url}card-{i}.png")
    cluster = defaulted({"apiVersion": "ocrfleet.io/v1alpha1", "kind": "OcrCluster",
                         "metadata": {"name": CLUSTER, "namespace": NAMESPACE, "uid": str(uuid.uuid4())},
                         "spec": {"sources": {"urlAllowlist": [document_site.url]}}}, "ocrclusters")
    job = defaulted({"apiVersion": "ocrfleet.io/v1alpha1", "kind": "OcrJob",
                     "metadata": {"name": JOB, "namespace": NAMESPACE, "uid": str(uuid.uuid4())},
                     "spec": {"clusterRef": {"name": CLUSTER}, "source": {"urls": urls}}}, "ocrjobs")
    pool_key = keys.pool("", CLUSTER)  # the API and the worker serve the pool as named outside Kubernetes
    job_key = jobsource.job_key(job["metadata"])
    progress = JobProgress(redis_client, pool_key)
    intake.enqueue_job(WorkQueue(redis_client, pool_key), progress, job_key,
                       jobsource.url_documents(job, cluster))
    return job_key


def _wait(what: str, check, timeout: float = 60, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}" + (f":\n{log.read_text()[-3000:]}" if log else ""))
        time.sleep(0.2)
    return value


def _exhaust_rate_window(http: httpx.Client, key: str) -> None:
    """Leave the tenant (limit 1) over its limit with at least 2 s of the 3-s window left."""
    while True:
        first = http.get("/v1/stats", headers={"Authorization": f"Bearer {key}"})
        second = http.get("/v1/stats", headers={"Authorization": f"Bearer {key}"})
        if first.status_code == 200 and second.status_code == 429 and second.headers["retry-after"] == "3":
            return
        time.sleep(int(second.headers.get("retry-after", "1")))


def test_the_curl_examples_work_as_documented(pool, store, postgres_url, redis_client, document_site, documents,
                                              tmp_path):
    started = time.monotonic()
    assert pool.url.startswith("http://127.0.0.1:")
    home = tmp_path / "shell"
    home.mkdir()
    id_card, *rest = documents
    cards, scans = rest[:3], rest[3:]
    shutil.copy(id_card, home / "id-card.png")
    for i, scan in enumerate(scans, start=1):
        shutil.copy(scan, home / f"scan-{i}.png")
    base = {k: v for k, v in os.environ.items() if k not in PROXIES}
    base |= {"NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1", "OCRFLEET_API": pool.url, "NS": NAMESPACE}
    sh = Shell(home, base, {"OCRFLEET_DATABASE_URL": postgres_url,
                            "OCRFLEET_SIGNING_MASTER_KEY": MASTER_KEY})
    http = httpx.Client(base_url=pool.url, timeout=30)

    # -- a tenant and its key: the admin program prints the tenant, then the key once
    created, issued = json_lines(sh.run("tenant"))
    assert created == {"tenant": "acme-ocr"}
    assert issued["tenant"] == "acme-ocr" and issued["api_key"].startswith(f"ofk_{issued['key_id']}_")
    assert re.fullmatch(r"[0-9a-f]{64}", issued["signing_secret"])
    tenant = {"OCRFLEET_KEY": issued["api_key"], "OCRFLEET_SIGNING_SECRET": issued["signing_secret"]}

    # -- the cache knows nothing yet; the upload is queued, then processed by the worker
    assert sh.run("check-cache", **tenant) == "not processed before: upload it\n"
    accepted = json.loads(sh.run("upload", **tenant))
    assert accepted["status"] == "queued" and accepted["cached"] is False
    assert (accepted["filename"], accepted["content_type"]) == ("id-card.png", "image/png")
    assert accepted["status_url"] == f"/v1/documents/{accepted['document_id']}"
    assert json.loads((home / "accepted.json").read_text()) == accepted
    doc = {**tenant, "DOC_ID": accepted["document_id"]}

    result = json.loads(sh.run("result", **doc))
    assert (result["document_id"], result["status"], result["document_type"]) == (
        accepted["document_id"], "succeeded", "id_card")
    assert re.fullmatch(r"\d{3}\*{11}[0-9X]{2}", result["fields"]["id_number"]), result  # masked as documented
    assert result["fields"]["sex"] in ("男", "女")

    cached = json.loads(sh.run("check-cache", **tenant))
    assert cached == {"document_id": accepted["document_id"], "status": "succeeded", "document_type": "id_card"}

    # -- a batch of two, then its progress
    submitted, progress = json_values(sh.run("batch", **tenant))
    assert submitted["total"] == 2 and len(submitted["documents"]) == 2 and re.fullmatch(r"[0-9a-f]{32}",
                                                                                         submitted["batch_id"])
    assert progress["total"] == 2 and sum(progress[k] for k in ("queued", "processing", "succeeded", "failed")) <= 2

    # -- the same Idempotency-Key twice: one document, the first answer replayed
    first, second, replayed = sh.run("idempotency", **tenant).splitlines()
    assert first == second and json.loads(first)["document_id"] and json.loads(first)["cached"] is True
    assert replayed.lower() == "idempotent-replayed: true"

    # -- problem documents
    answer = sh.run("unauthorized", **doc)
    assert answer.startswith("HTTP/1.1 401") and 'www-authenticate: bearer realm="ocrfleet"' in answer.lower()
    assert "content-type: application/problem+json" in answer.lower()
    assert json.loads(answer.splitlines()[-1])["code"] == "missing_api_key"
    answer = sh.run("too-large", **tenant)
    assert answer.startswith("HTTP/1.1 413") and "content-type: application/problem+json" in answer.lower()
    problem = json.loads(answer.splitlines()[-1])
    assert problem["code"] == "document_too_large" and "nothing was read" in problem["detail"]

    # -- an OcrJob's results, paged: as written (one page) and with pages of two
    job_key = _enqueue_ocrjob(redis_client, document_site, cards)
    _wait("the OcrJob's 3 documents", lambda: JobProgress(redis_client, keys.pool("", CLUSTER)).read(job_key).done == 3,
          log=pool.worker_log)
    listed = sh.run("ocrjob", **tenant)
    rows = [line.split("\t") for line in listed.splitlines()]
    assert sorted((name, status) for _, status, name in rows) == [(f"card-{i}.png", "succeeded") for i in (1, 2, 3)]
    assert [document_id for document_id, *_ in rows] == sorted(document_id for document_id, *_ in rows)
    assert sh.run("ocrjob", edit=lambda b: b.replace("limit=100", "limit=2"), **tenant) == listed
    other = TenantDirectory(store, MASTER_KEY)
    other.create_tenant("acme-other")
    stranger = other.issue_key("acme-other").api_key
    assert http.get(f"/v1/namespaces/{NAMESPACE}/ocrjobs/{JOB}/results",
                    headers={"Authorization": f"Bearer {stranger}"}).status_code == 404

    # -- waiting out a 429: a tenant limited to one request per window
    other.create_tenant("acme-slow", rate_limit=1)
    slow = other.issue_key("acme-slow").api_key
    _exhaust_rate_window(http, slow)
    retried = subprocess.run(["bash", "-c", sh.script("retry")], cwd=home, env={**base, "OCRFLEET_KEY": slow},
                             capture_output=True, text=True, timeout=30)
    assert retried.returncode == 0, retried.stderr
    assert re.search(r"^429 rate_limited: retrying in [123] s$", retried.stderr, re.MULTILINE), retried.stderr
    assert json.loads(retried.stdout)["filename"] == "scan-3.png"

    # -- waiting out a 503: the worker paused, the queue filled to its bound of 4
    pool.worker.send_signal(signal.SIGSTOP)
    try:
        for i in range(5):  # uploads until the queue is at its bound (what is still in it counts)
            r = http.post("/v1/documents", headers={"Authorization": f"Bearer {issued['api_key']}"},
                          files={"file": (f"filler-{i}.png", png(seed=200 + i), "image/png")})
            if r.status_code == 503:
                break
            assert r.status_code == 202, r.text
        assert r.status_code == 503 and r.json()["code"] == "queue_full" and r.headers["retry-after"] == "1"
        errors = tmp_path / "retry.stderr"
        waiting = sh.start("retry", stderr=errors, **tenant)

        def refused() -> str:
            assert waiting.poll() is None, f"the retry block ended while the queue was full: {errors.read_text()}"
            return errors.read_text() if "503" in errors.read_text() else ""

        seen = _wait("the 503", refused, timeout=20)
        assert re.search(r"^503 queue_full: retrying in 1 s$", seen, re.MULTILINE), seen
    finally:
        pool.worker.send_signal(signal.SIGCONT)
    out, err = waiting.communicate(timeout=30)
    assert waiting.returncode == 0, err
    assert json.loads(out)["filename"] == "scan-3.png"

    # -- signed requests: the function, a signed upload and a signed read, for a tenant that requires them
    other.create_tenant("acme-signed", require_signature=True)
    signed_key = other.issue_key("acme-signed")
    unsigned = http.get("/v1/stats", headers={"Authorization": f"Bearer {signed_key.api_key}"})
    assert unsigned.status_code == 401 and unsigned.json()["code"] == "signature_required"
    stats, upload, read = json_lines(sh.run("signing", "signed-upload", OCRFLEET_KEY=signed_key.api_key,
                                            OCRFLEET_SIGNING_SECRET=signed_key.signing_secret))
    assert stats == {"tenant": "acme-signed", "documents": 0}
    assert upload["filename"] == "id-card.png" and upload["status"] == "queued"
    assert read == {"document_id": upload["document_id"], "status": read["status"]}
    assert read["status"] in ("queued", "processing", "succeeded")

    # -- revoking the key: listed, revoked, refused
    listing, revoked = json_lines(sh.run("revoke", KEY_ID=issued["key_id"]))
    assert listing == [{"key_id": issued["key_id"], "label": "ci", "revoked": False}]
    assert revoked == {"revoked": issued["key_id"]}
    refused = http.get(f"/v1/documents/{accepted['document_id']}",
                       headers={"Authorization": f"Bearer {issued['api_key']}"})
    assert refused.status_code == 401 and refused.json()["code"] == "revoked_api_key"
    http.close()
    print(f"\nMEASURED docs_curl_walk_s={time.monotonic() - started:.1f}")

