"""The work queue: Redis Streams with one consumer group, at-least-once.

A message (:class:`Task`) names one document: its id, tenant, job, blob and hints. Its life:

1. :meth:`WorkQueue.enqueue` adds it to the pool's stream for its priority (optionally only
   once per dedupe key, so an operator that restarts never enqueues a document twice).
2. A worker :meth:`~WorkQueue.read`\\ s it; it is now *in flight* (pending in the group).
3. After the result is stored the worker :meth:`~WorkQueue.ack`\\ s it: XACK and XDEL in one
   transaction, so the stream only ever holds waiting and in-flight entries and its length
   *is* the queue depth the autoscaler needs.
4. A message whose worker died stays pending; :meth:`~WorkQueue.reclaim` (XAUTOCLAIM) hands it
   to a live worker once it has been idle for ``claim_idle_ms``.
5. A failed attempt is :meth:`~WorkQueue.retry`\\ d with ``attempt + 1``; after ``max_attempts``
   (explicit retries or deliveries to workers that died) it goes to the dead-letter stream with
   its last error.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

from redis import exceptions as redis_errors

from ocrfleet import keys

if TYPE_CHECKING:
    import redis


@dataclass(frozen=True)
class Task:
    """One document to process: what travels through the queue.

    ``blob``/``sha256`` name bytes already in the blob store (API uploads). A job's document
    comes as a ``source`` instead (:mod:`ocrfleet.sources`), fetched by the worker. A
    ``listing`` task carries a job's whole volume or S3 source (its ``spec.source`` as JSON):
    the worker that takes it lists the source and enqueues one document task per entry.
    """

    document_id: str
    tenant: str
    blob: str = ""
    sha256: str = ""
    job: str = ""
    namespace: str = ""
    filename: str = ""
    document_type: str = "auto"
    mask_fields: tuple[str, ...] = ()
    priority: str = "normal"
    attempt: int = 1
    enqueued_at: float = field(default_factory=time.time)
    source: str = ""
    kind: str = "document"
    """``document``, or ``listing`` (expands into document tasks)."""
    max_attempts: int = 0
    """Tries before the dead letters (an OcrJob's maxAttemptsPerDocument); 0: the queue's own."""

    def to_fields(self) -> dict[str, str]:
        data = asdict(self)
        data["mask_fields"] = json.dumps(list(self.mask_fields))
        return {k: str(v) for k, v in data.items()}

    @classmethod
    def from_fields(cls, fields: dict) -> Task:
        f = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
             for k, v in fields.items()}
        return cls(
            document_id=f["document_id"],
            tenant=f["tenant"],
            blob=f.get("blob", ""),
            sha256=f.get("sha256", ""),
            job=f.get("job", ""),
            namespace=f.get("namespace", ""),
            filename=f.get("filename", ""),
            document_type=f.get("document_type", "auto"),
            mask_fields=tuple(json.loads(f.get("mask_fields", "[]"))),
            priority=f.get("priority", "normal"),
            attempt=int(f.get("attempt", "1")),
            enqueued_at=float(f.get("enqueued_at", "0")),
            source=f.get("source", ""),
            kind=f.get("kind", "document"),
            max_attempts=int(f.get("max_attempts", "0")),
        )


@dataclass(frozen=True)
class Delivery:
    """A task handed to one consumer; ack, retry or dead-letter it exactly once."""

    stream: str
    message_id: str
    task: Task
    deliveries: int = 1


@dataclass(frozen=True)
class QueueDepth:
    """Waiting entries and entries in flight (delivered, not yet acked)."""

    waiting: int
    in_flight: int

    @property
    def total(self) -> int:
        """What the autoscaler scales on: busy workers must not be scaled away."""
        return self.waiting + self.in_flight


# Adds the message only if its dedupe key was never seen: SADD and XADD in one step.
_ENQUEUE_ONCE = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return false end
return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
"""


class WorkQueue:
    """One pool's queue. The Redis client is passed in (created at start-up by the caller)."""

    def __init__(
        self,
        client: redis.Redis,
        cluster: str,
        *,
        max_attempts: int = 3,
        claim_idle_ms: int = 60_000,
    ) -> None:
        self.redis = client
        self.cluster = cluster
        self.max_attempts = max_attempts
        self.claim_idle_ms = claim_idle_ms
        self.streams = [keys.stream(cluster, p) for p in keys.PRIORITIES]
        self._enqueue_once = client.register_script(_ENQUEUE_ONCE)

    # -- producers ---------------------------------------------------------------------------

    def ensure_groups(self) -> None:
        """Create the consumer group on every priority stream (idempotent)."""
        for name in self.streams:
            try:
                self.redis.xgroup_create(name, keys.CONSUMER_GROUP, id="0", mkstream=True)
            except redis_errors.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def enqueue(self, task: Task, *, dedupe_set: str | None = None) -> str | None:
        """Add a task; with ``dedupe_set``, only if its document id is not in that set yet.

        Returns the message id, or None when the dedupe set already held the document.
        """
        name = keys.stream(self.cluster, task.priority)
        fields = task.to_fields()
        if dedupe_set is None:
            return _text(self.redis.xadd(name, fields))
        flat = [x for kv in fields.items() for x in kv]
        result = self._enqueue_once(keys=[name, dedupe_set], args=[task.document_id, *flat])
        return _text(result) if result else None

    # -- consumers ---------------------------------------------------------------------------

    def read(self, consumer: str, *, count: int = 1, block_ms: int | None = None) -> list[Delivery]:
        """New tasks for ``consumer``, most urgent priority first.

        Each priority is tried in turn without waiting; when none has work and ``block_ms`` is
        given, one read waits on every priority at once, so a task of any priority wakes the
        worker at once (not after the wait runs out). That read may return up to ``count`` tasks
        of each priority that received some, most urgent first.
        """
        for name in self.streams:
            out = self._read(consumer, {name: ">"}, count, None)
            if out:
                return out
        if block_ms is None:
            return []
        urgency = {name: i for i, name in enumerate(self.streams)}
        out = self._read(consumer, dict.fromkeys(self.streams, ">"), count, block_ms)
        return sorted(out, key=lambda d: urgency[d.stream])

    def _read(self, consumer: str, streams: dict[str, str], count: int, block_ms: int | None) -> list[Delivery]:
        reply = self.redis.xreadgroup(keys.CONSUMER_GROUP, consumer, streams, count=count, block=block_ms)
        return [
            Delivery(stream=_text(stream), message_id=_text(mid), task=Task.from_fields(fields))
            for stream, entries in reply or []
            for mid, fields in entries
            if fields  # an entry deleted while pending comes back empty
        ]

    def reclaim(self, consumer: str, *, count: int = 10) -> tuple[list[Delivery], list[Delivery]]:
        """Take over tasks idle past ``claim_idle_ms`` (their worker died).

        Returns ``(to_process, exhausted)``: ``exhausted`` were delivered ``max_attempts``
        times already; the caller dead-letters them (a poison document that kills its worker
        must not kill every worker in turn).
        """
        fresh: list[Delivery] = []
        exhausted: list[Delivery] = []
        for name in self.streams:
            reply = self.redis.xautoclaim(
                name, keys.CONSUMER_GROUP, consumer, min_idle_time=self.claim_idle_ms, count=count
            )
            entries = reply[1]
            for mid, fields in entries:
                if not fields:
                    continue
                mid = _text(mid)
                info = self.redis.xpending_range(name, keys.CONSUMER_GROUP, min=mid, max=mid, count=1)
                times = int(info[0]["times_delivered"]) if info else 1
                task = Task.from_fields(fields)
                delivery = Delivery(stream=name, message_id=mid, task=task, deliveries=times)
                # Deliveries to dead workers count as attempts, on top of explicit retries.
                if task.attempt + times - 1 > self.attempts_of(task):
                    exhausted.append(delivery)
                else:
                    fresh.append(delivery)
        return fresh, exhausted

    def attempts_of(self, task: Task) -> int:
        """How many tries ``task`` gets: its own limit (an OcrJob's), else the pool's."""
        return task.max_attempts or self.max_attempts

    def ack(self, delivery: Delivery) -> None:
        """The task's outcome is stored: forget it (XACK and XDEL together)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.xack(delivery.stream, keys.CONSUMER_GROUP, delivery.message_id)
        pipe.xdel(delivery.stream, delivery.message_id)
        pipe.execute()

    def retry(self, delivery: Delivery, error: str) -> bool:
        """Re-enqueue with ``attempt + 1``, or dead-letter after the last attempt.

        Returns True when the task was re-enqueued, False when it went to the dead letters.
        """
        if delivery.task.attempt >= self.attempts_of(delivery.task):
            self.dead_letter(delivery, error)
            return False
        task = replace(delivery.task, attempt=delivery.task.attempt + 1)
        pipe = self.redis.pipeline(transaction=True)
        pipe.xadd(keys.stream(self.cluster, task.priority), task.to_fields())
        pipe.xack(delivery.stream, keys.CONSUMER_GROUP, delivery.message_id)
        pipe.xdel(delivery.stream, delivery.message_id)
        pipe.execute()
        return True

    def dead_letter(self, delivery: Delivery, error: str) -> None:
        """Move the task to the dead-letter stream with its last error, and ack it."""
        fields = delivery.task.to_fields() | {"error": error, "failed_at": str(time.time())}
        pipe = self.redis.pipeline(transaction=True)
        pipe.xadd(keys.dead_letter(self.cluster), fields)
        pipe.xack(delivery.stream, keys.CONSUMER_GROUP, delivery.message_id)
        pipe.xdel(delivery.stream, delivery.message_id)
        pipe.execute()

    # -- observers ---------------------------------------------------------------------------

    def depth(self) -> QueueDepth:
        """Waiting and in-flight entries over all priorities.

        Acked entries are deleted, so a stream's length is waiting + in flight.
        """
        pipe = self.redis.pipeline(transaction=False)
        for name in self.streams:
            pipe.xlen(name)
        lengths = pipe.execute()
        in_flight = 0
        for name in self.streams:
            with contextlib.suppress(redis_errors.ResponseError):  # no group yet: nothing delivered
                in_flight += int(self.redis.xpending(name, keys.CONSUMER_GROUP)["pending"])
        total = sum(int(n) for n in lengths)
        return QueueDepth(waiting=max(total - in_flight, 0), in_flight=in_flight)

    def dead_letters(self, count: int = 100) -> list[dict[str, str]]:
        """The most recent dead letters, newest first."""
        entries = self.redis.xrevrange(keys.dead_letter(self.cluster), count=count)
        return [{_text(k): _text(v) for k, v in fields.items()} for _mid, fields in entries]

    def remove_waiting(self, job: str, *, dedupe_set: str | None = None) -> int:
        """Delete a job's entries that no worker has taken yet; returns how many.

        With ``dedupe_set``, their document ids leave that set too, so they can be enqueued
        again later (a suspended job that resumes).
        """
        removed = 0
        for name in self.streams:
            pending = {
                _text(p["message_id"])
                for p in self.redis.xpending_range(name, keys.CONSUMER_GROUP, min="-", max="+", count=100_000)
            } if self.redis.exists(name) else set()
            doomed = {
                _text(mid): _text(fields.get(b"document_id", fields.get("document_id", b"")))
                for mid, fields in self.redis.xrange(name)
                if _text(fields.get(b"job", fields.get("job", b""))) == job and _text(mid) not in pending
            }
            if doomed:
                removed += int(self.redis.xdel(name, *doomed))
                if dedupe_set is not None:
                    self.redis.srem(dedupe_set, *doomed.values())
        return removed


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
