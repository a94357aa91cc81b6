"""What the handlers share, created once at start-up and kept in kopf's ``memo``.

Clients live here, never in module globals: the Kubernetes client, one Redis client per
URL, the status writer and the registry of queues the metrics adapter reads.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import redis

from ocrfleet import keys
from ocrfleet.progress import JobProgress
from ocrfleet.queue import WorkQueue
from ocrfleet_operator import stores
from ocrfleet_operator.kube import Kube
from ocrfleet_operator.settings import OperatorSettings
from ocrfleet_operator.status import StatusWriter

log = logging.getLogger(__name__)

URL_MAX_AGE_S = 60.0
"""How long a pool's Redis URL (with a password from a Secret) is used before it is read again."""
SEQUENCE_MAX_AGE_S = 1.0
"""A pool's progress sequence is read at most this often, for all its jobs together."""
FULL_TICK_EVERY_S = 30.0
"""A Running job whose counters stand still is ticked in full this often (:func:`ocrfleet_operator.jobs.tick`)
while its pool finishes documents: the pool's rate and the job's place and ETA move."""
SETTLED_AFTER_S = 90.0
"""A pool whose progress sequence stood still this long (past the 60 s window of its rate) has
settled: its waiting jobs' status cannot change but by urgent work arriving ahead of them."""
SETTLED_FULL_TICK_EVERY_S = 300.0
"""A waiting job of a settled pool is ticked in full this often."""


