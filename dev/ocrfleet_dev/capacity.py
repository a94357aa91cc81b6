"""A capacity plan: how many workers a pool holds hour by hour for a day's traffic, by simulation.

``ocrfleet plan`` feeds a day of arrivals (pages a day, an hourly profile, a peak factor such as a
loan platform's month-end 3x) through the scaling ocrfleet really does, in 5-second steps:

- the pool's HPA as the operator renders it (:func:`ocrfleet_operator.builders.worker_hpa` over
  the OcrCluster with the CRD's defaults): its min/max, its average-value target of documents per
  worker and its scale-up and scale-down behaviour, applied every 15 s the way Kubernetes' HPA
  controller does (desired = ceil(depth / target), a 10 % tolerance, the scale-down
  stabilization window, the rate-limiting policies);
- the operator's own steps to and from zero (:func:`ocrfleet_operator.decisions.scale_override`);
- workers that serve only ``startup_s`` after they were added (pod start and model load), each
  at the measured ``pages_per_s``, the queue served first in first out.

It prints per hour the pages that arrived, the workers held (mean and max), the queue wait p95
and the backlog left, and for the day the worker-hours (GPU-hours with one GPU a worker). What
is assumed (the profile, pages per document, the per-worker rate when no benchmark measured
it) is printed with the result. Standard library plus the operator's package.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ocrfleet_operator import builders, decisions, images
from ocrfleet_operator.settings import OperatorSettings

from ocrfleet_dev.kubeobjects import defaulted

STEP_S = 5  # the operator's reconcile interval
HPA_SYNC_S = 15  # the HPA controller's default sync period
TOLERANCE = 0.1  # the HPA controller's default tolerance

#: Share of a day's pages per hour (UTC+8 business day of a lending platform: applications and
#: statements arrive in office hours, a tail in the evening, little at night). An assumption.
LOAN_PLATFORM_HOURS = (1, 1, 1, 1, 1, 1, 2, 3, 6, 8, 9, 9, 7, 8, 9, 9, 8, 6, 4, 3, 2, 2, 1, 1)


@dataclass(frozen=True)
class Workload:
    pages_per_day: float
    peak_factor: float = 1.0
    pages_per_document: float = 1.5
    hours: Sequence[float] = LOAN_PLATFORM_HOURS

    def documents_per_s(self, hour: int) -> float:
        share = self.hours[hour] / sum(self.hours)
        return self.pages_per_day * self.peak_factor * share / 3600 / self.pages_per_document


@dataclass
class Hour:
    pages: float = 0.0
    worker_seconds: float = 0.0
    max_workers: int = 0
    waits: list[tuple[float, float]] = field(default_factory=list)  # (wait s, at most; documents)
    backlog_documents: float = 0.0

    def wait_p95(self) -> float | None:
        return weighted_quantile(self.waits, 0.95)


@dataclass
class Plan:
    hours: list[Hour]
    pages_per_s: float
    hpa: dict

    @property
    def worker_hours(self) -> float:
        return sum(h.worker_seconds for h in self.hours) / 3600

    def wait_p95(self) -> float | None:
        return weighted_quantile([w for h in self.hours for w in h.waits], 0.95)


def weighted_quantile(samples: Sequence[tuple[float, float]], q: float) -> float | None:
    """The ``q`` quantile of values weighted by counts: ``[(value, count), ...]``."""
    total = sum(n for _, n in samples)
    if total <= 0:
        return None
    seen = 0.0
    for value, n in sorted(samples):
        seen += n
        if seen >= q * total:
            return value
    return max(v for v, _ in samples)


def pool(spec: Mapping) -> dict:
    """The OcrCluster as the operator renders it: CRD defaults, then the operator's images."""
    body = {"apiVersion": f"{builders.GROUP}/{builders.VERSION}", "kind": "OcrCluster",
            "metadata": {"name": "plan", "namespace": "plan", "uid": "plan", "generation": 1},
            "spec": copy.deepcopy(dict(spec))}
    return images.with_defaults(defaulted(body, "ocrclusters"), OperatorSettings())


