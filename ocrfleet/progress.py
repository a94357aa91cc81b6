"""Per-job progress counters in Redis: workers write them, the operator folds them into status.

Each document is counted exactly once however many times it is retried or reclaimed: the
counter moves only when the document id first enters the job's *done* set (one Lua step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ocrfleet import keys

if TYPE_CHECKING:
    import redis

_RECORD_OUTCOME = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
redis.call('HINCRBY', KEYS[1], 'pages', tonumber(ARGV[3]))
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', tonumber(ARGV[4]) - 600)
return 1
"""


@dataclass(frozen=True)
class JobCounts:
    """What a job's status shows."""

    total: int = 0
    enqueued: int = 0
    succeeded: int = 0
    failed: int = 0
    pages: int = 0

    @property
    def done(self) -> int:
        return self.succeeded + self.failed

    @property
    def in_flight(self) -> int:
        """Enqueued but not finished: waiting in the queue or being processed."""
        return max(self.enqueued - self.done, 0)


class JobProgress:
    """Reads and writes the counters of one pool's jobs."""

    def __init__(self, client: redis.Redis, cluster: str) -> None:
        self.redis = client
        self.cluster = cluster
        self._record = client.register_script(_RECORD_OUTCOME)

    def set_total(self, job: str, total: int) -> None:
        self.redis.hset(keys.job_progress(self.cluster, job), "total", total)

    def record_enqueued(self, job: str, n: int = 1) -> None:
        self.redis.hincrby(keys.job_progress(self.cluster, job), "enqueued", n)

    def record_outcome(self, job: str, document_id: str, *, succeeded: bool, pages: int = 0,
                       now: float) -> bool:
        """Count a document's final outcome once; returns False if it was counted before."""
        counted = self._record(
            keys=[keys.job_progress(self.cluster, job), keys.job_done(self.cluster, job),
                  keys.throughput(self.cluster)],
            args=[document_id, "succeeded" if succeeded else "failed", pages, now, f"{document_id}:{now}"],
        )
        return bool(counted)

    def record_source_error(self, job: str, message: str) -> None:
        """The job's source cannot be listed; the operator fails the job with this message."""
        self.redis.set(keys.job_source_error(self.cluster, job), message)

    def source_error(self, job: str) -> str:
        value = self.redis.get(keys.job_source_error(self.cluster, job))
        return value.decode() if isinstance(value, bytes) else (value or "")

    def read(self, job: str) -> JobCounts:
        raw = self.redis.hgetall(keys.job_progress(self.cluster, job))
        data = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
        return JobCounts(**{k: data.get(k, 0) for k in JobCounts.__dataclass_fields__})

    def pages_per_second(self, *, now: float, window: float = 60.0) -> float:
        """Documents finished per second over the last ``window`` seconds, pool-wide."""
        n = self.redis.zcount(keys.throughput(self.cluster), now - window, now)
        return n / window

    def forget(self, job: str) -> None:
        """Remove a job's counters (after its TTL)."""
        self.redis.delete(keys.job_progress(self.cluster, job), keys.job_done(self.cluster, job),
                          keys.job_source_error(self.cluster, job))
