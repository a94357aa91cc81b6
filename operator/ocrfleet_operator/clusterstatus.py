"""An OcrCluster's status from one observation (pure): workers, API, queue, timers, conditions.

:mod:`.clusters` observes the pool's children and its queue and writes what this returns
through :mod:`.status`; the Argo CD testdata are generated from the same function.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ocrfleet_operator import builders, conditions, decisions
from ocrfleet_operator.decisions import ClusterObservation

if TYPE_CHECKING:
    from ocrfleet.queue import QueueDepth


def cluster_status(cluster: Mapping, obs: ClusterObservation, depth: QueueDepth | None, previous: Mapping,
                   now: datetime, *, idle_since: datetime | None) -> dict:
    """The status to write; ``depth`` None means the pool's Redis did not answer (the last queue
    status is kept)."""
    meta, workers = cluster["metadata"], cluster["spec"]["workers"]
    not_ready_since = decisions.next_not_ready_since(obs, conditions.parse_time(previous.get("notReadySince")), now)
    obs = replace(obs, not_ready_since=not_ready_since)
    wanted = decisions.cluster_conditions(
        obs, startup_deadline=timedelta(seconds=workers["startupDeadlineSeconds"]), now=now)
    return {
        "observedGeneration": meta.get("generation"),
        "workers": {"desired": obs.workers_desired, "ready": obs.workers_ready},
        "api": {"ready": obs.api_ready, "endpoint": builders.api_endpoint(cluster)},
        "queue": ({"depth": depth.total, "waiting": depth.waiting, "inFlight": depth.in_flight}
                  if depth else previous.get("queue", {})),
        "idleSince": conditions.rfc3339(idle_since) if idle_since else None,
        "notReadySince": conditions.rfc3339(not_ready_since) if not_ready_since else None,
        "conditions": conditions.merge(
            previous.get("conditions") or [], wanted, generation=meta.get("generation", 0), now=now),
    }
