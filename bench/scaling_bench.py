"""Scaling on the real node: a burst of documents into an idle pool, and back.

Starts the local control plane with a real kubelet node (:mod:`e2e.cluster`; the HPA
controller at Kubernetes' default 15 s sync period unless ``--hpa-sync``), loads the images,
``helm install``s the chart (the operator and its metrics adapter as pods), and creates a CPU
pool (:mod:`e2e.realpool`: workers 1..``--max-workers``, Redis and PostgreSQL on the host) on
the real node. Once the pool is Ready and idle at its minimum, ``--docs`` generated documents
(ID cards, statements, generic pages, multi-page PDFs) are POSTed to the API Service at once.
Watches on the worker Deployment, its HPA and the worker pods, and a 0.25 s sample of the
queue (who holds what), time:

1. **scale-up decision**: from the burst's first document to the Deployment's replicas raised
   by the HPA (its sync period bounds this: a decision lands on the next sync);
2. **new worker Ready**: the new pod created -> Ready (init container rendering the model
   repository, Triton loading the models under strict readiness, the worker) and its first
   document;
3. **drained**: every document stored, pages/s;
4. **back to the minimum**: from drained to the replicas lowered (the scale-down stabilization
   window, ``--scale-down-window``) and the pod gone;
5. **no busy pod killed**: what each leaving pod held when it was told to go and whether it
   finished it itself (every document stored once, in one attempt, no restart, nothing
   dead-lettered).

    python -m bench.scaling_bench [--docs 200] [--max-workers 2] [--scale-down-window 60]

Prints a summary and saves JSON under bench/results/. Needs root (the real node); stops its
cluster at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import tempfile
import threading
import time
from pathlib import Path

import redis as redis_lib
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from ocrfleet_dev import docgen
from ocrfleet_dev.localproc import PostgresServer, RedisServer

from e2e.cluster import temporary_cluster
from e2e.mainjob import REAL, helm_install, load_images
from e2e.node import NODE_IP
from e2e.operator_helpers import poll
from e2e.realpool import POOL, Submitter, pool_manifests, pool_ready
from ocrfleet import keys
from ocrfleet.queue import WorkQueue
from ocrfleet.store import DocumentRow, ResultStore, make_engine

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
NAMESPACE = "scaling"
WORKER = f"{POOL}-worker"
TERMINAL = {"succeeded", "failed"}


class Timeline:
    """Observations with their time since the bench's zero (the burst's start), thread-safe."""

    def __init__(self) -> None:
        self.zero = time.monotonic()
        self.events: list[dict] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def now(self) -> float:
        return round(time.monotonic() - self.zero, 3)

    def add(self, kind: str, **fields) -> None:
        with self.lock:
            self.events.append({"t": self.now(), "kind": kind, **fields})

    def of(self, kind: str) -> list[dict]:
        with self.lock:
            return [e for e in self.events if e["kind"] == kind]


def pod_summary(pod) -> dict:
    statuses = pod.status.container_statuses or []
    conditions = {c.type: c.last_transition_time for c in pod.status.conditions or []}
    init = {s.name: s.state.terminated.finished_at for s in pod.status.init_container_statuses or []
            if s.state and s.state.terminated}
    started = {s.name: s.state.running.started_at for s in statuses if s.state and s.state.running}
    iso = lambda v: v.isoformat() if v else None  # noqa: E731
    return {"name": pod.metadata.name, "phase": pod.status.phase,
            "ready": bool(statuses) and all(s.ready for s in statuses),
            "deleting": pod.metadata.deletion_timestamp is not None,
            "restarts": sum(s.restart_count for s in statuses),
            "created": iso(pod.metadata.creation_timestamp),
            "conditions": {k: iso(v) for k, v in conditions.items()},
            "init_finished": {k: iso(v) for k, v in init.items()},
            "started": {k: iso(v) for k, v in started.items()}}


def watch_kind(timeline: Timeline, kind: str, list_call, summarize, **selectors) -> None:
    """Record every watch event of ``list_call`` (a client's namespaced list method: the watch
    reads its return type from the docstring) until the timeline stops. The first watch lists
    what is there (ADDED); each next one resumes from the last resourceVersion seen, so no
    change (a DELETED pod) falls between two."""
    version = None
    while not timeline.stop.is_set():
        w = watch.Watch()
        resume = {"resource_version": version} if version else {}
        try:
            for event in w.stream(list_call, NAMESPACE, timeout_seconds=5, **resume, **selectors):
                timeline.add(kind, type=event["type"], **summarize(event["object"]))
            version = w.resource_version
        except ApiException as e:
            timeline.add("watch-error", of=kind, error=f"{e.status} {e.reason}")
            version = None if e.status == 410 else version  # expired: list again
            time.sleep(0.5)
        finally:
            w.stop()


def sample_queue(timeline: Timeline, redis_url: str) -> None:
    """Every 0.25 s: waiting and in-flight documents, and how many each consumer holds."""
    r = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    queue = WorkQueue(r, keys.pool(NAMESPACE, POOL))
    while not timeline.stop.wait(0.25):
        depth = queue.depth()
        holders: dict[str, int] = {}
        for priority in keys.PRIORITIES:
            stream = keys.stream(keys.pool(NAMESPACE, POOL), priority)
            if r.exists(stream):
                for c in r.xinfo_consumers(stream, keys.CONSUMER_GROUP):
                    holders[c["name"]] = holders.get(c["name"], 0) + int(c["pending"])
        timeline.add("queue", waiting=depth.waiting, in_flight=depth.in_flight,
                     holders={k: v for k, v in holders.items() if v})
    r.close()


def first(events: list[dict], predicate) -> dict | None:
    return next((e for e in events if predicate(e)), None)


def seconds_between(a: str | None, b: str | None) -> float | None:
    if not a or not b:
        return None
    return (dt.datetime.fromisoformat(b) - dt.datetime.fromisoformat(a)).total_seconds()


def analyse(timeline: Timeline, minimum: int, initial_pods: set[str], accepted_at: float, drained_at: float,
            rows: list[DocumentRow]) -> dict:
    deployments = timeline.of("deployment")
    pods = timeline.of("pod")
    queue = timeline.of("queue")
    hpas = timeline.of("hpa")
    up = first(deployments, lambda e: e["replicas"] > minimum)
    desired = first(hpas, lambda e: (e["desired"] or 0) > minimum)
    first_doc = first(queue, lambda e: e["waiting"] + e["in_flight"] > 0)
    new_names = sorted({e["name"] for e in pods} - initial_pods)
    new_pods = []
    for name in new_names:
        seen = first(pods, lambda e, n=name: e["name"] == n)
        ready = first(pods, lambda e, n=name: e["name"] == n and e["ready"])
        working = first(queue, lambda e, n=name: n in e["holders"])
        last = [e for e in pods if e["name"] == name][-1]
        server = ready or last
        new_pods.append({
            "name": name, "seen_s": seen["t"], "ready_s": ready and ready["t"],
            "first_document_s": working and working["t"],
            "created_to_ready_s": seconds_between(server["created"], server["conditions"].get("Ready"))
            if ready else None,
            "created_to_scheduled_s": seconds_between(server["created"], server["conditions"].get("PodScheduled")),
            "created_to_init_done_s": seconds_between(server["created"],
                                                     server["init_finished"].get("model-repository")),
            "created_to_triton_started_s": seconds_between(server["created"], server["started"].get("triton")),
        })
    down = first(deployments, lambda e: e["t"] > drained_at and e["replicas"] == minimum)
    leaving = []
    for name in sorted({e["name"] for e in pods if e["deleting"]}):
        told = first(pods, lambda e, n=name: e["name"] == n and e["deleting"])
        gone = first(pods, lambda e, n=name: e["name"] == n and e["type"] == "DELETED")
        held = first(queue, lambda e, t=told["t"]: e["t"] >= t)
        after = [e for e in queue if gone and e["t"] > gone["t"]]
        leaving.append({"name": name, "told_to_go_s": told["t"], "gone_s": gone and gone["t"],
                        "held_when_told": (held or {}).get("holders", {}).get(name, 0),
                        "held_after_gone": max((e["holders"].get(name, 0) for e in after), default=0)})
    restarts = max((e["restarts"] for e in pods), default=0)
    statuses: dict[str, int] = {}
    for row in rows:
        statuses[row.status] = statuses.get(row.status, 0) + 1
    pages = sum(row.page_count for row in rows)
    peak = max((e["replicas"] for e in deployments), default=minimum)
    return {
        "documents": len(rows), "pages": pages, "statuses": statuses,
        "burst_accepted_s": accepted_at,
        "first_document_queued_s": first_doc and first_doc["t"],
        "scale_up_decision_s": up and up["t"],
        "hpa_desired_raised_s": desired and desired["t"],
        "peak_replicas": peak,
        "new_pods": new_pods,
        "drained_s": drained_at,
        "pages_per_s": round(pages / drained_at, 3) if drained_at else None,
        "back_to_minimum_s": down and down["t"],
        "back_to_minimum_after_drained_s": down and round(down["t"] - drained_at, 1),
        "leaving_pods": leaving,
        "attempts": sorted({row.attempts for row in rows}),
        "container_restarts": restarts,
        "busy_pod_killed": any(p["held_after_gone"] for p in leaving) or any(row.attempts > 1 for row in rows)
        or restarts > 0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--max-workers", type=int, default=2)
    parser.add_argument("--target", type=int, default=8, help="targetQueueDepthPerWorker")
    parser.add_argument("--scale-down-window", type=int, default=60, help="scaleDownStabilizationSeconds")
    parser.add_argument("--hpa-sync", default="15s", help="the HPA controller's sync period (Kubernetes: 15s)")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    minimum = 1

    t_setup = time.monotonic()
    cluster = temporary_cluster("ocrfleet-scaling", real_node=True, hpa_sync_period=args.hpa_sync)
    cluster.create()
    work = Path(tempfile.mkdtemp(prefix="ocrfleet-scaling-"))
    try:
        load_images(cluster)
        helm_install(cluster, "--set-json", f"nodeSelector={json.dumps(REAL)}")
        with RedisServer(host=NODE_IP) as redis_server, PostgresServer(host=NODE_IP) as pg:
            store = ResultStore(make_engine(pg.url))
            store.create_schema()
            documents_dir = work / "documents"
            documents_dir.mkdir()
            documents_dir.chmod(0o777)
            cluster.kubectl("create", "namespace", NAMESPACE)
            cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": (
                pool_manifests(NAMESPACE, redis_server.url, pg.url, str(documents_dir), minReplicas=minimum,
                               maxReplicas=args.max_workers, targetQueueDepthPerWorker=args.target,
                               scaleDownStabilizationSeconds=args.scale_down_window))}))
            poll(lambda: pool_ready(cluster, NAMESPACE), 600, "the pool to be Ready", interval=2)
            setup_s = time.monotonic() - t_setup
            config.load_kube_config(config_file=str(cluster.kubeconfig_path))
            apps, autoscaling, core = client.AppsV1Api(), client.AutoscalingV2Api(), client.CoreV1Api()
            poll(lambda: (autoscaling.read_namespaced_horizontal_pod_autoscaler(WORKER, NAMESPACE).status
                          .current_metrics), 120, "the HPA to read the queue depth")
            initial = {p.metadata.name for p in core.list_namespaced_pod(
                NAMESPACE, label_selector="app.kubernetes.io/component=worker").items}
            submitter = Submitter(cluster, NAMESPACE, store, work)
            documents = submitter.documents(args.docs, seed=args.seed, kinds=docgen.KINDS)
            print(f"pool Ready in {setup_s:.0f} s (cluster, images, helm, pool); {len(documents)} documents "
                  f"({sum(len(d) for _, d in documents) / 1e6:.1f} MB) about to be sent", flush=True)

            timeline = Timeline()  # zero: the burst's start; each watch first lists the pool at rest
            threads = [
                threading.Thread(target=watch_kind, daemon=True, args=(
                    timeline, "deployment", apps.list_namespaced_deployment,
                    lambda d: {"replicas": d.spec.replicas, "ready": d.status.ready_replicas or 0}),
                    kwargs={"field_selector": f"metadata.name={WORKER}"}),
                threading.Thread(target=watch_kind, daemon=True, args=(
                    timeline, "hpa", autoscaling.list_namespaced_horizontal_pod_autoscaler,
                    lambda h: {"desired": h.status.desired_replicas, "current": h.status.current_replicas}),
                    kwargs={"field_selector": f"metadata.name={WORKER}"}),
                threading.Thread(target=watch_kind, daemon=True, args=(
                    timeline, "pod", core.list_namespaced_pod, pod_summary),
                    kwargs={"label_selector": "app.kubernetes.io/component=worker"}),
                threading.Thread(target=sample_queue, daemon=True, args=(timeline, redis_server.url)),
            ]
            for thread in threads:
                thread.start()
            ids = submitter.post(documents, concurrency=8)
            accepted_at = timeline.now()
            print(f"[{accepted_at:6.1f} s] {len(ids)} documents accepted", flush=True)

            def finished() -> list[DocumentRow] | None:
                with store.session() as s:
                    rows = s.query(DocumentRow).filter(DocumentRow.id.in_(ids)).all()
                    s.expunge_all()
                return rows if len(rows) == len(ids) and all(r.status in TERMINAL for r in rows) else None

            rows = poll(finished, 1800, "every document to be stored", interval=1)
            drained_at = timeline.now()
            print(f"[{drained_at:6.1f} s] drained", flush=True)

            def at_minimum() -> bool:
                """The replicas at the minimum again, and every leaving pod gone."""
                deployments, pods = timeline.of("deployment"), timeline.of("pod")
                leaving = {e["name"] for e in pods if e["deleting"]}
                gone = {e["name"] for e in pods if e["type"] == "DELETED"}
                return bool(deployments) and deployments[-1]["replicas"] == minimum and leaving <= gone

            poll(at_minimum, args.scale_down_window + 300, "the pool back at its minimum", interval=1)
            time.sleep(2)
            timeline.stop.set()
            for thread in threads:
                thread.join(10)
            result = analyse(timeline, minimum, initial, accepted_at, drained_at, rows)
            # the pool goes before its Redis and PostgreSQL do (its pods would crash-loop meanwhile)
            cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=120s", check=False, timeout=150)
    finally:
        cluster.delete()
    report = {
        "bench": "scaling", "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpus": len(__import__("os").sched_getaffinity(0)), "platform": platform.platform()},
        "config": {"docs": args.docs, "min_workers": minimum, "max_workers": args.max_workers,
                   "target_queue_depth_per_worker": args.target, "scale_down_window_s": args.scale_down_window,
                   "hpa_sync_period": args.hpa_sync, "worker": "CPU (Triton KIND_CPU), real node"},
        "setup_s": round(setup_s, 1), **result, "timeline": timeline.events,
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"scaling_bench_{report['when'].replace('-', '').replace(':', '')}.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "timeline"}, indent=1))
    print(f"saved {out}")
    return 0 if not result["busy_pod_killed"] and result["statuses"] == {"succeeded": len(ids)} else 1


if __name__ == "__main__":
    raise SystemExit(main())
