"""Every Redis key ocrfleet uses, in one place.

Every key of one processing pool (an OcrCluster) — its queue, job counters and the API's
per-tenant rate limits, idempotency answers, seen signatures and usage — has the prefix
``ocrfleet:{pool}:``, where the pool is ``namespace/name`` (:func:`pool`). Pools of the same
name in two namespaces, or several pools on one Redis, never share a key; a pool's keys can
be listed or removed together; and a Redis ACL user limited to ``~ocrfleet:{pool}:*``
(:func:`acl_pattern`) is all a pool's pods need, so pools sharing one Redis can be given
credentials that cannot read one another's queues.
"""

from __future__ import annotations

PRIORITIES = ("high", "normal", "low")
"""Queue priorities, most urgent first: a worker drains ``high`` before it reads ``normal``."""

CONSUMER_GROUP = "workers"
"""The one consumer group every worker of a pool joins."""


def pool(namespace: str, cluster: str) -> str:
    """A pool's identity in keys: ``namespace/name`` (just the name outside a cluster)."""
    return f"{namespace}/{cluster}" if namespace else cluster


def ocrjob(namespace: str, name: str) -> str:
    """An OcrJob's name in keys and queue messages: ``namespace.name`` (unique per namespace)."""
    return f"{namespace}.{name}"


def _prefix(pool: str) -> str:
    return f"ocrfleet:{pool}"


def acl_pattern(pool: str) -> str:
    """The Redis ACL key pattern that covers every key of ``pool`` and nothing else."""
    return f"~{_prefix(pool)}:*"


def stream(cluster: str, priority: str = "normal") -> str:
    """The work stream of a pool at one priority."""
    if priority not in PRIORITIES:
        raise ValueError(f"unknown priority {priority!r}; expected one of {', '.join(PRIORITIES)}")
    return f"{_prefix(cluster)}:stream:{priority}"


def dead_letter(cluster: str) -> str:
    """Where a message goes after its last attempt, with its last error."""
    return f"{_prefix(cluster)}:dead"


def job_progress(cluster: str, job: str) -> str:
    """A hash of per-job counters (total, succeeded, failed, ...) that workers increment."""
    return f"{_prefix(cluster)}:job:{job}:progress"


def job_done(cluster: str, job: str) -> str:
    """A set of the document ids of a job that reached a final state (counted exactly once)."""
    return f"{_prefix(cluster)}:job:{job}:done"


def job_enqueued(cluster: str, job: str) -> str:
    """A set of the document ids of a job already enqueued (the operator enqueues each once)."""
    return f"{_prefix(cluster)}:job:{job}:enqueued"


def job_completed(cluster: str, job: str) -> str:
    """How a finished OcrJob ended (phase, counts, its spec's digest), kept after the object is
    deleted, so the same job applied again (GitOps after its TTL) is not run twice."""
    return f"{_prefix(cluster)}:job:{job}:completed"


def job_source_error(cluster: str, job: str) -> str:
    """Why a job's source could not be listed (set by the worker that tried), for its status."""
    return f"{_prefix(cluster)}:job:{job}:source-error"


def progress_sequence(cluster: str) -> str:
    """A counter bumped with every change to any job's counters in the pool: the operator reads
    this one key to learn that nothing moved, instead of every job's counters."""
    return f"{_prefix(cluster)}:progress-seq"


def throughput(cluster: str) -> str:
    """A sorted set of recent completion timestamps, for pages/s and ETAs."""
    return f"{_prefix(cluster)}:throughput"


def rate_limit(cluster: str, tenant: str, window: int) -> str:
    """A tenant's request counter for one fixed rate-limit window."""
    return f"{_prefix(cluster)}:ratelimit:{tenant}:{window}"


def auth_failures(cluster: str, address: str, window: int) -> str:
    """Failed authentications from one client address in one fixed window (probes are limited)."""
    return f"{_prefix(cluster)}:authfail:{address}:{window}"


def idempotency(cluster: str, tenant: str, key: str) -> str:
    """The first answer to a tenant's request with this idempotency key."""
    return f"{_prefix(cluster)}:idempotency:{tenant}:{key}"


def signature_seen(cluster: str, tenant: str, signature: str) -> str:
    """Marks a request signature as used, for as long as its timestamp is acceptable (replays)."""
    return f"{_prefix(cluster)}:signature:{tenant}:{signature}"


def tenant_daily_stats(cluster: str, tenant: str, day: str) -> str:
    """A hash of a tenant's API counters for one UTC day (``YYYY-MM-DD``): cache checks, hits."""
    return f"{_prefix(cluster)}:stats:{tenant}:{day}"
