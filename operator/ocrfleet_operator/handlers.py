"""Every kopf handler of the operator, in one file; each delegates in a few lines.

OcrCluster: create/update/resume apply the children; a timer observes them, scales to and
from zero and writes status; events of the children (deleted, edited) repair them.
OcrJob: create/resume/suspend changes run one idempotent tick; after that the job is ticked
by its pool's job timer, which walks an index of the pool's unfinished jobs, so a waiting job
costs kopf nothing (a timer per job was 67 handler calls a second for 200 jobs). A finished job
with a TTL has a timer of its own until it is deleted. Deletion drops the job's waiting queue
entries.
"""

from __future__ import annotations

import logging

import kopf

from ocrfleet_operator import builders, clusters, jobs, metrics
from ocrfleet_operator.kube import KubeError
from ocrfleet_operator.metrics_adapter import ClientAuth, MetricsAdapter, tls_context
from ocrfleet_operator.phases import Phase
from ocrfleet_operator.runtime import Runtime
from ocrfleet_operator.settings import OperatorSettings

log = logging.getLogger(__name__)

GROUP, VERSION = builders.GROUP, builders.VERSION
# Decorator arguments are fixed at import; read the intervals once from the environment.
_INTERVALS = OperatorSettings()
CHILD_SELECTOR = f"{builders.MANAGED_BY_LABEL}={builders.MANAGED_BY}"
CHILDREN = (
    ("apps", "v1", "deployments", "Deployment"),
    ("apps", "v1", "statefulsets", "StatefulSet"),
    ("", "v1", "services", "Service"),
    ("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler"),
    ("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget"),
    ("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy"),
)


# -- the operator's life ------------------------------------------------------------------------


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_) -> None:
    config = OperatorSettings()
    configure_kopf(settings, config)
    memo.runtime = Runtime.create(config)
    memo.adapter = None
    if config.metrics_port:
        rt: Runtime = memo.runtime
        auth = _aggregator_auth(rt) if config.metrics_client_auth else None
        memo.adapter = MetricsAdapter(
            lambda ns, name: (q.depth() if (q := rt.queue(ns, name) or _load_queue(rt, ns, name)) else None),
            lambda ns: [name for (n, name) in list(rt._clusters) if n == ns],
            host=config.metrics_host, port=config.metrics_port, auth=auth,
            ssl_context=tls_context(config.metrics_tls_cert, config.metrics_tls_key, auth))
        await memo.adapter.start()


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_) -> None:
    if getattr(memo, "adapter", None):
        await memo.adapter.stop()
    if getattr(memo, "runtime", None):
        memo.runtime.close()


def configure_kopf(settings: kopf.OperatorSettings, config: OperatorSettings) -> None:
    """Watch timeouts (a watch without them can stall silently), bookkeeping in annotations."""
    settings.watching.server_timeout = config.watch_server_timeout
    settings.watching.client_timeout = config.watch_client_timeout
    settings.watching.connect_timeout = config.watch_connect_timeout
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    # An OcrJob's URL list may hold 10,000 URLs, far over an annotation's 256 KiB; no handler
    # reacts to it changing (it is immutable once admitted), so it stays out of the diff base.
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration", ignored_fields=["spec.source.urls"])
    settings.posting.level = logging.WARNING  # Events for warnings; phase changes post their own
    settings.posting.reporting_component = "ocrfleet-operator"
    settings.execution.max_workers = 8
    # A deleted pool's finalizer waits for its timers to exit; a sync tick caught mid-run would
    # otherwise be polled again only after kopf's default 60 s (the pool seen stuck deleting).
    settings.background.instant_exit_timeout = 0.5
    settings.background.cancellation_polling = 1.0
    for _group, _version, plural, _kind in CHILDREN:
        settings.watching.label_selectors[plural] = CHILD_SELECTOR


def _aggregator_auth(rt: Runtime) -> ClientAuth:
    """The request-header CA and names the API server's aggregator presents (read once at start)."""
    found = rt.kube.get("ConfigMap", "kube-system", "extension-apiserver-authentication")
    if found is None:
        raise LookupError("ConfigMap kube-system/extension-apiserver-authentication is missing: cannot verify the "
                          "aggregator's client certificate (set OCRFLEET_METRICS_CLIENT_AUTH=false to serve anyone)")
    return ClientAuth.from_configmap(found.get("data") or {})


def _load_queue(rt: Runtime, namespace: str, name: str):
    cluster = rt.kube.get("OcrCluster", namespace, name)
    return rt.queue_for(cluster) if cluster else None


# -- OcrCluster --------------------------------------------------------------------------------


@kopf.on.resume(GROUP, VERSION, "ocrclusters")
@kopf.on.create(GROUP, VERSION, "ocrclusters")
@kopf.on.update(GROUP, VERSION, "ocrclusters", field="spec")
def cluster_changed(body: kopf.Body, memo: kopf.Memo, logger: logging.Logger, **_) -> None:
    outcome = clusters.apply_children(memo.runtime, body)
    logger.info("children: %s", ", ".join(f"{k} {v}" for k, v in outcome.items()))
    clusters.tick(memo.runtime, body)


