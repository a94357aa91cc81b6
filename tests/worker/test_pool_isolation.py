"""Pools that share one Redis: each pool's credentials reach its own keys and nothing else.

A Redis ACL user limited to ``~ocrfleet:{namespace}/{name}:*`` is enough for a worker to
consume, retry, reclaim and count a job; the same credentials get NOPERM on another pool's
queue, so one namespace's pods cannot read or drain another's documents.
"""

from __future__ import annotations

import pytest
import redis

from ocrfleet import keys
from ocrfleet.queue import Task, WorkQueue
from tests.conftest import redis_pool_user
from tests.worker.test_consumer import Harness, page_png

TEAM_A, TEAM_B = keys.pool("team-a", "ocr"), keys.pool("team-b", "ocr")


def test_a_pool_user_runs_its_pool_and_cannot_touch_another(redis_client, redis_server, store, tmp_path):
    other = WorkQueue(redis_client, TEAM_B)
    other.ensure_groups()
    other.enqueue(Task(document_id="b-secret", tenant="team-b", blob="sha256:" + "b" * 64, sha256="b" * 64))

    a = redis.Redis.from_url(redis_pool_user(redis_client, redis_server, TEAM_A))
    harness = Harness(a, store, tmp_path, pool=TEAM_A)
    for n in range(3):
        harness.submit(f"a{n}", page_png(n), tenant="team-a", job="statements")
    stats = harness.worker().run(until_idle=True)
    assert stats.succeeded == 3 and harness.progress.read("statements").succeeded == 3
    assert harness.queue.depth().total == 0

    intruder = WorkQueue(a, TEAM_B)
    for attempt in (lambda: intruder.depth(), lambda: a.xrange(keys.stream(TEAM_B)),
                    lambda: a.delete(keys.stream(TEAM_B)), lambda: a.keys("*")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()
    assert other.depth().total == 1, "team-b's document is untouched"
    a.close()
