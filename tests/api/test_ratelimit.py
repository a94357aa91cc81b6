"""The rate limiter's leases on a real Redis: replicas never let a tenant past its limit."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio
from ocrfleet_api.problems import Problem
from ocrfleet_api.ratelimit import RateLimiter, lease_size
from ocrfleet_dev.localproc import RedisServer


@pytest.fixture(scope="module")
def redis_url():
    with RedisServer(appendonly=False) as server:
        yield server.url


async def _admitted(limiters: list[RateLimiter], requests: int, limit: int) -> tuple[int, int]:
    admitted = refused = 0
    for i in range(requests):  # the replicas take turns, as a load balancer spreads a tenant
        try:
            await limiters[i % len(limiters)].check("acme", limit)
            admitted += 1
        except Problem as exc:
            assert exc.status == 429 and exc.code == "rate_limited"
            refused += 1
    return admitted, refused


def test_three_replicas_admit_exactly_the_limit_and_go_to_redis_once_a_lease(redis_url):
    async def run():
        client = redis.asyncio.Redis.from_url(redis_url)
        await client.flushdb()
        limiters = [RateLimiter(client, "pool", default_limit=10, window_s=3600) for _ in range(3)]
        calls = 0
        for limiter in limiters:  # count the lease steps each replica sends
            take = limiter._take

            async def counted(*args, _take=take):
                nonlocal calls
                calls += 1
                return await _take(*args)
            limiter._take = counted
        admitted, refused = await _admitted(limiters, 2_300, limit=2_000)
        await client.aclose()
        return admitted, refused, calls

    admitted, refused, calls = asyncio.run(run())
    assert (admitted, refused) == (2_000, 300), "every leased request spent, none past the limit"
    assert lease_size(2_000) == 20
    assert calls <= 2_000 // 20 + 300 + 3, f"{calls} Redis steps for 2,300 requests"


def test_one_process_reports_the_exact_remaining_quota(redis_url):
    async def run():
        client = redis.asyncio.Redis.from_url(redis_url)
        await client.flushdb()
        limiter = RateLimiter(client, "pool", default_limit=10, window_s=3600)
        remaining = [(await limiter.check("acme", 500)).remaining for _ in range(7)]
        await client.aclose()
        return remaining

    assert asyncio.run(run()) == [499, 498, 497, 496, 495, 494, 493]
