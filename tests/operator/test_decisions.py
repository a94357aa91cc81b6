"""Scaling, conditions and drain order of an OcrCluster, case by case."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from ocrfleet_operator.conditions import Condition
from ocrfleet_operator.conditions import merge as merge_conditions
from ocrfleet_operator.decisions import (
    ClusterObservation,
    PodProblem,
    cluster_conditions,
    deletion_costs,
    next_idle_since,
    next_not_ready_since,
    pod_problems,
    scale_override,
)

NOW = datetime(2025, 1, 31, 12, 0, tzinfo=UTC)
IDLE = timedelta(seconds=300)


def override(min_replicas, current, depth, idle_for=None):
    idle_since = None if idle_for is None else NOW - timedelta(seconds=idle_for)
    return scale_override(min_replicas=min_replicas, current_replicas=current, queue_depth=depth,
                          idle_since=idle_since, idle_before_zero=IDLE, now=NOW)


@pytest.mark.parametrize(
    ("min_replicas", "current", "depth", "idle_for", "expected"),
    [
        (0, 0, 0, 1000, None),   # at zero, nothing to do: stay
        (0, 0, 1, None, 1),      # work arrived: from zero to one, the HPA takes over
        (0, 0, 500, None, 1),    # even a flood starts at one; the HPA scales 1..N
        (2, 0, 0, None, 2),      # minimum raised from zero
        (0, 3, 0, 299, None),    # empty, but not long enough
        (0, 1, 0, 300, 0),       # empty for the idle period: to zero
        (0, 1, 0, None, None),   # empty just now (idle_since unknown yet)
        (0, 1, 4, None, None),   # busy: the HPA decides
        (1, 1, 0, 9999, None),   # minimum 1 never goes to zero
        (3, 5, 100, None, None),
    ],
)
def test_scale_override(min_replicas, current, depth, idle_for, expected):
    assert override(min_replicas, current, depth, idle_for) == expected


def test_idle_since_starts_when_the_queue_empties_and_resets_on_work():
    earlier = NOW - timedelta(seconds=30)
    assert next_idle_since(0, None, NOW) == NOW
    assert next_idle_since(0, earlier, NOW) == earlier
    assert next_idle_since(1, earlier, NOW) is None


def test_deletion_cost_keeps_busy_workers():
    costs = deletion_costs(["w-a", "w-b", "w-c"], {"w-b": 3, "gone": 9})
    assert costs == {"w-a": "0", "w-b": "3", "w-c": "0"}


def obs(**kw):
    base = dict(api_desired=2, api_ready=2, workers_desired=2, workers_ready=2, workers_updated=2)
    return ClusterObservation(**(base | kw))


def by_type(conditions):
    return {c.type: c for c in conditions}


def conds(o, deadline=600):
    return by_type(cluster_conditions(o, startup_deadline=timedelta(seconds=deadline), now=NOW))


def test_all_ready():
    c = conds(obs())
    assert (c["Ready"].status, c["Ready"].reason) == ("True", "AllReplicasReady")
    assert c["Progressing"].status == "False"
    assert c["Degraded"].status == "False"


def test_scaled_to_zero_is_ready():
    c = conds(obs(workers_desired=0, workers_ready=0, workers_updated=0))
    assert (c["Ready"].status, c["Ready"].reason) == ("True", "ScaledToZero")


def test_starting_is_progressing_not_degraded():
    c = conds(obs(workers_ready=1, not_ready_since=NOW - timedelta(seconds=20)))
    assert c["Ready"].status == "False"
    assert (c["Progressing"].status, c["Progressing"].reason) == ("True", "ScalingOrRollingOut")
    assert c["Degraded"].status == "False"


def test_missing_children_are_being_created():
    c = conds(obs(workers_exist=False))
    assert (c["Ready"].status, c["Ready"].reason) == ("False", "Creating")


def test_startup_deadline_turns_progressing_into_degraded():
    c = conds(obs(workers_ready=0, not_ready_since=NOW - timedelta(seconds=601)))
    assert (c["Degraded"].status, c["Degraded"].reason) == ("True", "StartupDeadlineExceeded")
    assert c["Progressing"].status == "False"
    assert c["Ready"].reason == "StartupDeadlineExceeded"


@pytest.mark.parametrize("reason", ["ImagePullBackOff", "ErrImagePull", "CrashLoopBackOff"])
def test_definite_pod_failures_degrade_at_once(reason):
    problem = PodProblem("pool-worker-1", reason, "container triton: back-off pulling image")
    c = conds(obs(workers_ready=1, not_ready_since=NOW, problems=[problem]))
    assert (c["Degraded"].status, c["Degraded"].reason) == ("True", reason)
    assert "pool-worker-1" in c["Degraded"].message


def test_unschedulable_degrades_after_a_grace():
    young = PodProblem("w", "Unschedulable", "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                       since=NOW - timedelta(seconds=5))
    old = PodProblem("w", "Unschedulable", young.message, since=NOW - timedelta(seconds=31))
    assert conds(obs(workers_ready=1, problems=[young]))["Degraded"].status == "False"
    c = conds(obs(workers_ready=1, problems=[old]))
    assert (c["Degraded"].reason, c["Degraded"].status) == ("Unschedulable", "True")
    assert "Insufficient nvidia.com/gpu" in c["Degraded"].message


@pytest.mark.parametrize("observation, reconciling, stalled", [
    (obs(), "False", "False"),
    (obs(workers_exist=False), "True", "False"),
    (obs(workers_ready=1, not_ready_since=NOW), "True", "False"),
    (obs(workers_ready=0, not_ready_since=NOW - timedelta(seconds=601)), "False", "True"),
], ids=["ready", "creating", "scaling", "degraded"])
def test_pools_carry_the_conditions_kstatus_reads(observation, reconciling, stalled):
    """kstatus (Flux, kpt) reads Reconciling and Stalled: a pool coming up is InProgress, a
    Degraded one Failed (a wait stops at once), a Ready one Current."""
    c = conds(observation)
    assert (c["Reconciling"].status, c["Stalled"].status) == (reconciling, stalled)
    assert c["Stalled"].reason == c["Degraded"].reason


def test_not_ready_since_tracks_readiness():
    t0 = NOW - timedelta(seconds=10)
    assert next_not_ready_since(obs(), t0, NOW) is None
    assert next_not_ready_since(obs(workers_ready=0), None, NOW) == NOW
    assert next_not_ready_since(obs(workers_ready=0), t0, NOW) == t0


def test_merge_conditions_keeps_transition_time_until_status_flips():
    before = [{"type": "Ready", "status": "False", "reason": "X", "lastTransitionTime": "2025-01-01T00:00:00Z"}]
    same = merge_conditions(before, [Condition("Ready", "False", "Y", "m")], generation=3, now=NOW)
    assert same[0]["lastTransitionTime"] == "2025-01-01T00:00:00Z"
    assert same[0]["reason"] == "Y" and same[0]["observedGeneration"] == 3
    flipped = merge_conditions(before, [Condition("Ready", "True", "Z")], generation=3, now=NOW)
    assert flipped[0]["lastTransitionTime"] == "2025-01-31T12:00:00Z"


def test_pod_problems_read_from_a_pod():
    pod = {
        "metadata": {"name": "pool-worker-abc"},
        "status": {
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                            "message": "0/3 nodes", "lastTransitionTime": "2025-01-31T11:59:00Z"}],
            "containerStatuses": [
                {"name": "triton", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}},
                {"name": "worker", "state": {"running": {}}},
            ],
        },
    }
    problems = pod_problems(pod, NOW)
    assert [(p.reason, p.since) for p in problems] == [
        ("Unschedulable", datetime(2025, 1, 31, 11, 59, tzinfo=UTC)),
        ("ImagePullBackOff", None),
    ]
    assert problems[1].message == "container triton: not found"
