"""What every pod of a pool carries: the pool-wide pod settings and a component's placement.

``spec.pods`` (labels, annotations, imagePullSecrets, serviceAccountName) applies to every pod
the pool runs: API, workers and managed stores. A component's own block (``spec.api``,
``spec.workers``, ``spec.storage``) places its pods: nodeSelector, tolerations, affinity,
topologySpreadConstraints and priorityClassName, each where it is set. The operator's labels and
annotations win over a user's of the same key (its selectors depend on them); the CRD refuses
user labels under ``ocrfleet.io/`` and ``app.kubernetes.io/`` so that never happens silently. The
service account's token is not mounted either way: a pod that needs a cloud identity gets it from
the platform's own injection (workload identity), not from the Kubernetes API.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PLACEMENT = ("nodeSelector", "affinity", "topologySpreadConstraints", "priorityClassName")
"""Fields of a component's block copied into its pod spec as they are, where they are set."""


def template(cluster: Mapping, labels: Mapping[str, str], pod_spec: dict[str, Any], placement: Mapping, *,
             tolerations: list[dict[str, Any]] | None = None,
             annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The pod template of one component: ``pod_spec`` placed by ``placement`` (its block of the
    spec), with the pool's pod settings; ``tolerations`` replaces the block's own when given."""
    pods = cluster["spec"].get("pods", {})
    spec = dict(pod_spec)
    for field in PLACEMENT:
        if placement.get(field):
            spec[field] = _copy(placement[field])
    chosen = placement.get("tolerations", []) if tolerations is None else tolerations
    if chosen:
        spec["tolerations"] = _copy(chosen)
    if pods.get("imagePullSecrets"):
        spec["imagePullSecrets"] = _copy(pods["imagePullSecrets"])
    if pods.get("serviceAccountName"):
        spec["serviceAccountName"] = pods["serviceAccountName"]
    metadata: dict[str, Any] = {"labels": {**pods.get("labels", {}), **labels}}
    if merged := {**pods.get("annotations", {}), **(annotations or {})}:
        metadata["annotations"] = merged
    return {"metadata": metadata, "spec": spec}


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
