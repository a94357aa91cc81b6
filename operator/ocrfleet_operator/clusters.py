"""Reconciling one OcrCluster: apply its children, observe them, scale to/from zero, status.

The I/O half of the cluster logic; every decision is delegated to :mod:`.builders` and
:mod:`.decisions`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from ocrfleet import keys
from ocrfleet.queue import QueueDepth
from ocrfleet_operator import builders, decisions, stores
from ocrfleet_operator.kube import KubeError
from ocrfleet_operator.runtime import Runtime

log = logging.getLogger(__name__)

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
SCALER_MANAGER = "ocrfleet-scaler"


def ensure_child(rt: Runtime, desired: Mapping, *, create_with_replicas: int | None = None) -> str:
    """Create the child if missing, re-apply it if it drifted; returns what was done."""
    meta = desired["metadata"]
    live = rt.kube.get(desired["kind"], meta["namespace"], meta["name"])
    if live is None:
        if create_with_replicas is not None:
            body = {**desired, "spec": {"replicas": create_with_replicas, **desired["spec"]}}
            try:
                rt.kube.create(body)
                return "created"
            except KubeError as exc:
                if exc.status != 409:
                    raise
        rt.kube.apply(desired)
        return "created"
    if builders.drifted(desired, live):
        rt.kube.apply(desired)
        return "repaired"
    return "unchanged"


def ensure_credentials(rt: Runtime, cluster: Mapping) -> str:
    """The pool's credentials Secret: created once with random values, never rewritten."""
    meta = cluster["metadata"]
    if rt.kube.get("Secret", meta["namespace"], stores.credentials_name(meta["name"])) is not None:
        return "unchanged"
    try:
        rt.kube.create(stores.new_credentials(cluster))
    except KubeError as exc:
        if exc.status != 409:  # another reconcile created it first: keep theirs
            raise
        return "unchanged"
    return "created"


def apply_children(rt: Runtime, cluster: Mapping) -> dict[str, str]:
    """Every child of the cluster, created or brought back to its spec."""
    outcome = {f"Secret/{stores.credentials_name(cluster['metadata']['name'])}": ensure_credentials(rt, cluster)}
    rt.register_cluster(cluster)
    worker = builders.worker_name(cluster["metadata"]["name"])
    for child in builders.cluster_children(cluster):
        initial = (builders.initial_worker_replicas(cluster)
                   if child["kind"] == "Deployment" and child["metadata"]["name"] == worker else None)
        outcome[f"{child['kind']}/{child['metadata']['name']}"] = ensure_child(
            rt, child, create_with_replicas=initial)
    return outcome


def repair_child(rt: Runtime, cluster: Mapping, kind: str, name: str) -> str:
    """Bring one child back after someone deleted or edited it."""
    worker = builders.worker_name(cluster["metadata"]["name"])
    for child in builders.cluster_children(cluster):
        if child["kind"] == kind and child["metadata"]["name"] == name:
            initial = builders.initial_worker_replicas(cluster) if kind == "Deployment" and name == worker else None
            return ensure_child(rt, child, create_with_replicas=initial)
    return "not-a-child"


def _parse(ts: str | None) -> datetime | None:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")) if ts else None


def _ts(t: datetime | None) -> str | None:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ") if t else None


