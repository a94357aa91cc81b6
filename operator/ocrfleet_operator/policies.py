"""What a pool may run and who may reach it (pure): the operator's pod policy and the pool's
NetworkPolicies.

**Pod policy.** An OcrCluster's author picks images and tolerations, and the operator creates
the pods. The operator's settings bound that choice: every image of every rendered pod must
start with one of ``allowed_image_prefixes`` and every toleration's key must be in
``allowed_toleration_keys`` (an empty list allows any). A pool that asks for more is not
rendered at all; its status says what was refused (:func:`violations`).

**Network.** Every pool gets NetworkPolicies (:func:`network_policies`): the API takes
connections on its port from anywhere (it is the pool's front door) and on its metrics port
from pods of the cluster only; workers take none; the
managed Redis, PostgreSQL and object store take connections only from the pool's own API and
worker pods — Redis also from the operator, which enqueues OcrJobs, and with ``autoscaler: keda``
from KEDA's operator, which reads the stream lengths. They bind where the
cluster's network plugin enforces NetworkPolicy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ocrfleet_operator import stores
from ocrfleet_operator.meta import (
    API_METRICS_PORT,
    TRITON_METRICS_PORT,
    WORKER_METRICS_PORT,
    metadata,
    selector_labels,
)

OPERATOR_POD = {"app.kubernetes.io/name": "ocrfleet", "app.kubernetes.io/component": "operator"}
"""The labels of the operator's pod (the chart's selector labels)."""


def _pod_specs(children: Iterable[Mapping]) -> Iterable[tuple[str, Mapping]]:
    for child in children:
        template = child.get("spec", {}).get("template")
        if template:
            yield f"{child['kind']}/{child['metadata']['name']}", template["spec"]


def violations(children: Iterable[Mapping], *, allowed_image_prefixes: Iterable[str] = (),
               allowed_toleration_keys: Iterable[str] = ()) -> list[str]:
    """What the rendered children ask for that the operator's policy does not allow."""
    prefixes, keys = tuple(allowed_image_prefixes), set(allowed_toleration_keys)
    found = []
    for where, spec in _pod_specs(children):
        for c in [*spec.get("initContainers", []), *spec.get("containers", [])]:
            if prefixes and not c["image"].startswith(prefixes):
                found.append(f"{where} container {c['name']}: image {c['image']!r} is not under an allowed "
                             f"prefix ({', '.join(prefixes)})")
        for t in spec.get("tolerations", []):
            if keys and t.get("key") not in keys:
                found.append(f"{where}: toleration of {t.get('key')!r} is not allowed ({', '.join(sorted(keys))})")
    return found


KEDA_OPERATOR_POD = {"app.kubernetes.io/name": "keda-operator"}
"""The label of KEDA's operator pods (KEDA's own Helm chart and manifests set it)."""


def _policy(cluster: Mapping, component: str, ingress: list[dict[str, Any]]) -> dict[str, Any]:
    name = f"{cluster['metadata']['name']}-{component}"
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(cluster, name, component),
        "spec": {"podSelector": {"matchLabels": selector_labels(cluster["metadata"]["name"], component)},
                 "policyTypes": ["Ingress"], "ingress": ingress},
    }


def network_policies(cluster: Mapping) -> list[dict[str, Any]]:
    pool = cluster["metadata"]["name"]
    port = cluster["spec"]["api"]["port"]
    own = [{"podSelector": {"matchLabels": {**selector_labels(pool, "api")}}},
           {"podSelector": {"matchLabels": {**selector_labels(pool, "worker")}}}]
    metrics = {"from": [{"namespaceSelector": {}}], "ports": [{"protocol": "TCP", "port": API_METRICS_PORT}]}
    worker_metrics = {"from": [{"namespaceSelector": {}}],
                      "ports": [{"protocol": "TCP", "port": p} for p in (WORKER_METRICS_PORT, TRITON_METRICS_PORT)]}
    out = [_policy(cluster, "api", [{"ports": [{"protocol": "TCP", "port": port}]}, metrics]),
           _policy(cluster, "worker", [worker_metrics])]
    spec = cluster["spec"]
    operator = {"namespaceSelector": {}, "podSelector": {"matchLabels": OPERATOR_POD}}
    # with autoscaler keda, KEDA's operator reads the stream lengths (its chart labels its pods so)
    keda = [{"namespaceSelector": {}, "podSelector": {"matchLabels": KEDA_OPERATOR_POD}}] \
        if spec["workers"]["autoscaler"] == "keda" else []
    for managed, component, store_port, extra in (
            (stores.redis_managed(spec), "redis", stores.REDIS_PORT, [operator, *keda]),
            (stores.database_managed(spec), "database", stores.POSTGRES_PORT, []),
            (stores.documents_managed(spec), "objects", stores.S3_PORT, [])):
        if managed:
            out.append(_policy(cluster, component, [{"from": [*own, *extra],
                                                     "ports": [{"protocol": "TCP", "port": store_port}]}]))
    return out

