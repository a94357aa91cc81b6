"""Pure decisions about an OcrCluster: scaling, conditions, drain order.

Each function maps what was observed (and what the spec wants) to what should be; none of
them does I/O, so the unit tests cover them case by case.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ocrfleet_operator import conditions
from ocrfleet_operator.conditions import Condition

# -- scaling ---------------------------------------------------------------------------------


def next_idle_since(queue_depth: int, idle_since: datetime | None, now: datetime) -> datetime | None:
    """When the queue became empty (None while it holds work)."""
    if queue_depth > 0:
        return None
    return idle_since or now


def scale_override(
    *,
    min_replicas: int,
    current_replicas: int,
    queue_depth: int,
    idle_since: datetime | None,
    idle_before_zero: timedelta,
    now: datetime,
) -> int | None:
    """Replicas the operator sets itself, or None to leave the worker count to the HPA.

    The HPA keeps 1..max and does nothing while its target is at 0. So the operator takes
    the two steps the HPA cannot: to zero (``minReplicas`` is 0 and the queue has been empty
    for ``idle_before_zero``) and from zero (work arrived, or ``minReplicas`` was raised).
    """
    if current_replicas == 0:
        if queue_depth > 0 or min_replicas > 0:
            return max(1, min_replicas)
        return None
    if (
        min_replicas == 0
        and queue_depth == 0
        and idle_since is not None
        and now - idle_since >= idle_before_zero
    ):
        return 0
    return None


def deletion_costs(worker_pods: Sequence[str], in_flight_by_consumer: Mapping[str, int]) -> dict[str, str]:
    """``controller.kubernetes.io/pod-deletion-cost`` per worker pod.

    A ReplicaSet that scales down removes the pods with the *lowest* cost first, so an idle
    worker costs 0 and a busy one costs its in-flight pages: scale-down takes idle workers
    and leaves the busy ones to finish.
    """
    return {pod: str(min(int(in_flight_by_consumer.get(pod, 0)), 1_000_000)) for pod in worker_pods}


# -- conditions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodProblem:
    """Why one pod of the cluster does not run: what the operator saw on it."""

    pod: str
    reason: str  # Unschedulable, ImagePullBackOff, ErrImagePull, CrashLoopBackOff, ...
    message: str
    since: datetime | None = None


# Reasons that make a cluster Degraded as soon as they are seen.
DEFINITE_FAILURES = frozenset(
    {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CrashLoopBackOff", "CreateContainerConfigError",
     "ModelLoadFailed"}
)
UNSCHEDULABLE_GRACE = timedelta(seconds=30)


@dataclass(frozen=True)
class ClusterObservation:
    """What the operator read about a cluster's children in one pass."""

    api_desired: int
    api_ready: int
    workers_desired: int
    workers_ready: int
    workers_updated: int
    workers_exist: bool = True
    api_exists: bool = True
    not_ready_since: datetime | None = None
    problems: Sequence[PodProblem] = field(default_factory=tuple)
    stores_desired: int = 0
    """Managed stores (Redis, database, object store) the pool runs; each one pod."""
    stores_ready: int = 0

    @property
    def all_ready(self) -> bool:
        return (self.workers_ready >= self.workers_desired and self.api_ready >= self.api_desired
                and self.stores_ready >= self.stores_desired)

    def summary(self) -> str:
        if not self.stores_desired:
            return (f"{self.workers_ready}/{self.workers_desired} workers and "
                    f"{self.api_ready}/{self.api_desired} API pods ready")
        return (f"{self.workers_ready}/{self.workers_desired} workers, {self.api_ready}/{self.api_desired} API "
                f"pods and {self.stores_ready}/{self.stores_desired} managed stores ready")


def next_not_ready_since(obs: ClusterObservation, previous: datetime | None, now: datetime) -> datetime | None:
    """When the workers stopped being all ready (None while they are)."""
    if obs.all_ready:
        return None
    return previous or now


def cluster_conditions(
    obs: ClusterObservation, *, startup_deadline: timedelta, now: datetime
) -> list[Condition]:
    """Ready, Progressing and Degraded from one observation (and kstatus's Reconciling and Stalled
    mirroring Progressing and Degraded).

    Degraded wins over an endless Progressing: a definite pod failure (image pull, crash
    loop, a model that does not load) at once, an unschedulable pod after a short grace, and
    any other lack of readiness once the start-up deadline has passed.
    """
    degraded = _degraded(obs, startup_deadline=startup_deadline, now=now)
    if not obs.workers_exist or not obs.api_exists:
        missing = ", ".join(n for n, ok in (("API", obs.api_exists), ("workers", obs.workers_exist)) if not ok)
        ready = Condition("Ready", "False", "Creating", f"creating {missing}")
        progressing = Condition("Progressing", "True", "Creating", f"creating {missing}")
    elif obs.all_ready:
        reason = "ScaledToZero" if obs.workers_desired == 0 else "AllReplicasReady"
        ready = Condition("Ready", "True", reason, obs.summary())
        progressing = Condition("Progressing", "False", "Stable", "")
    else:
        message = obs.summary()
        ready = Condition("Ready", "False", degraded.reason if degraded else "NotAllReplicasReady", message)
        progressing = (
            Condition("Progressing", "False", "Degraded", degraded.message)
            if degraded
            else Condition("Progressing", "True", "ScalingOrRollingOut", message)
        )
    degraded_condition = (
        Condition("Degraded", "True", degraded.reason, degraded.message)
        if degraded
        else Condition("Degraded", "False", "AsExpected", "")
    )
    return [ready, progressing, degraded_condition,
            *conditions.kstatus_pair(reconciling=progressing, stalled=degraded_condition)]


@dataclass(frozen=True)
class _Why:
    reason: str
    message: str


def _degraded(obs: ClusterObservation, *, startup_deadline: timedelta, now: datetime) -> _Why | None:
    for p in obs.problems:
        if p.reason in DEFINITE_FAILURES:
            return _Why(p.reason, f"pod {p.pod}: {p.message}")
    for p in obs.problems:
        if p.reason == "Unschedulable" and (p.since is None or now - p.since >= UNSCHEDULABLE_GRACE):
            return _Why("Unschedulable", f"pod {p.pod}: {p.message}")
    if obs.not_ready_since is not None and now - obs.not_ready_since >= startup_deadline:
        return _Why(
            "StartupDeadlineExceeded",
            f"not all pods ready after {int(startup_deadline.total_seconds())} s ({obs.summary()})",
        )
    return None


def pod_problems(pod: Mapping, now: datetime) -> list[PodProblem]:
    """What keeps one pod (as the API returns it) from running, if anything."""
    name = pod.get("metadata", {}).get("name", "?")
    status = pod.get("status") or {}
    problems = []
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False" \
                and cond.get("reason") == "Unschedulable":
            problems.append(PodProblem(name, "Unschedulable", cond.get("message", ""),
                                       _parse_time(cond.get("lastTransitionTime"))))
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in DEFINITE_FAILURES:
            problems.append(PodProblem(
                name, waiting["reason"], f"container {cs.get('name')}: {waiting.get('message', waiting['reason'])}"))
    return problems


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