class Feeder:
    """Feeds OcrJobs on threads of its own: at most ``workers`` at once, one feed per job at a time.

    A handler (kopf's thread) only hands the feed over and returns, so a job of 10,000 URLs
    never holds a handler thread while it goes in; the next tick finds it still feeding and
    hands nothing over twice.
    """

    def __init__(self, workers: int = 2) -> None:
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="ocrjob-feed")
        self._busy: set[str] = set()
        self._lock = threading.Lock()

    def submit(self, key: str, feed: Callable[[], object]) -> bool:
        """Start ``feed`` for job ``key`` unless it is feeding already; returns whether it started."""
        with self._lock:
            if key in self._busy:
                return False
            self._busy.add(key)

        def run() -> None:
            try:
                feed()
            except Exception:
                log.exception("feeding OcrJob %s failed; the next tick tries again", key)
            finally:
                with self._lock:
                    self._busy.discard(key)

        self._pool.submit(run)
        return True

    def busy(self, key: str) -> bool:
        with self._lock:
            return key in self._busy

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@dataclass
class Runtime:
    settings: OperatorSettings
    kube: Kube
    status: StatusWriter
    _redis: dict[str, redis.Redis] = field(default_factory=dict)
    _clusters: dict[tuple[str, str], tuple[str, str, float]] = field(default_factory=dict)
    """(ns, name) -> (Redis URL, the spec.redis it was read for, when): a managed pool's URL
    holds a password read from a Secret, so it is read again only when spec.redis changes or
    after :data:`URL_MAX_AGE_S`, not on every job tick."""
    _bodies: dict[tuple[str, str], tuple[dict | None, float]] = field(default_factory=dict)
    """(ns, name) -> (the OcrCluster as its handlers last saw it, when); None once it was deleted"""
    _quiet: dict[str, tuple[int | None, float]] = field(default_factory=dict)
    """job uid -> (the pool's progress sequence when it was last seen standing still, its last full tick)"""
    _sequences: dict[str, tuple[int, float, float]] = field(default_factory=dict)
    """pool -> (its progress sequence, when it was read, when it was first seen at that value)"""
    feeder: Feeder = field(default_factory=Feeder)
    _job_locks: dict[str, threading.Lock] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def create(cls, settings: OperatorSettings, kube: Kube | None = None) -> Runtime:
        kube = kube or Kube.from_config(field_manager=settings.field_manager)
        return cls(
            settings=settings,
            kube=kube,
            status=StatusWriter(kube, min_interval=settings.status_min_interval),
        )

    def close(self) -> None:
        self.feeder.close()
        for client in self._redis.values():
            client.close()
        self.kube.close()

    # -- Redis per cluster ---------------------------------------------------------------------

    def redis_url(self, cluster: Mapping) -> str:
        """The cluster's Redis: spec.redis.url, the Secret it names, or the managed one's Service."""
        meta, spec_redis = cluster["metadata"], cluster["spec"]["redis"]
        if spec_redis.get("url"):
            return spec_redis["url"]
        ref = spec_redis.get("urlSecretRef")
        if ref:
            return self._secret_value(meta["namespace"], ref["name"], ref["key"])
        password = self._secret_value(meta["namespace"], stores.credentials_name(meta["name"]), stores.REDIS_PASSWORD)
        return stores.managed_redis_url(cluster, password)

    def _secret_value(self, namespace: str, name: str, key: str) -> str:
        secret = self.kube.get("Secret", namespace, name) or {}
        value = (secret.get("data") or {}).get(key)
        if not value:
            raise LookupError(f"Secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(value).decode()

    def redis_for_url(self, url: str) -> redis.Redis:
        with self._lock:
            if url not in self._redis:
                self._redis[url] = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
            return self._redis[url]

    def register_cluster(self, cluster: Mapping) -> None:
        meta = cluster["metadata"]
        key, wanted = (meta["namespace"], meta["name"]), json.dumps(cluster["spec"]["redis"], sort_keys=True)
        now = time.monotonic()
        with self._lock:
            known = self._clusters.get(key)
        if known is not None and known[1] == wanted and now - known[2] < URL_MAX_AGE_S:
            return
        url = self.redis_url(cluster)
        with self._lock:
            self._clusters[key] = (url, wanted, now)

    def forget_cluster(self, namespace: str, name: str) -> None:
        """The pool is deleted: its jobs see no cluster until its handlers see one again (a
        deleting pool still exists in the API server while its delete handler runs)."""
        with self._lock:
            self._clusters.pop((namespace, name), None)
            self._bodies[(namespace, name)] = (None, time.monotonic())

    def remember_cluster(self, cluster: Mapping) -> None:
        """The OcrCluster as its own handlers last saw it, for its jobs' ticks (:meth:`cluster`)."""
        meta = cluster["metadata"]
        with self._lock:
            self._bodies[(meta["namespace"], meta["name"])] = (copy.deepcopy(dict(cluster)), time.monotonic())

    def cluster(self, namespace: str, name: str) -> dict | None:
        """The OcrCluster a job names: as its handlers saw it within two reconcile intervals (they
        run every interval), else read from the API server; None once its delete handler ran."""
        with self._lock:
            known = self._bodies.get((namespace, name))
        if known is not None and (known[0] is None or time.monotonic() - known[1] < 2 * self.settings.reconcile_interval):
            return known[0]
        body = self.kube.get("OcrCluster", namespace, name)
        if body is not None:
            self.remember_cluster(body)
        return body

    def queue(self, namespace: str, name: str) -> WorkQueue | None:
        """The queue of a known cluster (None if the operator has not seen it)."""
        with self._lock:
            known = self._clusters.get((namespace, name))
        if known is None:
            return None
        url = known[0]
        return WorkQueue(self.redis_for_url(url), keys.pool(namespace, name), max_attempts=self.settings.max_attempts)

    def queue_for(self, cluster: Mapping) -> WorkQueue:
        self.register_cluster(cluster)
        meta = cluster["metadata"]
        queue = self.queue(meta["namespace"], meta["name"])
        assert queue is not None
        return queue

    def progress_for(self, cluster: Mapping) -> JobProgress:
        return JobProgress(self.queue_for(cluster).redis, pool_of(cluster))

    def progress_sequence(self, cluster: Mapping, now: float) -> int:
        """The pool's progress sequence, read at most once a second (of ``now``) for all its jobs."""
        key = pool_of(cluster)
        with self._lock:
            known = self._sequences.get(key)
        if known is not None and 0 <= now - known[1] < SEQUENCE_MAX_AGE_S:
            return known[0]
        seq = self.progress_for(cluster).sequence()
        with self._lock:
            since = known[2] if known is not None and known[0] == seq else now
            self._sequences[key] = (seq, now, since)
        return seq

    def _full_tick_every(self, pool: str, now: float) -> float:
        with self._lock:
            known = self._sequences.get(pool)
        settled = known is not None and now - known[2] >= SETTLED_AFTER_S
        return SETTLED_FULL_TICK_EVERY_S if settled else FULL_TICK_EVERY_S

    def job_quiet(self, uid: str, pool: str, seq: int, now: float) -> bool:
        """The job stood still when last read, nothing in its pool moved since, and its full tick
        is not due: nothing to read."""
        with self._lock:
            known = self._quiet.get(uid)
        return known is not None and known[0] == seq and now - known[1] < self._full_tick_every(pool, now)

    def full_tick_due(self, uid: str, pool: str, seq: int, now: float) -> bool:
        """The job stands still at ``seq``: whether its full tick is due (counted from now if so):
        every 30 s while the pool finishes documents, every 300 s once it settled."""
        every = self._full_tick_every(pool, now)
        with self._lock:
            last_full = self._quiet.get(uid, (None, float("-inf")))[1]
            due = now - last_full >= every
            self._quiet[uid] = (seq, now if due else last_full)
            return due

    def full_tick_done(self, uid: str, now: float) -> None:
        """The job moved: ticked in full now, and not quiet."""
        with self._lock:
            self._quiet[uid] = (None, now)

    def forget_job(self, uid: str) -> None:
        """The job is deleted: drop what its ticks kept here."""
        with self._lock:
            self._quiet.pop(uid, None)

    def job_lock(self, uid: str) -> threading.Lock:
        with self._lock:
            return self._job_locks.setdefault(uid, threading.Lock())


def pool_of(cluster: Mapping) -> str:
    """The cluster's identity in Redis keys (:func:`ocrfleet.keys.pool`)."""
    return keys.pool(cluster["metadata"]["namespace"], cluster["metadata"]["name"])
