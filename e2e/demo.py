"""``make demo``: the main job, as a user sees it, on a local cluster with a real node.

1. a local Kubernetes control plane with a real kubelet node (:mod:`e2e.cluster`, root);
2. the images built here (ocrfleet's three and the managed stores'), loaded into the node;
3. ``helm upgrade --install`` of the chart at the repository root;
4. ``kubectl apply -f examples/ocrcluster-minimal.yaml``: a pool with defaults only;
5. sample documents (ID cards, bank statements, PDFs) put into the pool's object store;
6. ``kubectl apply -f examples/ocrjob-samples.yaml``, followed by one live progress line;
7. the extracted fields, read through the pool's API, and where to look next.

Exits non-zero when the job does not succeed. The cluster keeps running afterwards
(``python -m e2e.cluster down`` stops it); a second run reuses it and runs the job again.
"""

from __future__ import annotations

import sys
import time

from e2e.cluster import LocalCluster
from e2e.mainjob import ROOT, Pool, generated_documents, helm_install, load_images, progress_line

NAMESPACE = "demo"
SAMPLES = 12


def step(title: str) -> None:
    print(f"\n==> {title}", flush=True)


def cluster_up() -> LocalCluster:
    cluster = LocalCluster("ocrfleet", real_node=True)
    if cluster.is_running():
        cluster.attach()
        if cluster.real_node:
            print("reusing the running cluster")
            return cluster
        print("the running cluster has no real node: starting it again with one")
    cluster.create()
    return cluster


def show_results(results: list[dict]) -> None:
    print(f"{'document':28} {'type':15} field = value")
    for r in sorted(results, key=lambda r: r["filename"]):
        if r["status"] != "succeeded":
            print(f"{r['filename']:28} {r['status']:15} {(r.get('error') or {}).get('message', '')}")
            continue
        fields = [(f["name"], f["value"]) for p in r["pages"] for f in p["fields"]][:4]
        kind = r.get("document_type") or "?"
        first = f"{fields[0][0]} = {fields[0][1]}" if fields else "(no fields; text lines only)"
        print(f"{r['filename']:28} {kind:15} {first}")
        for name, value in fields[1:]:
            print(f"{'':28} {'':15} {name} = {value}")


def main() -> int:
    t0 = time.monotonic()
    step("a local Kubernetes control plane with a real kubelet node")
    cluster = cluster_up()
    kubectl = f"kubectl --kubeconfig={cluster.kubeconfig_path}"
    print(cluster.kubectl("get", "nodes", "-o", "wide"))

    step("images: built from Debian packages and the wheels (cached), loaded into the node")
    load_images(cluster)

    step("helm upgrade --install ocrfleet . -n ocrfleet-system")
    helm_install(cluster)
    print(cluster.kubectl("get", "pods", "-n", "ocrfleet-system", "-o", "wide"))

    step(f"kubectl apply -n {NAMESPACE} -f examples/ocrcluster-minimal.yaml   (spec: {{}})")
    pool = Pool.from_example(cluster, NAMESPACE)
    t1 = time.monotonic()
    pool.wait_ready(900, on_change=lambda line: print(f"  [{time.monotonic() - t1:4.0f} s] Ready={line}", flush=True))
    print(cluster.kubectl("get", "ocrcluster,statefulsets,deployments,pods,pvc", "-n", NAMESPACE))

    step(f"{SAMPLES} sample documents into the pool's object store (s3://ocrfleet/samples/)")
    docs = generated_documents(ROOT / "out" / "demo-samples", SAMPLES, seed=2026)
    keys = pool.put_documents([path for path, _ in docs], "samples/")
    print(", ".join(k.removeprefix("samples/") for k in keys))

    step(f"kubectl apply -n {NAMESPACE} -f examples/ocrjob-samples.yaml")
    cluster.kubectl("delete", "ocrjob", "samples", "-n", NAMESPACE, "--ignore-not-found", "--wait=true")
    cluster.kubectl("apply", "-n", NAMESPACE, "-f", str(ROOT / "examples" / "ocrjob-samples.yaml"))
    last = ""

    def show(status: dict) -> None:
        nonlocal last
        line = progress_line(status)
        if line != last:
            print(f"\r  {line:72}", end="", flush=True)
            last = line

    final = pool.watch_job("samples", 900, show)
    print()
    if final["phase"] != "Succeeded":
        print(f"the job did not succeed: {final.get('reason')}: {final.get('message')}", file=sys.stderr)
        print(cluster.kubectl("get", "pods,events", "-n", NAMESPACE, check=False), file=sys.stderr)
        return 1

    step(f"the extracted fields, through the API ({final['results']['path']})")
    show_results(pool.job_results("samples", pool.api_key(NAMESPACE)))

    step(f"done in {time.monotonic() - t0:.0f} s; where to look next")
    print(f"  {kubectl} get ocrfleet -n {NAMESPACE}                 # the pool and the job")
    print(f"  {kubectl} get ocrjob samples -n {NAMESPACE} -o yaml   # counts, pages/s, results route")
    print(f"  {kubectl} logs -n {NAMESPACE} deploy/minimal-worker -c worker")
    print("  README.md (the API, the CRDs), docs/architecture.md; python -m e2e.cluster down   # stop it all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
