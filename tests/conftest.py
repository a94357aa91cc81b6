"""Fixtures shared by the fast tests: real Redis and PostgreSQL on free loopback ports.

Both servers start once per test session; each test gets a clean database / Redis db.
"""

from __future__ import annotations

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
