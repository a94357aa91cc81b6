"""Reconciling one OcrCluster: apply its children, observe them, scale to/from zero, status.

The I/O half of the cluster logic; every decision is delegated to :mod:`.builders` and
:mod:`.decisions`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from ocrfleet.queue import QueueDepth
from ocrfleet_operator import (
    builders,
    clusterstatus,
    conditions,
    decisions,
    images,
    metrics,
    policies,
    stores,
)
from ocrfleet_operator.conditions import Condition
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


def _children(rt: Runtime, cluster: Mapping) -> list[dict]:
    """What the pool renders to, with the images its spec leaves out taken from the operator's settings."""
    return builders.cluster_children(images.with_defaults(cluster, rt.settings))


def refusals(rt: Runtime, cluster: Mapping) -> list[str]:
    """What the pool asks for that the operator's pod policy does not allow (nothing is rendered then)."""
    return policies.violations(_children(rt, cluster),
                               allowed_image_prefixes=rt.settings.allowed_image_prefixes,
                               allowed_toleration_keys=rt.settings.allowed_toleration_keys)


def apply_children(rt: Runtime, cluster: Mapping) -> dict[str, str]:
    """Every child of the cluster, created or brought back to its spec (none when the pool is refused)."""
    refused = refusals(rt, cluster)
    if refused:
        return {"refused": "; ".join(refused)}
    outcome = {f"Secret/{stores.credentials_name(cluster['metadata']['name'])}": ensure_credentials(rt, cluster)}
    rt.register_cluster(cluster)
    worker = builders.worker_name(cluster["metadata"]["name"])
    for child in _children(rt, cluster):
        initial = (builders.initial_worker_replicas(cluster)
                   if child["kind"] == "Deployment" and child["metadata"]["name"] == worker else None)
        outcome[f"{child['kind']}/{child['metadata']['name']}"] = ensure_child(
            rt, child, create_with_replicas=initial)
    for kind, name in builders.replaced_autoscaling(cluster):
        if _delete_own(rt, cluster, kind, name):
            outcome[f"{kind}/{name}"] = "deleted"
    return outcome


def _delete_own(rt: Runtime, cluster: Mapping, kind: str, name: str) -> bool:
    """Delete the pool's child ``kind/name`` if it exists and this pool owns it."""
    live = rt.kube.get(kind, cluster["metadata"]["namespace"], name)
    owner = builders.owner_of(live) if live else None
    if owner is None or owner.get("uid") != cluster["metadata"]["uid"]:
        return False
    return rt.kube.delete(kind, cluster["metadata"]["namespace"], name)


def repair_child(rt: Runtime, cluster: Mapping, kind: str, name: str) -> str:
    """Bring one child back after someone deleted or edited it."""
    if refusals(rt, cluster):
        return "refused"
    worker = builders.worker_name(cluster["metadata"]["name"])
    for child in _children(rt, cluster):
        if child["kind"] == kind and child["metadata"]["name"] == name:
            initial = builders.initial_worker_replicas(cluster) if kind == "Deployment" and name == worker else None
            return ensure_child(rt, child, create_with_replicas=initial)
    return "not-a-child"


def tick(rt: Runtime, cluster: Mapping, *, now: datetime | None = None) -> dict:
    """Observe the cluster, take the scale steps the HPA cannot, write its status.

    Returns the status written (or that would have been, when unchanged).
    """
    rt.remember_cluster(cluster)  # its jobs' ticks read it from here, not from the API server
    with metrics.reconcile("OcrCluster"):
        status = _tick(rt, cluster, now=now or datetime.now(UTC))
    metrics.pool_conditions(cluster["metadata"]["namespace"], cluster["metadata"]["name"], status.get("conditions"))
    return status


def _tick(rt: Runtime, cluster: Mapping, *, now: datetime) -> dict:
    meta, spec = cluster["metadata"], cluster["spec"]
    ns, name = meta["namespace"], meta["name"]
    previous = rt.status.known(meta["uid"], cluster.get("status"))
    workers = spec["workers"]
    refused = refusals(rt, cluster)
    if refused:
        return _write_refused(rt, cluster, previous, refused, now)

    depth = _queue_depth(rt, cluster)
    metrics.queue_depth(ns, name, depth.total if depth else None)
    worker_dep = rt.kube.get("Deployment", ns, builders.worker_name(name))
    api_dep = rt.kube.get("Deployment", ns, builders.api_name(name))
    current = (worker_dep or {}).get("spec", {}).get("replicas", 0)

    idle_since = decisions.next_idle_since(depth.total if depth else 1, conditions.parse_time(previous.get("idleSince")), now)
    if worker_dep is not None and depth is not None and not builders.keda_mode(cluster):  # KEDA does 0 <-> 1
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
    status = clusterstatus.cluster_status(cluster, obs, depth, previous, now, idle_since=idle_since)
    urgent = _condition_states(previous.get("conditions")) != _condition_states(status["conditions"]) \
        or previous.get("observedGeneration") != status["observedGeneration"]
    rt.status.write("OcrCluster", ns, name, meta["uid"], previous, status, urgent=urgent)
    return status


def _write_refused(rt: Runtime, cluster: Mapping, previous: Mapping, refused: list[str], now: datetime) -> dict:
    meta = cluster["metadata"]
    message = "not rendered, the operator's policy refuses: " + "; ".join(refused)
    progressing = Condition("Progressing", "False", "PolicyViolation", message)
    degraded = Condition("Degraded", "True", "PolicyViolation", message)
    wanted = [Condition("Ready", "False", "PolicyViolation", message), progressing, degraded,
              *conditions.kstatus_pair(reconciling=progressing, stalled=degraded)]
    status = {"observedGeneration": meta.get("generation"),
              "conditions": conditions.merge(previous.get("conditions") or [], wanted,
                                             generation=meta.get("generation", 0), now=now)}
    rt.status.write("OcrCluster", meta["namespace"], meta["name"], meta["uid"], previous, status,
                    urgent=_condition_states(previous.get("conditions")) != _condition_states(status["conditions"]))
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
    in_flight = rt.queue_for(cluster).in_flight_by_consumer()
    costs = decisions.deletion_costs([p["metadata"]["name"] for p in workers], in_flight)
    for pod in workers:
        pname = pod["metadata"]["name"]
        if (pod["metadata"].get("annotations") or {}).get(DELETION_COST) != costs[pname]:
            rt.kube.merge_patch("Pod", pod["metadata"]["namespace"], pname,
                                {"metadata": {"annotations": {DELETION_COST: costs[pname]}}})