class Hpa:
    """Kubernetes' HPA controller over one AverageValue external metric, with ``behavior``."""

    def __init__(self, spec: Mapping) -> None:
        self.min, self.max = spec["minReplicas"], spec["maxReplicas"]
        self.target = float(spec["metrics"][0]["external"]["target"]["averageValue"])
        self.up, self.down = spec["behavior"]["scaleUp"], spec["behavior"]["scaleDown"]
        self.recommendations: deque[tuple[float, int]] = deque()  # (time, desired)
        self.changes: deque[tuple[float, int]] = deque()  # (time, replicas added (+) or removed (-))

    def desired(self, now: float, current: int, depth: float) -> int:
        if current == 0:
            return 0  # the HPA does nothing at zero replicas: the operator's step
        ratio = depth / (self.target * current)
        raw = current if abs(ratio - 1) <= TOLERANCE else math.ceil(depth / self.target)
        # stabilization: the lowest recommendation of the scale-up window, the highest of the
        # scale-down window, the current count kept between them
        self.recommendations.append((now, raw))
        window = max(self.up["stabilizationWindowSeconds"], self.down["stabilizationWindowSeconds"])
        while self.recommendations[0][0] < now - window:
            self.recommendations.popleft()
        up = min(r for t, r in self.recommendations if t >= now - self.up["stabilizationWindowSeconds"])
        down = max(r for t, r in self.recommendations if t >= now - self.down["stabilizationWindowSeconds"])
        wanted = min(max(current, up), down)
        # rate limits, then the bounds
        if wanted > current:
            wanted = min(wanted, self._up_limit(now, current))
        elif wanted < current:
            wanted = max(wanted, self._down_limit(now, current))
        wanted = min(max(wanted, self.min), self.max)
        if wanted != current:
            self.changes.append((now, wanted - current))
        while self.changes and self.changes[0][0] < now - 3600:
            self.changes.popleft()
        return wanted

    def _within(self, now: float, period: float, sign: int) -> int:
        return sum(abs(n) for t, n in self.changes if t > now - period and n * sign > 0)

    def _up_limit(self, now: float, current: int) -> int:
        limits = []
        for policy in self.up["policies"]:
            start = current - self._within(now, policy["periodSeconds"], +1)
            step = math.ceil(start * policy["value"] / 100) if policy["type"] == "Percent" else policy["value"]
            limits.append(start + step)
        return max(limits) if self.up.get("selectPolicy", "Max") == "Max" else min(limits)

    def _down_limit(self, now: float, current: int) -> int:
        limits = []
        for policy in self.down["policies"]:
            start = current + self._within(now, policy["periodSeconds"], -1)
            step = math.floor(start * policy["value"] / 100) if policy["type"] == "Percent" else policy["value"]
            limits.append(start - step)
        return min(limits) if self.down.get("selectPolicy", "Max") == "Max" else max(limits)


