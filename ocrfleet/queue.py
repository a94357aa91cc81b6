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

A worker that holds a message for long (a slow document, a dependency outage it waits out)
:meth:`~WorkQueue.extend`\\ s its claim (XCLAIM ... JUSTID resets the idle time without
counting a delivery), so a live worker's message is never reclaimed. An entry that is not a
task (written by hand, by another release, truncated) is moved to the dead-letter stream with
the reason as soon as it is read or reclaimed, so it never reaches, let alone crashes, a worker.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

from redis import exceptions as redis_errors

from ocrfleet import keys
from ocrfleet.progress import QUEUE_MARK

if TYPE_CHECKING:
    import redis


class MalformedTask(ValueError):
    """A stream entry that does not describe a task."""


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
    """The OcrJob (``namespace.name``) of the document, or the API batch or CLI run that submitted
    it: what its outcome is counted under (:class:`~ocrfleet.progress.JobProgress`)."""
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
        """The task an entry describes; :class:`MalformedTask` (saying what is wrong) otherwise."""
        try:
            task = cls._parse(fields)
        except (KeyError, ValueError, TypeError, UnicodeDecodeError) as exc:
            what = f"missing field {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
            raise MalformedTask(f"not a task ({what})") from None
        if not task.document_id or not task.tenant:
            raise MalformedTask("not a task (empty document_id or tenant)")
        if task.kind not in ("document", "listing") or task.priority not in keys.PRIORITIES:
            raise MalformedTask(f"not a task (kind {task.kind!r}, priority {task.priority!r})")
        if not all(isinstance(m, str) for m in task.mask_fields):
            raise MalformedTask("not a task (mask_fields is not a list of names)")
        return task

    @classmethod
    def _parse(cls, fields: dict) -> Task:
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

    @property
    def attempt(self) -> int:
        """Which try of the document this is: the task's explicit tries plus its deliveries to
        workers that died before finishing it (the one attempt count, stored with the document)."""
        return self.task.attempt + self.deliveries - 1


@dataclass(frozen=True)
class QueueDepth:
    """Waiting entries and entries in flight (delivered, not yet acked)."""

    waiting: int
    in_flight: int

    @property
    def total(self) -> int:
        """What the autoscaler scales on: busy workers must not be scaled away."""
        return self.waiting + self.in_flight


def queue_depth_commands(pipe, cluster: str):
    """Queue on ``pipe`` (sync or asyncio, non-transactional) what the depth is read from: each
    priority stream's length and its consumer group's pending count. Run it with
    ``execute(raise_on_error=False)`` and hand the replies to :func:`depth_from_replies`."""
    for priority in keys.PRIORITIES:
        name = keys.stream(cluster, priority)
        pipe.xlen(name)
        pipe.xpending(name, keys.CONSUMER_GROUP)
    return pipe


def depth_from_replies(replies: list) -> QueueDepth:
    """The one rule for queue depth. Acked entries are deleted, so a stream's length is waiting +
    in flight; its group's pending count is in flight (no group yet: nothing delivered)."""
    total = in_flight = 0
    for length, pending in zip(replies[::2], replies[1::2], strict=True):
        if isinstance(length, Exception):
            raise length
        total += int(length)
        if isinstance(pending, redis_errors.ResponseError) and "NOGROUP" in str(pending):
            continue
        if isinstance(pending, Exception):
            raise pending
        in_flight += int(pending["pending"])
    return QueueDepth(waiting=max(total - in_flight, 0), in_flight=in_flight)


# Adds the message only if its dedupe key was never seen: SADD and XADD (and, when a counter is
# named, its increment) in one step, so no crash can leave a message in without its count. The
# first message counted also marks its place in the stream: the stream's entries-added before it.
_ENQUEUE_ONCE = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return false end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
if KEYS[3] and redis.call('HINCRBY', KEYS[3], ARGV[2], 1) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'entries-added' then redis.call('HSET', KEYS[3], '""" + QUEUE_MARK + """', info[i + 1] - 1) end
  end
end
return id
"""

# Entries deleted before any worker took them are never counted by the group's entries-read when
# workers pass them, so every later place would read that many too high: count them as read now.
_PASSED_OVER = """
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  local read = f['entries-read'] or (f['last-delivered-id'] == '0-0' and 0)
  if f['name'] == ARGV[1] and read then
    redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], f['last-delivered-id'], 'ENTRIESREAD', read + tonumber(ARGV[2]))
  end
