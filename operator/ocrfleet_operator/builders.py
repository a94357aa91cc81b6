"""Pure builders: an OcrCluster in, the manifests of its children out.

Nothing here talks to the API. Each function takes the cluster object as the API server
returns it (``metadata`` and a ``spec`` with the CRD's defaults already applied) and returns
plain dicts ready for server-side apply. The I/O lives in :mod:`.clusters`; the pool's
managed Redis, database and object store are built in :mod:`.stores`.

Children of a cluster ``NAME``:

========================  =====================================================================
``NAME-api``              Deployment and Service of the HTTP API
``NAME-worker``           Deployment: the queue consumer and Triton side by side, one GPU each
``NAME-worker``           HorizontalPodAutoscaler on the external metric ``ocrfleet_queue_depth``
``NAME-worker-metrics``   headless Service of the worker pods' Prometheus ports (worker, Triton)
``NAME-api``/``-worker``  PodDisruptionBudgets
========================  =====================================================================
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ocrfleet import keys
from ocrfleet_operator import pods, policies, stores
from ocrfleet_operator.meta import (  # noqa: F401 - re-exported: the names every child carries
    API_METRICS_PORT,
    CLUSTER_LABEL,
    COMPONENT_LABEL,
    GROUP,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    TRITON_METRICS_PORT,
    VERSION,
    WORKER_METRICS_PORT,
    labels,
    metadata,
    owner_reference,
    selector_labels,
)

QUEUE_DEPTH_METRIC = "ocrfleet_queue_depth"

TRITON_HTTP_PORT = 8000
TRITON_GRPC_PORT = 8001
RUN_DIR = "/run/ocrfleet"
DRAIN_FILE = f"{RUN_DIR}/drain"
BUSY_FILE = f"{RUN_DIR}/busy"
MODELS_DIR = "/models"
SHM_SIZE = "1Gi"
DATA_DIR = stores.DATA_DIR

# What the images offer (worker-image/Dockerfile, api-image/Dockerfile); tests/operator/
# test_contracts.py checks each against the real programs.
API_COMMAND = ("python", "-m", "ocrfleet_api")
API_READY_PATH = "/readyz"
API_LIVE_PATH = "/healthz"
WORKER_COMMAND = ("python3", "-m", "ocrfleet_worker")
MODEL_RENDER_COMMAND = ("python3", "-m", "ocrfleet_worker.triton_repository", "render")
TRITON_READY_PATH = "/v2/health/ready"
TRITON_LIVE_PATH = "/v2/health/live"

Manifest = dict[str, Any]

#: The images run as this user (their Dockerfiles' ``USER``); volumes are group-writable for it.
IMAGE_USER = 10001
POD_SECURITY = {
    "runAsNonRoot": True, "runAsUser": IMAGE_USER, "runAsGroup": IMAGE_USER, "fsGroup": IMAGE_USER,
    "seccompProfile": {"type": "RuntimeDefault"},
}
#: Every container: no privileges, and a read-only root filesystem (what it writes is a volume).
CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
}
TMP_MOUNT = {"name": "tmp", "mountPath": "/tmp"}


# -- names -------------------------------------------------------------------------------------


def api_name(cluster: str) -> str:
    return f"{cluster}-api"


def worker_name(cluster: str) -> str:
    return f"{cluster}-worker"


def worker_metrics_name(cluster: str) -> str:
    return f"{cluster}-worker-metrics"


# -- shared pod parts ------------------------------------------------------------------------


def core_env(cluster: Mapping) -> list[dict[str, Any]]:
    """The variables every pod of a cluster reads (:class:`ocrfleet.settings.CoreSettings`)."""
    meta = cluster["metadata"]
    return [
        {"name": "OCRFLEET_CLUSTER", "value": meta["name"]},
        {"name": "OCRFLEET_CLUSTER_NAMESPACE", "value": meta["namespace"]},
        {"name": "OCRFLEET_MASK_DEFAULT", "value": json.dumps(cluster["spec"]["masking"]["default"])},
        *stores.store_env(cluster),
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]


def worker_env(cluster: Mapping) -> list[dict[str, Any]]:
    """The worker process's variables (:class:`ocrfleet_worker.settings.WorkerSettings`)."""
    pre = cluster["spec"]["preprocessing"]
    return core_env(cluster) + [
        # the API's upload cap is every document's: the workers read OcrJob sources too
        {"name": "OCRFLEET_MAX_BYTES", "value": str(cluster["spec"]["api"]["maxUploadBytes"])},
        {"name": "OCRFLEET_MAX_SIDE", "value": str(pre["maxSidePixels"])},
        {"name": "OCRFLEET_PDF_DPI", "value": str(pre["pdfDpi"])},
        {"name": "OCRFLEET_MAX_PAGES", "value": str(pre["maxPages"])},
        {"name": "OCRFLEET_TRITON_URL", "value": f"127.0.0.1:{TRITON_GRPC_PORT}"},
        {"name": "OCRFLEET_SOURCE_URL_ALLOWLIST", "value": json.dumps(cluster["spec"]["sources"]["urlAllowlist"])},
        *([{"name": "OCRFLEET_SOURCE_VOLUME_ROOT", "value": DATA_DIR}] if cluster["spec"]["storage"].get("pvc") else []),
        {"name": "OCRFLEET_CONSUMER_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "OCRFLEET_DRAIN_FILE", "value": DRAIN_FILE},
        {"name": "OCRFLEET_BUSY_FILE", "value": BUSY_FILE},
        {"name": "OCRFLEET_METRICS_PORT", "value": str(WORKER_METRICS_PORT)},
    ]


def triton_model_env(cluster: Mapping) -> list[dict[str, Any]]:
    """The model renderer's variables (:class:`ocrfleet_worker.triton_repository.TritonModelSettings`)."""
    spec = cluster["spec"]
    triton = spec["triton"]
    kind = "gpu" if spec["workers"]["gpu"]["count"] > 0 else "cpu"
    return [
        {"name": "OCRFLEET_TRITON_MAX_BATCH_SIZE", "value": str(triton["maxBatchSize"])},
        {"name": "OCRFLEET_TRITON_MAX_QUEUE_DELAY_US", "value": str(triton["maxQueueDelayMicroseconds"])},
        {"name": "OCRFLEET_TRITON_INSTANCE_COUNT", "value": str(triton["instanceCount"])},
        {"name": "OCRFLEET_TRITON_KIND", "value": kind},
    ]


def api_env(cluster: Mapping) -> list[dict[str, Any]]:
    """The API process's variables (:class:`ocrfleet_api.settings.ApiSettings`)."""
    spec = cluster["spec"]
    api, pre = spec["api"], spec["preprocessing"]
    env = core_env(cluster) + [
        {"name": "OCRFLEET_PORT", "value": str(api["port"])},
        {"name": "OCRFLEET_METRICS_PORT", "value": str(API_METRICS_PORT)},
        {"name": "OCRFLEET_RATE_LIMIT_REQUESTS", "value": str(api["rateLimitPerMinute"])},
        {"name": "OCRFLEET_RATE_LIMIT_WINDOW_S", "value": "60"},
        {"name": "OCRFLEET_MAX_UPLOAD_BYTES", "value": str(api["maxUploadBytes"])},
        {"name": "OCRFLEET_MAX_PDF_PAGES", "value": str(pre["maxPages"])},
        # URL submissions obey the same list as OcrJob URL sources
        {"name": "OCRFLEET_URL_FETCH_PREFIXES", "value": json.dumps(spec["sources"]["urlAllowlist"])},
    ]
    # the master key API keys' signing secrets derive from: the pool's own random one unless named
    ref = api.get("authSecretRef") or {"name": stores.credentials_name(cluster["metadata"]["name"]),
                                       "key": stores.SIGNING_MASTER_KEY}
    env.append(stores.secret_env("OCRFLEET_SIGNING_MASTER_KEY", ref))
    return env


def data_volumes(spec: Mapping) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The documents claim (``spec.storage.pvc``, ReadWriteMany) as (volumes, mounts); none otherwise."""
    pvc = spec["storage"].get("pvc")
    if not pvc:
        return [], []
    mount: dict[str, Any] = {"name": "data", "mountPath": DATA_DIR}
    if pvc.get("subPath"):
        mount["subPath"] = pvc["subPath"]
    return [{"name": "data", "persistentVolumeClaim": {"claimName": pvc["claimName"]}}], [mount]


def _wait_until_idle(then: str = "") -> list[str]:
    """A preStop command: wait while the worker still holds pages (its busy file exists)."""
    script = f"while [ -e {BUSY_FILE} ]; do sleep 1; done"
    return ["/bin/sh", "-c", f"{then}{script}"]


# -- API -------------------------------------------------------------------------------------


def api_deployment(cluster: Mapping) -> Manifest:
    name = cluster["metadata"]["name"]
    spec = cluster["spec"]
    api = spec["api"]
    data, data_mounts = data_volumes(spec)
    volumes = [*data, {"name": "tmp", "emptyDir": {}}]
    mounts = [*data_mounts, TMP_MOUNT]
    container = {
        "name": "api",
        "image": api["image"],
        "command": list(API_COMMAND),
        "ports": [{"name": "http", "containerPort": api["port"], "protocol": "TCP"},
                  {"name": "metrics", "containerPort": API_METRICS_PORT, "protocol": "TCP"}],
        "env": api_env(cluster),
        "volumeMounts": mounts,
        "readinessProbe": {"httpGet": {"path": API_READY_PATH, "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": API_LIVE_PATH, "port": "http"}, "periodSeconds": 10,
                          "failureThreshold": 6},
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": CONTAINER_SECURITY,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(cluster, api_name(name), "api"),
        "spec": {
            "replicas": api["replicas"],
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector_labels(name, "api")},
            "template": pods.template(
                cluster, labels(name, "api"),
                {"securityContext": POD_SECURITY, "automountServiceAccountToken": False,
                 "containers": [container], "volumes": volumes}, api,
                annotations={"prometheus.io/scrape": "true", "prometheus.io/port": str(API_METRICS_PORT)}),
        },
    }


def api_service(cluster: Mapping) -> Manifest:
    name = cluster["metadata"]["name"]
    api = cluster["spec"]["api"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(cluster, api_name(name), "api"),
        "spec": {
            "type": api["serviceType"],
            "selector": selector_labels(name, "api"),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def api_endpoint(cluster: Mapping) -> str:
    meta = cluster["metadata"]
    return f"http://{api_name(meta['name'])}.{meta['namespace']}.svc:80"


# -- workers ---------------------------------------------------------------------------------


def worker_tolerations(workers: Mapping) -> list[dict[str, Any]]:
    """The spec's tolerations, plus the usual GPU-pool taint when the pod asks for GPUs."""
    tolerations = [dict(t) for t in workers["tolerations"]]
    gpu = workers["gpu"]
    if gpu["count"] > 0 and not any(t.get("key") == gpu["resourceName"] for t in tolerations):
        tolerations.append({"key": gpu["resourceName"], "operator": "Exists", "effect": "NoSchedule"})
    return tolerations


def worker_deployment(cluster: Mapping, *, replicas: int | None = None) -> Manifest:
    """The worker Deployment; ``replicas`` only on creation (afterwards the HPA owns it)."""
    name = cluster["metadata"]["name"]
    spec = cluster["spec"]
    workers, triton = spec["workers"], spec["triton"]
    gpu = workers["gpu"]
    gpu_resources = {gpu["resourceName"]: str(gpu["count"])} if gpu["count"] > 0 else {}
    triton_resources = _merge_resources(triton["resources"], gpu_resources)
    grace = workers["terminationGracePeriodSeconds"]
    data, data_mounts = data_volumes(spec)
    run_mount = {"name": "run", "mountPath": RUN_DIR}
    models_mount = {"name": "models", "mountPath": MODELS_DIR}
    model_repository = {
        # Renders the model repository (config.pbtxt with the cluster's batch settings) into /models.
        "name": "model-repository",
        "image": workers["image"],
        "imagePullPolicy": workers["imagePullPolicy"],
        "command": [*MODEL_RENDER_COMMAND, "--out", MODELS_DIR, "--copy-weights"],
        "env": triton_model_env(cluster),
        "volumeMounts": [models_mount, TMP_MOUNT],
        "securityContext": CONTAINER_SECURITY,
    }
    worker = {
        "name": "worker",
        "image": workers["image"],
        "imagePullPolicy": workers["imagePullPolicy"],
        "command": list(WORKER_COMMAND),
        "ports": [{"name": "metrics", "containerPort": WORKER_METRICS_PORT, "protocol": "TCP"}],
        "env": worker_env(cluster),
        "volumeMounts": [*data_mounts, run_mount, TMP_MOUNT],
        "resources": dict(workers["resources"]),
        "securityContext": CONTAINER_SECURITY,
        # Stop taking work, then wait until the pages in hand are stored and acked.
        "lifecycle": {"preStop": {"exec": {"command": _wait_until_idle(f"touch {DRAIN_FILE}; ")}}},
    }
    triton_container = {
        "name": "triton",
        "image": triton["image"],
        "command": [
            "tritonserver",
            f"--model-repository={MODELS_DIR}",
            "--strict-readiness=true",
            f"--http-port={TRITON_HTTP_PORT}",
            f"--grpc-port={TRITON_GRPC_PORT}",
            f"--metrics-port={TRITON_METRICS_PORT}",
        ],
        "ports": [
            {"name": "triton-http", "containerPort": TRITON_HTTP_PORT, "protocol": "TCP"},
            {"name": "triton-grpc", "containerPort": TRITON_GRPC_PORT, "protocol": "TCP"},
            {"name": "triton-metrics", "containerPort": TRITON_METRICS_PORT, "protocol": "TCP"},
        ],
        "resources": triton_resources,
        # the python backend's stubs exchange tensors through /dev/shm (64 MiB by default)
        "volumeMounts": [models_mount, run_mount, TMP_MOUNT, {"name": "shm", "mountPath": "/dev/shm"}],
        "securityContext": CONTAINER_SECURITY,
        "startupProbe": {
            "httpGet": {"path": TRITON_LIVE_PATH, "port": "triton-http"},
            "periodSeconds": 5,
            "failureThreshold": max(workers["startupDeadlineSeconds"] // 5, 1),
        },
        # The pod takes work only once every OCR model is loaded and ready (strict readiness).
        "readinessProbe": {
            "httpGet": {"path": TRITON_READY_PATH, "port": "triton-http"},
            "periodSeconds": 5,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": TRITON_LIVE_PATH, "port": "triton-http"},
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
        # Triton must outlive the worker's last batch: it stops only when the worker is idle.
        "lifecycle": {"preStop": {"exec": {"command": _wait_until_idle()}}},
    }
    pod_spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": grace,
        "securityContext": POD_SECURITY,
        "automountServiceAccountToken": False,
        "initContainers": [model_repository],
        "containers": [worker, triton_container],
        "volumes": [
            *data,
            {"name": "models", "emptyDir": {}},
            {"name": "run", "emptyDir": {"medium": "Memory"}},
            {"name": "tmp", "emptyDir": {}},
            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE}},
        ],
    }
    deployment_spec: dict[str, Any] = {
        "revisionHistoryLimit": 3,
        "selector": {"matchLabels": selector_labels(name, "worker")},
        # GPUs are scarce: replace pods one at a time instead of asking for a spare GPU.
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
        "template": pods.template(cluster, labels(name, "worker"), pod_spec, workers,
                                  tolerations=worker_tolerations(workers),
                                  annotations={"prometheus.io/scrape": "true",
                                               "prometheus.io/port": str(WORKER_METRICS_PORT)}),
    }
    if replicas is not None:
        deployment_spec = {"replicas": replicas, **deployment_spec}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(cluster, worker_name(name), "worker"),
        "spec": deployment_spec,
    }


