"""The API under test: ``python -m ocrfleet_api`` as a child process, on real Redis and PostgreSQL.

The server starts once per session (as a user runs it, through uvicorn); every test gets an
empty database and Redis, an empty blob directory, and helpers to make tenants and keys.
Settings are tightened so caps are cheap to reach: 8 MiB per document, a queue bound of 50;
URL submissions may fetch from a local static site (:func:`document_site`). The server keeps
processed results in an in-process cache for a minute, so tests that look results up use
tenant names of their own.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psutil
import pytest
from ocrfleet_api import tables  # noqa: F401  (registers the API's tables on Base)
from ocrfleet_api.tenants import IssuedKey, TenantDirectory
from ocrfleet_dev.localproc import free_port

from ocrfleet import keys
from ocrfleet.store import DocumentRow, ResultStore

MASTER_KEY = "test-signing-master-key-0123456789abcdef"
MAX_UPLOAD = 8 * 1024 * 1024
QUEUE_BOUND = 50


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    blob_root: Path
    log: Path
    metrics_url: str = ""

    def rss(self) -> int:
        return psutil.Process(self.process.pid).memory_info().rss


@dataclass
class DocumentSite:
    """A plain HTTP server on loopback that URL submissions may fetch from."""

    root: Path
    url: str


@pytest.fixture(scope="session")
def document_site():
    root = Path(tempfile.mkdtemp(prefix="ocrfleet-site-"))
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield DocumentSite(root=root, url=f"http://127.0.0.1:{httpd.server_address[1]}/docs/")
    httpd.shutdown()
    shutil.rmtree(root, ignore_errors=True)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def api_env(redis_url: str, database_url: str, workdir: Path, port: int, site_url: str) -> dict[str, str]:
    """The test server's settings: tight caps, no key cache, a known signing key."""
    return {
        **os.environ,
        "OCRFLEET_REDIS_URL": redis_url,
        "OCRFLEET_DATABASE_URL": database_url,
        "OCRFLEET_BLOB_ROOT": str(workdir / "blobs"),
        "OCRFLEET_HOST": "127.0.0.1",
        "OCRFLEET_PORT": str(port),
        "OCRFLEET_METRICS_PORT": str(free_port()),
        "OCRFLEET_WORKERS": "1",
        "OCRFLEET_AUTH_CACHE_S": "0",
        "OCRFLEET_AUTH_FAILURE_LIMIT": "100000",  # every test comes from 127.0.0.1, many with bad keys on purpose
        "OCRFLEET_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
        "OCRFLEET_MAX_BATCH_BYTES": str(2 * MAX_UPLOAD),
        "OCRFLEET_MAX_BATCH_DOCUMENTS": "10",
        "OCRFLEET_MAX_PIXELS": "50000000",
        "OCRFLEET_MAX_PDF_PAGES": "50",
        "OCRFLEET_MAX_QUEUE_DEPTH": str(QUEUE_BOUND),
        "OCRFLEET_QUEUE_DEPTH_CACHE_S": "0",
        "OCRFLEET_SIGNING_MASTER_KEY": MASTER_KEY,
        "OCRFLEET_SIGNATURE_WINDOW_S": "60",
        "OCRFLEET_URL_FETCH_PREFIXES": json.dumps([site_url]),
    }


def launch_api(env: dict[str, str], workdir: Path) -> Server:
    """``python -m ocrfleet_api`` with ``env``, once it answers /healthz (or its log if it cannot)."""
    env = {k: v for k, v in env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    port = int(env["OCRFLEET_PORT"])
    log = workdir / "api.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ocrfleet_api"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, cwd=workdir)
    server = Server(url=f"http://127.0.0.1:{port}", process=proc, blob_root=workdir / "blobs", log=log,
                    metrics_url=f"http://127.0.0.1:{env['OCRFLEET_METRICS_PORT']}/metrics")
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the API exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(server.url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the API did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    return server


def stop_api(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(15)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="session")
def api_server(redis_server, postgres_server, document_site):
    workdir = Path(tempfile.mkdtemp(prefix="ocrfleet-api-test-"))
    server = launch_api(api_env(redis_server.url, postgres_server.url, workdir, free_port(), document_site.url),
                        workdir)
    yield server
    stop_api(server)
    shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class Api:
    """What a test needs: the server, an HTTP client, the store, Redis, and tenant helpers."""

    server: Server
    http: httpx.Client
    store: ResultStore
    redis: object
    directory: TenantDirectory

    def tenant(self, name: str, **options) -> IssuedKey:
        """A tenant and a key; it masks nothing unless ``mask_fields`` says (None: the server's default)."""
        options.setdefault("mask_fields", [])
        self.directory.create_tenant(name, **options)
        return self.directory.issue_key(name)

    @staticmethod
    def auth(key: IssuedKey | str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key if isinstance(key, str) else key.api_key}"}

    # -- what was kept ---------------------------------------------------------------------

    def blobs(self) -> list[Path]:
        return [p for p in self.server.blob_root.rglob("*") if p.is_file()]

    def document_rows(self) -> list[DocumentRow]:
        from sqlalchemy import select

        with self.store.session() as s:
            return list(s.scalars(select(DocumentRow)))

    def queued(self) -> int:
        return sum(int(self.redis.xlen(keys.stream("default", p))) for p in keys.PRIORITIES)

    def assert_nothing_stored(self) -> None:
        assert self.blobs() == [], "a refused request left a blob (or a temporary file) behind"
        assert self.document_rows() == [], "a refused request left a document row"
        assert self.queued() == 0, "a refused request was enqueued"


@pytest.fixture
def api(api_server, store, redis_client):
    shutil.rmtree(api_server.blob_root, ignore_errors=True)
    api_server.blob_root.mkdir(parents=True)
    with httpx.Client(base_url=api_server.url, timeout=60) as http:
        yield Api(server=api_server, http=http, store=store, redis=redis_client,
                  directory=TenantDirectory(store, MASTER_KEY))


def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> dict:
    """The response is an RFC 9457 problem with this status (and code)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"].startswith("https://")
    if code is not None:
        assert body["code"] == code, body
    return body


class PeakRss:
    """Samples the server's RSS every 10 ms while a block runs."""

    def __init__(self, server) -> None:
        self.server = server
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self):
        self.before = self.server.rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.server.rss())
            time.sleep(0.01)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.before