end
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
        self._passed_over = client.register_script(_PASSED_OVER)

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
        result = self._enqueue_once(keys=[name, dedupe_set], args=[task.document_id, "", *flat])
        return _text(result) if result else None

    def enqueue_all(self, tasks: list[Task]) -> None:
        """Add every task or none (one MULTI/EXEC): a request's documents go in together."""
        pipe = self.redis.pipeline(transaction=True)
        for task in tasks:
            pipe.xadd(keys.stream(self.cluster, task.priority), task.to_fields())
        pipe.execute()

    def enqueue_new(self, tasks: list[Task], *, dedupe_set: str,
                    count_in: tuple[str, str] | None = None) -> int:
        """Add each task whose document id is not in ``dedupe_set`` yet, in one round trip;
        returns how many went in. With ``count_in`` (a hash and its field), each task that goes
        in is counted there in the same step."""
        if not tasks:
            return 0
        counter, counter_field = ([count_in[0]], count_in[1]) if count_in else ([], "")
        pipe = self.redis.pipeline(transaction=False)
        for task in tasks:
            fields = task.to_fields()
            flat = [x for kv in fields.items() for x in kv]
            self._enqueue_once(keys=[keys.stream(self.cluster, task.priority), dedupe_set, *counter],
                               args=[task.document_id, counter_field, *flat], client=pipe)
        return sum(1 for added in pipe.execute() if added)

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
        out = []
        for stream, entries in reply or []:
            for mid, fields in entries:
                if fields:  # an entry deleted while pending comes back empty
                    task = self._task_or_bury(_text(stream), _text(mid), fields)
                    if task is not None:
                        out.append(Delivery(stream=_text(stream), message_id=_text(mid), task=task))
        return out

    def _task_or_bury(self, stream: str, message_id: str, fields: dict) -> Task | None:
        """The entry's task, or None after moving a malformed entry to the dead letters."""
        try:
            return Task.from_fields(fields)
        except MalformedTask as exc:
            raw = {_text(k)[:64]: _text(v)[:1024] for k, v in list(fields.items())[:32]}
            dead = {f"raw.{k}": v for k, v in raw.items()} | {"error": f"malformed entry {message_id}: {exc}",
                                                                "failed_at": str(time.time())}
            self._finish(stream, message_id, then=(keys.dead_letter(self.cluster), dead))
            return None

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
                task = self._task_or_bury(name, mid, fields)
                if task is None:
                    continue
                info = self.redis.xpending_range(name, keys.CONSUMER_GROUP, min=mid, max=mid, count=1)
                times = int(info[0]["times_delivered"]) if info else 1
                delivery = Delivery(stream=name, message_id=mid, task=task, deliveries=times)
                if delivery.attempt > self.attempts_of(task):
                    exhausted.append(delivery)
                else:
                    fresh.append(delivery)
        return fresh, exhausted

    def attempts_of(self, task: Task) -> int:
        """How many tries ``task`` gets: its own limit (an OcrJob's), else the pool's."""
        return task.max_attempts or self.max_attempts

    def extend(self, delivery: Delivery, consumer: str) -> bool:
        """Reset the message's idle time while ``consumer`` still works on it (a heartbeat).

        XCLAIM with JUSTID does not count a delivery. Returns False when the message is no
        longer this consumer's (it was reclaimed after all, or is gone).
        """
        claimed = self.redis.xclaim(delivery.stream, keys.CONSUMER_GROUP, consumer, 0, [delivery.message_id],
                                    justid=True)
        return bool(claimed)

    def ack(self, delivery: Delivery) -> None:
        """The task's outcome is stored: forget it (XACK and XDEL together)."""
        self._finish(delivery.stream, delivery.message_id)

    def retry(self, delivery: Delivery, error: str) -> bool:
        """Re-enqueue with ``attempt + 1``, or dead-letter after the last attempt.

        Returns True when the task was re-enqueued, False when it went to the dead letters.
        """
        if delivery.task.attempt >= self.attempts_of(delivery.task):
            self.dead_letter(delivery, error)
            return False
        task = replace(delivery.task, attempt=delivery.task.attempt + 1)
        self._finish(delivery.stream, delivery.message_id, then=(keys.stream(self.cluster, task.priority),
                                                                 task.to_fields()))
        return True

    def release(self, delivery: Delivery) -> None:
        """Hand the task back unspent (same attempt): its worker stops before it could try it."""
        task = delivery.task
        self._finish(delivery.stream, delivery.message_id, then=(keys.stream(self.cluster, task.priority),
                                                                 task.to_fields()))

    def dead_letter(self, delivery: Delivery, error: str) -> None:
        """Move the task to the dead-letter stream with its last error, and ack it."""
        fields = delivery.task.to_fields() | {"error": error, "failed_at": str(time.time())}
        self._finish(delivery.stream, delivery.message_id, then=(keys.dead_letter(self.cluster), fields))

    def _finish(self, stream: str, message_id: str, then: tuple[str, dict] | None = None) -> None:
        """Ack and delete an entry, adding ``then`` (stream, fields) in the same transaction."""
        pipe = self.redis.pipeline(transaction=True)
        if then is not None:
            pipe.xadd(*then)
        pipe.xack(stream, keys.CONSUMER_GROUP, message_id)
        pipe.xdel(stream, message_id)
        pipe.execute()

    # -- observers ---------------------------------------------------------------------------

    def depth(self) -> QueueDepth:
        """Waiting and in-flight entries over all priorities, in one round trip."""
        pipe = queue_depth_commands(self.redis.pipeline(transaction=False), self.cluster)
        return depth_from_replies(pipe.execute(raise_on_error=False))

    def waiting_ahead(self, priority: str, mark: int | None) -> int:
        """Entries waiting ahead of one: every waiting entry of the more urgent priorities, and of
        ``priority`` those the stream took in before it (``mark``: its entries-added then) that no
        worker has taken yet (the group's entries-read). Entries that arrive later never count,
        so a waiting job's position only moves when workers take work or urgent work arrives.
        Entries removed before any worker took them (:meth:`remove_waiting`) are counted as read
        at once, so jobs behind them are placed right and those between the group and them may
        read up to that many too low (never below 0) until workers pass them. Without a mark, or
        when Redis cannot tell how far the group has read, every waiting entry of ``priority``
        counts."""
        urgent = keys.PRIORITIES[:keys.PRIORITIES.index(priority)]
        pipe = self.redis.pipeline(transaction=False)
        for p in (*urgent, priority):
            pipe.xlen(keys.stream(self.cluster, p))
            pipe.xpending(keys.stream(self.cluster, p), keys.CONSUMER_GROUP)
        pipe.xinfo_groups(keys.stream(self.cluster, priority))
        replies = pipe.execute(raise_on_error=False)
        groups = replies.pop()
        ahead_urgent = depth_from_replies(replies[:-2]).waiting if urgent else 0
        own = depth_from_replies(replies[-2:]).waiting
        read = None
        if not isinstance(groups, Exception):
            group = next((g for g in groups if _text(g.get("name")) == keys.CONSUMER_GROUP), {})
            read = group.get("entries-read")
            if read is None and _text(group.get("last-delivered-id")) == "0-0":
                read = 0  # a group that has delivered nothing yet reports no entries-read
        if mark is None or read is None:
            return ahead_urgent + own
        return ahead_urgent + min(max(mark - int(read), 0), own)

    def in_flight_by_consumer(self) -> dict[str, int]:
        """Entries each consumer (a worker pod) holds, over all priorities."""
        held: dict[str, int] = {}
        for stream in self.streams:
            try:
                summary = self.redis.xpending(stream, keys.CONSUMER_GROUP)
            except redis_errors.ResponseError:  # no group yet: nothing delivered
                continue
            for consumer in summary.get("consumers") or []:
                name = _text(consumer["name"])
                held[name] = held.get(name, 0) + int(consumer["pending"])
        return held

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
                gone = int(self.redis.xdel(name, *doomed))
                self._passed_over(keys=[name], args=[keys.CONSUMER_GROUP, gone])
                removed += gone
                if dedupe_set is not None:
                    self.redis.srem(dedupe_set, *doomed.values())
        return removed


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
