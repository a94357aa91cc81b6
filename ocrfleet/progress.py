"""Per-job progress counters in Redis: workers write them, the operator folds them into status.

Each document is counted exactly once however many times it is retried or reclaimed: the
counter moves only when the document id first enters the job's *done* set (one Lua step).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from ocrfleet import keys
from ocrfleet.lifecycle import FAILED, SUCCEEDED

if TYPE_CHECKING:
    import redis

QUEUE_MARK = "queue_mark"
"""The field, in a job's progress hash, of how many entries its stream had taken in before the
job's first document (:meth:`ocrfleet.queue.WorkQueue.waiting_ahead`)."""

_RECORD_OUTCOME = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
redis.call('HINCRBY', KEYS[1], 'pages', tonumber(ARGV[3]))
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', tonumber(ARGV[4]) - 600)
redis.call('INCR', KEYS[4])
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
    listed: bool = False
    """The job's total is known (its source was listed); read with the counts, in one step."""
    queue_mark: int | None = None
    """Where the job's first document went into its stream (:meth:`ocrfleet.queue.WorkQueue.waiting_ahead`)."""

    @property
    def done(self) -> int:
        return self.succeeded + self.failed

    @property
    def in_flight(self) -> int:
        """Enqueued but not finished: waiting in the queue or being processed."""
        return max(self.enqueued - self.done, 0)


COMPLETION_KEPT_S = 30 * 86400
"""How long a finished job's completion is remembered after it ended."""


@dataclass(frozen=True)
class Completion:
    """How a finished job ended, remembered past its deletion (:meth:`JobProgress.completion`)."""

    spec_digest: str
    """The digest of the spec it ran (:func:`ocrfleet_operator.jobsource.spec_digest`)."""
    phase: str
    reason: str
    message: str
    counts: JobCounts
    uid: str
    completed_at: str


class JobProgress:
    """Reads and writes the counters of one pool's jobs."""

    def __init__(self, client: redis.Redis, cluster: str) -> None:
        self.redis = client
        self.cluster = cluster
        self._record = client.register_script(_RECORD_OUTCOME)

    def set_total(self, job: str, total: int) -> None:
        pipe = self.redis.pipeline()
        pipe.hset(keys.job_progress(self.cluster, job), "total", total)
        pipe.incr(keys.progress_sequence(self.cluster))
        pipe.execute()

    def enqueued_counter(self, job: str) -> tuple[str, str]:
        """The hash and field a job's enqueued count is kept in, for the queue to count each task
        in the step that enqueues it (:meth:`~ocrfleet.queue.WorkQueue.enqueue_new`)."""
        return keys.job_progress(self.cluster, job), "enqueued"

    def record_enqueued(self, job: str, n: int = 1) -> None:
        pipe = self.redis.pipeline()
        pipe.hincrby(keys.job_progress(self.cluster, job), "enqueued", n)
        pipe.incr(keys.progress_sequence(self.cluster))
        pipe.execute()

    def sequence(self) -> int:
        """The pool's progress sequence (:func:`ocrfleet.keys.progress_sequence`): it moves whenever a
        document of any job finishes, a job's total is set or its enqueued count is corrected;
        enqueueing new tasks does not move it (the operator reads counters while a job is fed)."""
        return int(self.redis.get(keys.progress_sequence(self.cluster)) or 0)

    def record_outcome(self, job: str, document_id: str, *, succeeded: bool, pages: int = 0,
                       now: float) -> bool:
        """Count a document's final outcome once; returns False if it was counted before."""
        counted = self._record(
            keys=[keys.job_progress(self.cluster, job), keys.job_done(self.cluster, job),
                  keys.throughput(self.cluster), keys.progress_sequence(self.cluster)],
            args=[document_id, str(SUCCEEDED if succeeded else FAILED), pages, now, f"{document_id}:{now}"],
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
        return JobCounts(total=data.get("total", 0), enqueued=data.get("enqueued", 0),
                         succeeded=data.get(SUCCEEDED, 0), failed=data.get(FAILED, 0),
                         pages=data.get("pages", 0), listed="total" in data, queue_mark=data.get(QUEUE_MARK))

    def pages_per_second(self, *, now: float, window: float = 60.0) -> float:
        """Documents finished per second over the last ``window`` seconds, pool-wide."""
        n = self.redis.zcount(keys.throughput(self.cluster), now - window, now)
        return n / window

    def record_completion(self, job: str, completion: Completion) -> None:
        """Remember how the job ended, for :data:`COMPLETION_KEPT_S`; kept when its counters go."""
        self.redis.set(keys.job_completed(self.cluster, job), json.dumps(asdict(completion)), ex=COMPLETION_KEPT_S)

    def completion(self, job: str) -> Completion | None:
        raw = self.redis.get(keys.job_completed(self.cluster, job))
        if raw is None:
            return None
        data = json.loads(raw)
        return Completion(**{**data, "counts": JobCounts(**data["counts"])})

    def forget_completion(self, job: str) -> None:
        self.redis.delete(keys.job_completed(self.cluster, job))

    def forget(self, job: str) -> None:
        """Remove a job's counters (after its TTL); its completion stays."""
        self.redis.delete(keys.job_progress(self.cluster, job), keys.job_done(self.cluster, job),
                          keys.job_source_error(self.cluster, job))
