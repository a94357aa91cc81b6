"""Fixtures shared by the fast tests: real Redis and PostgreSQL on free loopback ports.

Both servers start once per test session; each test gets a clean database / Redis db.
"""

from __future__ import annotations

import contextlib
import hashlib

import pytest
import redis
from ocrfleet_dev.localproc import PostgresServer, RedisServer
from sqlalchemy import text

from ocrfleet.store import Base, ResultStore, make_engine


@pytest.fixture(scope="session")
def redis_server():
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_client(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture(scope="session")
def postgres_server():
    with PostgresServer() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server):
    """A PostgreSQL URL whose schema starts empty for every test."""
    engine = make_engine(postgres_server.url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public;"))
    engine.dispose()
    return postgres_server.url


@pytest.fixture
def store(postgres_url):
    engine = make_engine(postgres_url)
    result_store = ResultStore(engine)
    Base.metadata.create_all(engine)
    yield result_store
    engine.dispose()


@pytest.fixture(scope="session")
def object_store_server():
    """SeaweedFS's S3 gateway (built from its Go module by e2e/tools/build.sh, like the control plane)."""
    from ocrfleet_dev.localproc import ObjectStoreServer

    from e2e.cluster import build_tools

    with ObjectStoreServer(str(build_tools() / "weed")) as server:
        yield server


@pytest.fixture
def s3_blobs(object_store_server, tmp_path, request):
    """An S3 blob store in a bucket of its own (one per test)."""
    from ocrfleet.blobs import S3BlobStore

    bucket = "t-" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:20]
    return S3BlobStore.from_url(f"s3://{bucket}/blobs", endpoint=object_store_server.endpoint,
                                access_key=object_store_server.access_key,
                                secret_key=object_store_server.secret_key, staging=tmp_path)


def redis_pool_user(admin: redis.Redis, server, pool: str) -> str:
    """A Redis ACL user that may touch only ``pool``'s keys (:func:`ocrfleet.keys.acl_pattern`);
    returns its URL. This is how pools sharing one Redis are kept from each other's queues."""
    from ocrfleet import keys

    user = "pool-" + pool.replace("/", "-")
    password = f"{user}-password"
    admin.acl_setuser(user, enabled=True, reset=True, passwords=[f"+{password}"],
                      keys=[keys.acl_pattern(pool).removeprefix("~")], channels=["*"],
                      commands=["+@all", "-@admin", "-@dangerous"])
    return f"redis://{user}:{password}@127.0.0.1:{server.port}/0"


class CuttingProxy:
    """A loopback TCP proxy in front of a real server that drops the connection once the client
    has sent ``cut_after`` bytes (a network fault at a chosen point; the server is real)."""

    def __init__(self, port: int, cut_after: int) -> None:
        import socket
        import threading

        self.target, self.cut_after = port, cut_after
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.forwarded = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, src, dst, counted: bool) -> None:
        try:
            while data := src.recv(65536):
                if counted:
                    room = self.cut_after - self.forwarded
                    if room <= 0:
                        break
                    data = data[:room]
                    self.forwarded += len(data)
                dst.sendall(data)
                if counted and self.forwarded >= self.cut_after:
                    break
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.close()

    def close(self) -> None:
        self.listener.close()