def worker_metrics_service(cluster: Mapping) -> Manifest:
    """Headless: one endpoint per worker pod, for scrapers that find targets by Service (ServiceMonitor)."""
    name = cluster["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(cluster, worker_metrics_name(name), "worker"),
        "spec": {
            "clusterIP": "None",
            "selector": selector_labels(name, "worker"),
            "ports": [{"name": "metrics", "port": WORKER_METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"},
                      {"name": "triton-metrics", "port": TRITON_METRICS_PORT, "targetPort": "triton-metrics",
                       "protocol": "TCP"}],
        },
    }


def _merge_resources(base: Mapping, extended: Mapping[str, str]) -> dict[str, Any]:
    """Add extended resources (GPUs) to both requests and limits, as Kubernetes requires."""
    out = {k: dict(v) for k, v in base.items()}
    for section in ("requests", "limits"):
        if extended:
            out.setdefault(section, {}).update(extended)
    return out


def initial_worker_replicas(cluster: Mapping) -> int:
    """A new cluster starts at its minimum (0 with scale to zero)."""
    return cluster["spec"]["workers"]["minReplicas"]


def keda_mode(cluster: Mapping) -> bool:
    return cluster["spec"]["workers"]["autoscaler"] == "keda"


def worker_autoscaling(cluster: Mapping) -> list[Manifest]:
    """What scales the workers: the HPA, or with ``autoscaler: keda`` KEDA's ScaledObject (and
    the TriggerAuthentication with the managed Redis's password)."""
    if not keda_mode(cluster):
        return [worker_hpa(cluster)]
    auth = [worker_trigger_authentication(cluster)] if stores.redis_managed(cluster["spec"]) else []
    return [*auth, worker_scaled_object(cluster)]


def replaced_autoscaling(cluster: Mapping) -> list[tuple[str, str]]:
    """(kind, name) of the other mode's objects, deleted when a pool switches autoscaler."""
    name = worker_name(cluster["metadata"]["name"])
    if keda_mode(cluster):
        return [("HorizontalPodAutoscaler", name)]
    return [("ScaledObject", name), ("TriggerAuthentication", name)]


def worker_trigger_authentication(cluster: Mapping) -> Manifest:
    """KEDA's way to the managed Redis's password: the pool's credentials Secret, by reference."""
    name = cluster["metadata"]["name"]
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": metadata(cluster, worker_name(name), "worker"),
        "spec": {"secretTargetRef": [{"parameter": "password", "name": stores.credentials_name(name),
                                      "key": stores.REDIS_PASSWORD}]},
    }