@kopf.timer(GROUP, VERSION, "ocrclusters", interval=_INTERVALS.reconcile_interval, sharp=False)
def cluster_tick(body: kopf.Body, memo: kopf.Memo, **_) -> None:
    clusters.tick(memo.runtime, body)


@kopf.timer(GROUP, VERSION, "ocrclusters", id="jobs", interval=_INTERVALS.job_progress_interval, sharp=False)
def pool_jobs_tick(namespace: str, name: str, memo: kopf.Memo, unfinished_jobs: kopf.Index, **_) -> None:
    _tick_jobs(memo, unfinished_jobs, namespace, name)


@kopf.on.delete(GROUP, VERSION, "ocrclusters", optional=True)
def cluster_deleted(body: kopf.Body, memo: kopf.Memo, unfinished_jobs: kopf.Index, **_) -> None:
    memo.runtime.forget_cluster(body.metadata.namespace, body.metadata.name)
    metrics.forget_pool(body.metadata.namespace, body.metadata.name)
    _tick_jobs(memo, unfinished_jobs, body.metadata.namespace, body.metadata.name)  # now ClusterNotFound


def _child_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, kind: str, logger) -> None:
    if event["type"] not in ("DELETED", "MODIFIED"):
        return
    owner = builders.owner_of(body)
    if owner is None:
        return
    cluster = memo.runtime.kube.get("OcrCluster", body.metadata.namespace, owner["name"])
    if not cluster or cluster["metadata"]["uid"] != owner["uid"] or cluster["metadata"].get("deletionTimestamp"):
        return
    try:
        done = clusters.repair_child(memo.runtime, cluster, kind, body.metadata.name)
    except KubeError as exc:
        if exc.status == 409:  # raced with another writer; the next event retries
            return
        raise
    if done != "unchanged":
        logger.info("%s %s/%s of OcrCluster %s: %s", event["type"].lower(), kind, body.metadata.name,
                    owner["name"], done)


def _register_child_watch(group: str, version: str, plural: str, kind: str) -> None:
    @kopf.on.event(group, version, plural, labels={builders.MANAGED_BY_LABEL: builders.MANAGED_BY},
                   id=f"repair-{plural}")
    def child_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, logger, **_) -> None:
        _child_event(event, body, memo, kind, logger)


for _child in CHILDREN:
    _register_child_watch(*_child)


# -- OcrJob -----------------------------------------------------------------------------------


def _job_tick(body: kopf.Body, memo: kopf.Memo) -> None:
    def post_event(phase: str, reason: str, message: str) -> None:
        kopf.event(body, type="Warning" if phase == "Failed" else "Normal", reason=phase, message=message)

    jobs.tick(memo.runtime, body, on_phase=post_event)


def _tick_jobs(memo: kopf.Memo, index: kopf.Index, namespace: str, pool: str) -> None:
    """Tick every unfinished job of one pool; one job's failure is logged and the rest go on."""
    for job in list(index.get((namespace, pool), ())):
        try:
            _job_tick(job, memo)
        except Exception:
            log.exception("tick of OcrJob %s/%s failed; its next tick tries again", namespace,
                          job["metadata"]["name"])


def _finished(status: kopf.Status) -> bool:
    return bool(status.get("phase")) and Phase(status["phase"]).terminal


@kopf.index(GROUP, VERSION, "ocrjobs")
def unfinished_jobs(namespace: str, spec: kopf.Spec, status: kopf.Status, body: kopf.Body, **_) -> dict | None:
    """Each unfinished OcrJob under its pool's (namespace, name), as its last event showed it
    (a job being deleted is not ticked again: its delete handler drops its queue entries)."""
    if _finished(status) or body.metadata.get("deletionTimestamp"):
        return None
    return {(namespace, spec["clusterRef"]["name"]): dict(body)}


@kopf.on.resume(GROUP, VERSION, "ocrjobs")
@kopf.on.create(GROUP, VERSION, "ocrjobs")
@kopf.on.update(GROUP, VERSION, "ocrjobs", field="spec.suspend")
def job_changed(body: kopf.Body, memo: kopf.Memo, **_) -> None:
    _job_tick(body, memo)


@kopf.timer(GROUP, VERSION, "ocrjobs", interval=_INTERVALS.job_progress_interval, sharp=False,
            when=lambda status, spec, **_: _finished(status) and spec.get("ttlSecondsAfterFinished") is not None)
def finished_job_tick(body: kopf.Body, memo: kopf.Memo, **_) -> None:
    """A finished job with a TTL: deleted once it is due."""
    _job_tick(body, memo)


@kopf.on.delete(GROUP, VERSION, "ocrjobs")
def job_deleted(body: kopf.Body, memo: kopf.Memo, logger: logging.Logger, **_) -> None:
    removed = jobs.cleanup(memo.runtime, body)
    logger.info("removed %d waiting documents of the deleted job", removed)
