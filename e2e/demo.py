"""``make demo``: ocrfleet on a local Kubernetes control plane, end to end where it can be.

1. starts (or reuses) the local control plane of :mod:`e2e.cluster`;
2. installs the chart from the repository root with Helm (CRDs first, then the operator);
3. applies the example OcrCluster and OcrJob where they exist, and shows what Kubernetes sees;
4. processes a generated set of sample documents through the embedded data plane
   (``ocrfleet process``: Redis, Triton and the OCR model as local processes) where it exists.

The cluster keeps running afterwards; ``python -m e2e.cluster down`` stops it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from e2e.cluster import LocalCluster

ROOT = Path(__file__).resolve().parent.parent


def step(title: str) -> None:
    print(f"\n==> {title}", flush=True)


def run(*argv: str, check: bool = True) -> int:
    print("$ " + " ".join(argv), flush=True)
    return subprocess.run(argv, cwd=ROOT, check=check).returncode


def main() -> int:
    cluster = LocalCluster("ocrfleet")
    step("local Kubernetes control plane (kube-apiserver, controller-manager, scheduler, etcd, kwok)")
    t0 = time.monotonic()
    if cluster.is_running():
        cluster.attach()
        print("reusing the running cluster")
    else:
        cluster.create()
    print(f"ready in {time.monotonic() - t0:.1f} s; KUBECONFIG={cluster.kubeconfig_path}")
    kubectl = [cluster.kubectl_path, f"--kubeconfig={cluster.kubeconfig_path}"]
    run(*kubectl, "version")
    run(*kubectl, "get", "nodes", "-L", "nvidia.com/gpu.product")

    step("helm install ocrfleet (the repository root is the chart)")
    helm = [str(cluster.helm), f"--kubeconfig={cluster.kubeconfig_path}"]
    run(*helm, "upgrade", "--install", "ocrfleet", str(ROOT), "--namespace", "ocrfleet-system",
        "--create-namespace", "--wait", "--timeout", "120s")
    run(*kubectl, "get", "crd", "-l", "app.kubernetes.io/part-of=ocrfleet", check=False)
    run(*kubectl, "get", "all", "-n", "ocrfleet-system")

    examples = sorted((ROOT / "examples").glob("*.yaml"))
    if examples:
        step("example resources")
        for path in examples:
            run(*kubectl, "apply", "-f", str(path), check=False)
        run(*kubectl, "get", "ocrfleet", "-A", check=False)
        step("the operator, run here as a process (kwok pods run nothing), reconciles them")
        _reconcile_examples(cluster, kubectl)

    step("process sample documents through the embedded data plane (Redis, Triton, the OCR model)")
    samples, results = ROOT / "out" / "samples", ROOT / "out" / "results.jsonl"
    run(sys.executable, "-m", "ocrfleet.cli", "samples", str(samples), "--count", "12")
    run(sys.executable, "-m", "ocrfleet.cli", "process", str(samples), "-o", str(results))

    step("done")
    print(f"export KUBECONFIG={cluster.kubeconfig_path}   # look around with kubectl")
    print("python -m e2e.cluster down                # stop the local control plane")
    return 0


def _reconcile_examples(cluster: LocalCluster, kubectl: list[str]) -> None:
    """Run ``python -m ocrfleet_operator`` with a local Redis until the examples have a status."""
    import tempfile

    from e2e.operator_support import OperatorProcess
    from ocrfleet.localproc import RedisServer

    with RedisServer() as redis, tempfile.TemporaryDirectory(prefix="ocrfleet-demo-") as tmp:
        operator = OperatorProcess(cluster, redis.url, Path(tmp))
        operator.start()
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                out = subprocess.run([*kubectl, "get", "ocrcluster", "-A", "-o",
                                      "jsonpath={.items[*].status.observedGeneration}"],
                                     capture_output=True, text=True).stdout
                if len(out.split()) >= 2:
                    break
                time.sleep(1)
            run(*kubectl, "get", "ocrfleet", "-A", check=False)
            run(*kubectl, "get", "deployments,hpa,pdb", "-A", "-l", "app.kubernetes.io/part-of=ocrfleet",
                check=False)
        finally:
            operator.stop()


if __name__ == "__main__":
    sys.exit(main())