def worker_scaled_object(cluster: Mapping) -> Manifest:
    """KEDA scales the workers 0..max on the same queue depth the HPA reads: each priority
    stream's length (acked entries are deleted, so a length is waiting + in flight; see
    :func:`ocrfleet.queue.depth_from_replies`), one redis-streams trigger per stream, summed by
    a scaling modifier into one average-value target per worker."""
    meta, workers = cluster["metadata"], cluster["spec"]["workers"]
    name = meta["name"]
    pool = keys.pool(meta["namespace"], name)
    target = str(workers["targetQueueDepthPerWorker"])
    auth = {"authenticationRef": {"name": worker_name(name)}} if stores.redis_managed(cluster["spec"]) else {}
    triggers = [{"type": "redis-streams", "name": priority, **auth,
                 "metadata": {**stores.redis_endpoint(cluster), "stream": keys.stream(pool, priority),
                              "streamLength": target, "activationLagCount": "0"}}
                for priority in keys.PRIORITIES]
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": metadata(cluster, worker_name(name), "worker"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": worker_name(name)},
            "minReplicaCount": workers["minReplicas"],
            "maxReplicaCount": workers["maxReplicas"],
            "pollingInterval": 5,
            "cooldownPeriod": workers["idleSecondsBeforeScaleToZero"],
            "advanced": {
                "horizontalPodAutoscalerConfig": {"behavior": _hpa_behavior(workers)},
                "scalingModifiers": {"formula": " + ".join(keys.PRIORITIES), "target": target,
                                     "activationTarget": "0", "metricType": "AverageValue"},
            },
            "triggers": triggers,
        },
    }