def simulate(spec: Mapping, workload: Workload, *, pages_per_s: float, startup_s: float = 60.0) -> Plan:
    """One day (from midnight, the pool idle at its minimum) through the pool's scaling."""
    cluster = pool(spec)
    hpa_spec = builders.worker_hpa(cluster)["spec"]
    workers_spec = cluster["spec"]["workers"]
    hpa = Hpa(hpa_spec)
    day = datetime(2025, 3, 31, tzinfo=UTC)
    replicas = workers_spec["minReplicas"]
    ready_at: list[float] = [0.0] * replicas  # when each worker serves
    queue: deque[list[float]] = deque()  # [arrival time, documents]
    idle_since: datetime | None = None
    depth = 0.0  # documents in the queue: the sum over ``queue``
    hours = [Hour() for _ in range(24)]
    for tick in range(24 * 3600 // STEP_S):
        now = tick * STEP_S
        hour = hours[now // 3600]
        arriving = workload.documents_per_s(now // 3600) * STEP_S
        queue.append([now, arriving])
        depth += arriving
        hour.pages += arriving * workload.pages_per_document
        # serve: each ready worker drains pages_per_s, first in first out
        ready = sum(1 for t in ready_at if t <= now)
        capacity = ready * pages_per_s * STEP_S / workload.pages_per_document
        served = 0.0
        while queue and capacity > 1e-9:
            arrived, n = queue[0]
            taken = min(n, capacity)
            hour.waits.append((now - arrived + STEP_S, taken))  # at most: served by the end of this step
            capacity -= taken
            served += taken
            if taken >= n - 1e-9:
                queue.popleft()
            else:
                queue[0][1] = n - taken
        depth = max(depth - served, 0.0)
        # what the operator reads: waiting documents plus one in flight per busy worker
        seen = math.ceil(depth + min(ready, served) - 1e-9)
        # the operator's step to or from zero, then the HPA every sync period
        idle_since = decisions.next_idle_since(seen, idle_since, day + timedelta(seconds=now))
        override = decisions.scale_override(
            min_replicas=workers_spec["minReplicas"], current_replicas=replicas, queue_depth=seen,
            idle_since=idle_since, idle_before_zero=timedelta(seconds=workers_spec["idleSecondsBeforeScaleToZero"]),
            now=day + timedelta(seconds=now))
        target = override if override is not None else (
            hpa.desired(now, replicas, seen) if now % HPA_SYNC_S == 0 else replicas)
        if target > replicas:
            ready_at += [now + startup_s] * (target - replicas)
        elif target < replicas:
            ready_at = sorted(ready_at)[: target]  # the newest (least useful) pods go first
        replicas = target
        hour.worker_seconds += replicas * STEP_S
        hour.max_workers = max(hour.max_workers, replicas)
        hour.backlog_documents = max(depth, 0.0)
    return Plan(hours=hours, pages_per_s=pages_per_s, hpa=hpa_spec)


def render(plan: Plan, workload: Workload, *, title: str) -> str:
    lines = [title, f"{'hour':>4} {'pages':>9} {'workers mean':>12} {'max':>4} {'wait p95 s':>10} {'backlog docs':>12}"]
    for i, h in enumerate(plan.hours):
        p95 = h.wait_p95()
        lines.append(f"{i:>4} {h.pages:>9,.0f} {h.worker_seconds / 3600:>12.1f} {h.max_workers:>4} "
                     f"{'-' if p95 is None else f'{p95:,.0f}':>10} {h.backlog_documents:>12,.0f}")
    p95 = plan.wait_p95()
    lines.append(f"day: {sum(h.pages for h in plan.hours):,.0f} pages, {plan.worker_hours:,.1f} worker-hours "
                 f"(GPU-hours at one GPU a worker), peak {max(h.max_workers for h in plan.hours)} workers "
                 f"(max {plan.hpa['maxReplicas']}), queue wait p95 {'-' if p95 is None else f'{p95:,.0f} s'} "
                 f"(at most, in {STEP_S} s steps), "
                 f"{plan.hours[-1].backlog_documents:,.0f} documents left at midnight")
    return "\n".join(lines)


def rate_for_peak(workload: Workload, max_workers: int) -> float:
    """Pages/s a worker needs for ``max_workers`` to keep up with the busiest hour."""
    busiest = max(workload.documents_per_s(h) for h in range(24)) * workload.pages_per_document
    return busiest / max_workers


def measured_rate(record: Mapping) -> tuple[float, str]:
    """The one-worker pages/s of a ``bench.pipeline_bench`` record, and where it was measured."""
    one = record["configurations"]["1w_batching_on"]
    machine = record["machine"]
    return one["pages_per_s"], (f"measured by {record['command']} on {record['when'][:10]} "
                                f"({machine['cpus']} CPU cores, {one['triton_settings']['kind']} Triton)")


def as_json(plan: Plan) -> dict:
    return {"pages_per_s_per_worker": plan.pages_per_s, "worker_hours": round(plan.worker_hours, 2),
            "wait_p95_s": plan.wait_p95(),
            "hours": [{"hour": i, "pages": round(h.pages), "workers_mean": round(h.worker_seconds / 3600, 2),
                       "workers_max": h.max_workers, "wait_p95_s": h.wait_p95(),
                       "backlog_documents": round(h.backlog_documents)} for i, h in enumerate(plan.hours)]}