def tick(rt: Runtime, cluster: Mapping, *, now: datetime | None = None) -> dict:
    """Observe the cluster, take the scale steps the HPA cannot, write its status.

    Returns the status written (or that would have been, when unchanged).
    """
    now = now or datetime.now(UTC)
    meta, spec = cluster["metadata"], cluster["spec"]
    ns, name = meta["namespace"], meta["name"]
    previous = rt.status.known(meta["uid"], cluster.get("status"))
    workers = spec["workers"]

    depth = _queue_depth(rt, cluster)
    worker_dep = rt.kube.get("Deployment", ns, builders.worker_name(name))
    api_dep = rt.kube.get("Deployment", ns, builders.api_name(name))
    current = (worker_dep or {}).get("spec", {}).get("replicas", 0)

    idle_since = decisions.next_idle_since(depth.total if depth else 1, _parse(previous.get("idleSince")), now)
    if worker_dep is not None and depth is not None:
        target = decisions.scale_override(
            min_replicas=workers["minReplicas"], current_replicas=current, queue_depth=depth.total,
            idle_since=idle_since, idle_before_zero=timedelta(seconds=workers["idleSecondsBeforeScaleToZero"]),
            now=now)
        if target is not None and target != current:
            log.info("scaling %s/%s workers %d -> %d (queue depth %d)", ns, name, current, target, depth.total)
            rt.kube.merge_patch("Deployment", ns, builders.worker_name(name), {"spec": {"replicas": target}},
                                sub="scale", field_manager=SCALER_MANAGER)
            current = target

    managed = [c["metadata"]["name"] for c in stores.managed_children(cluster) if c["kind"] == "StatefulSet"]
    stores_ready = sum(1 for s in managed
                       if ((rt.kube.get("StatefulSet", ns, s) or {}).get("status") or {}).get("readyReplicas", 0) >= 1)
    pods = rt.kube.list("Pod", ns, label_selector=f"{builders.CLUSTER_LABEL}={name}")
    problems = [p for pod in pods for p in decisions.pod_problems(pod, now)]
    if depth is not None:
        _set_deletion_costs(rt, cluster, pods)

    obs = decisions.ClusterObservation(
        api_desired=(api_dep or {}).get("spec", {}).get("replicas", 0),
        api_ready=(api_dep or {}).get("status", {}).get("readyReplicas", 0),
        workers_desired=current,
        workers_ready=(worker_dep or {}).get("status", {}).get("readyReplicas", 0),
        workers_updated=(worker_dep or {}).get("status", {}).get("updatedReplicas", 0),
        workers_exist=worker_dep is not None,
        api_exists=api_dep is not None,
        problems=problems,
        stores_desired=len(managed),
        stores_ready=stores_ready,
    )
    not_ready_since = decisions.next_not_ready_since(obs, _parse(previous.get("notReadySince")), now)
    obs = decisions.ClusterObservation(**{**obs.__dict__, "not_ready_since": not_ready_since})
    conditions = decisions.cluster_conditions(
        obs, startup_deadline=timedelta(seconds=workers["startupDeadlineSeconds"]), now=now)
    status = {
        "observedGeneration": meta.get("generation"),
        "workers": {"desired": obs.workers_desired, "ready": obs.workers_ready},
        "api": {"ready": obs.api_ready, "endpoint": builders.api_endpoint(cluster)},
        "queue": ({"depth": depth.total, "waiting": depth.waiting, "inFlight": depth.in_flight}
                  if depth else previous.get("queue", {})),
        "idleSince": _ts(idle_since),
        "notReadySince": _ts(not_ready_since),
        "conditions": decisions.merge_conditions(
            previous.get("conditions") or [], conditions, generation=meta.get("generation", 0), now=now),
    }
    urgent = _condition_states(previous.get("conditions")) != _condition_states(status["conditions"]) \
        or previous.get("observedGeneration") != status["observedGeneration"]
    rt.status.write("OcrCluster", ns, name, meta["uid"], previous, status, urgent=urgent)
    return status


def _condition_states(conditions) -> dict:
    return {c.get("type"): (c.get("status"), c.get("reason")) for c in conditions or []}


def _queue_depth(rt: Runtime, cluster: Mapping) -> QueueDepth | None:
    try:
        return rt.queue_for(cluster).depth()
    except Exception as exc:  # Redis away: report what we can, keep the cluster's pods alone
        log.warning("queue depth of %s unavailable: %s", cluster["metadata"]["name"], exc)
        return None


def _set_deletion_costs(rt: Runtime, cluster: Mapping, pods: list[dict]) -> None:
    """Mark idle workers cheap to delete so a scale-down takes them first."""
    workers = [p for p in pods if p["metadata"].get("labels", {}).get(builders.COMPONENT_LABEL) == "worker"
               and not p["metadata"].get("deletionTimestamp")]
    if len(workers) < 2:
        return
    queue = rt.queue_for(cluster)
    in_flight: dict[str, int] = {}
    for stream in queue.streams:
        try:
            summary = queue.redis.xpending(stream, keys.CONSUMER_GROUP)
        except Exception:
            continue
        for consumer in summary.get("consumers") or []:
            cname = consumer["name"].decode() if isinstance(consumer["name"], bytes) else consumer["name"]
            in_flight[cname] = in_flight.get(cname, 0) + int(consumer["pending"])
    costs = decisions.deletion_costs([p["metadata"]["name"] for p in workers], in_flight)
    for pod in workers:
        pname = pod["metadata"]["name"]
        if (pod["metadata"].get("annotations") or {}).get(DELETION_COST) != costs[pname]:
            rt.kube.merge_patch("Pod", pod["metadata"]["namespace"], pname,
                                {"metadata": {"annotations": {DELETION_COST: costs[pname]}}})