def _hpa_behavior(workers: Mapping) -> dict[str, Any]:
    return {
        "scaleUp": {
            "stabilizationWindowSeconds": workers["scaleUpStabilizationSeconds"],
            "selectPolicy": "Max",
            "policies": [
                {"type": "Percent", "value": 100, "periodSeconds": 15},
                {"type": "Pods", "value": 4, "periodSeconds": 15},
            ],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": workers["scaleDownStabilizationSeconds"],
            "selectPolicy": "Max",
            "policies": [{"type": "Percent", "value": 50, "periodSeconds": 30}],
        },
    }


def worker_hpa(cluster: Mapping) -> Manifest:
    """Scale workers 1..max on queue depth (waiting + in flight) per worker.

    The HPA cannot scale to zero; with ``minReplicas: 0`` the operator moves the Deployment
    between 0 and 1 itself (see :func:`ocrfleet_operator.decisions.scale_override`).
    """
    name = cluster["metadata"]["name"]
    workers = cluster["spec"]["workers"]
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(cluster, worker_name(name), "worker"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": worker_name(name)},
            "minReplicas": max(1, workers["minReplicas"]),
            "maxReplicas": workers["maxReplicas"],
            "metrics": [
                {
                    "type": "External",
                    "external": {
                        "metric": {
                            "name": QUEUE_DEPTH_METRIC,
                            "selector": {"matchLabels": {CLUSTER_LABEL: name}},
                        },
                        "target": {
                            "type": "AverageValue",
                            "averageValue": str(workers["targetQueueDepthPerWorker"]),
                        },
                    },
                }
            ],
            "behavior": _hpa_behavior(workers),
        },
    }


