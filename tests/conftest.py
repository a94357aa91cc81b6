"""Fixtures shared by the fast tests: real Redis and PostgreSQL on free loopback ports.

Both servers start once per test session; each test gets a clean database / Redis db.
"""

from __future__ import annotations

import hashlib

import pytest
import redis
from sqlalchemy import text

from ocrfleet.localproc import PostgresServer, RedisServer
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
    from e2e.cluster import build_tools
    from ocrfleet.localproc import ObjectStoreServer

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