def pdb(cluster: Mapping, component: str) -> Manifest:
    """At most one pod of a component down at a time through voluntary disruptions."""
    name = cluster["metadata"]["name"]
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(cluster, f"{name}-{component}", component),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(name, component)}},
    }


def cluster_children(cluster: Mapping) -> list[Manifest]:
    """Every child of a cluster, in apply order. The worker Deployment carries no replicas.

    The managed stores come first; the credentials Secret they read is created (once) before
    any of these, by the reconcile (:func:`ocrfleet_operator.stores.new_credentials`).
    """
    return [
        *stores.managed_children(cluster),
        api_deployment(cluster),
        api_service(cluster),
        worker_deployment(cluster),
        worker_metrics_service(cluster),
        *worker_autoscaling(cluster),
        pdb(cluster, "api"),
        pdb(cluster, "worker"),
        *policies.network_policies(cluster),
    ]


# -- drift -----------------------------------------------------------------------------------


def drifted(desired: Any, live: Any) -> bool:
    """True when ``live`` lacks or contradicts something ``desired`` says.

    Fields the API server adds (defaults, status, other managers' fields) are ignored: a
    dict matches when each of its keys matches; lists must match element by element.
    """
    if desired in ({}, []) and live is None:
        return False  # the API server leaves out empty lists and objects
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return True
        return any(drifted(v, live.get(k)) for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(live, list) or len(desired) != len(live):
            return True
        return any(drifted(d, v) for d, v in zip(desired, live, strict=True))
    return desired != live


def owner_of(child: Mapping) -> dict[str, Any] | None:
    """The OcrCluster owner reference of a child, if it has one."""
    for ref in child.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == "OcrCluster" and ref.get("apiVersion", "").startswith(f"{GROUP}/"):
            return dict(ref)
    return None
