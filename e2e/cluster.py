"""A real Kubernetes control plane on 127.0.0.1, as plain processes: no Docker, no kubelet.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler are the upstream binaries,
built from pinned Go modules by ``e2e/tools/build.sh``; kwok plays the kubelet for fake
nodes (one CPU node and two GPU nodes advertising ``nvidia.com/gpu: 1``), so scheduling,
garbage collection, Deployments, HPAs and the aggregation layer are all real, and pods
become Running/Ready without containers.

    python -m e2e.cluster up        # start (or reuse) the cluster, print how to reach it
    python -m e2e.cluster up --real-node  # the same plus a real kubelet node (e2e/node.py), needs root
    python -m e2e.cluster status    # components, nodes, pods
    python -m e2e.cluster down      # stop every process (and the real node) and remove the cluster directory
    python -m e2e.cluster cleanup   # after a crash: stop every cluster that has a real node (cache and /tmp)

With ``real_node=True`` a real node (kubelet, containerd, kube-proxy, CoreDNS; see
:mod:`e2e.node`) joins beside the kwok nodes, which are then tainted (:data:`FAKE_TAINT`), so
every pod that does not tolerate the taint runs for real on the real node (``nodeSelector:
ocrfleet.io/node: real`` places one there explicitly). Service IPs come from :data:`e2e.node.SERVICE_RANGE`
either way.

:class:`LocalCluster` has pytest-kind's interface (``name``, ``kubeconfig_path``,
``kubectl()``), so tests do not care whether kind or this control plane is behind it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from ocrfleet_dev.localproc import LocalProcess, ServiceError, free_port, process_alive

from e2e.certs import make_pki
from e2e.node import KUBERNETES_SERVICE_IP, NODE_IP, NODE_NAME, SERVICE_RANGE, RealNode

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("OCRFLEET_CACHE", Path.home() / ".cache" / "ocrfleet"))

CONTROLLERS = ",".join([
    "deployment-controller", "replicaset-controller", "statefulset-controller", "daemonset-controller",
    "job-controller", "cronjob-controller", "horizontal-pod-autoscaler-controller",
    "garbage-collector-controller", "namespace-controller", "serviceaccount-controller",
    "serviceaccount-token-controller", "pod-garbage-collector-controller", "disruption-controller",
    "endpointslice-controller", "ttl-after-finished-controller", "root-ca-certificate-publisher-controller",
    # PersistentVolumes (a hostPath volume of the real node shared by pods) and their deletion guards
    "persistentvolume-binder-controller", "persistentvolumeclaim-protection-controller",
    "persistentvolume-protection-controller",
    # the built-in user roles (admin, edit, view) gather the rules charts label for them
    "clusterrole-aggregation-controller",
])

# Fake nodes: what a small GPU pool looks like to the scheduler.
NODES = [
    {"name": "cpu-0", "cpu": "16", "memory": "64Gi", "gpus": 0},
    {"name": "gpu-0", "cpu": "16", "memory": "128Gi", "gpus": 1},
    {"name": "gpu-1", "cpu": "16", "memory": "128Gi", "gpus": 1},
]


class KubectlError(subprocess.CalledProcessError):
    """A failed kubectl call; its message carries kubectl's own error output."""

    def __str__(self) -> str:
        return f"{' '.join(map(str, self.cmd[2:]))} failed ({self.returncode}): {self.stderr.strip()}"


def build_tools() -> Path:
    """Build (or find cached) binaries; returns their directory. Fails loudly with the log tail."""
    proc = subprocess.run([str(HERE / "tools" / "build.sh")], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ServiceError(f"building the control-plane binaries failed:\n{proc.stderr[-4000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


FAKE_TAINT = {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}
"""Beside a real node, the fake nodes carry this taint: a pod lands on one only when it asks to."""


def node_manifest(name: str, cpu: str, memory: str, gpus: int, *, tainted: bool = False) -> dict:
    labels = {
        "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": "gpu-h100-1" if gpus else "cpu-16",
        "type": "kwok",
    }
    capacity = {"cpu": cpu, "memory": memory, "pods": "110"}
    taints = []
    if gpus:
        labels |= {"nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
                   "nvidia.com/gpu.count": str(gpus), "ocrfleet.io/pool": "gpu"}
        capacity["nvidia.com/gpu"] = str(gpus)
        taints.append({"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"})
    if tainted:
        taints.append(FAKE_TAINT)
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels,
                     "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"}},
        "spec": {"taints": taints},
        "status": {"capacity": capacity, "allocatable": capacity},
    }


class LocalCluster:
    """The control plane's processes, their ports and certificates, in one directory.

    The directory holds ``state.json`` so that ``up`` in one process and ``down`` in another
    find the same cluster.
    """

    def __init__(self, name: str = "ocrfleet", directory: Path | None = None,
                 extra_args: dict[str, list[str]] | None = None, real_node: bool = False,
                 hpa_sync_period: str = "5s") -> None:
        self.name = name
        self.hpa_sync_period = hpa_sync_period
        """How often the HPA controller recomputes every HPA: 5 s for the tests; Kubernetes' own
        default is 15 s (what the scaling benchmark runs with)."""
        self.extra_args = extra_args or {}
        self.real_node = real_node
        self.node: RealNode | None = None
        self.directory = Path(directory) if directory else CACHE / "clusters" / name
        self.kubeconfig_path = self.directory / "kubeconfig"
        self.bin: Path | None = None
        self.processes: dict[str, LocalProcess] = {}
        self.ports: dict[str, int] = {}

    # -- pytest-kind's interface ------------------------------------------------------------

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60) -> str:
        proc = subprocess.run([self.kubectl_path, f"--kubeconfig={self.kubeconfig_path}", *args], input=input,
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise KubectlError(proc.returncode, proc.args, proc.stdout, proc.stderr)
        return proc.stdout

    def wait_established(self, *crds: str, timeout: float = 60) -> None:
        """Wait until each CRD is Established. (``kubectl wait --for=condition`` fails outright on a
        CRD created so recently that it has no status yet.)"""
        deadline = time.monotonic() + timeout
        for crd in crds:
            while self.kubectl("get", "crd", crd, "-o", "jsonpath={.status.conditions[?(@.type=='Established')]"
                               ".status}", check=False) != "True":
                if time.monotonic() > deadline:
                    raise AssertionError(f"CRD {crd} not Established after {timeout:.0f} s:\n"
                                         + self.kubectl("get", "crd", crd, "-o", "yaml", check=False))
                time.sleep(0.2)

    @contextlib.contextmanager
    def port_forward(self, service_or_pod_name: str, remote_port: int, *args: str, local_port: int | None = None,
                     retries: int = 10):
        """``kubectl port-forward`` on 127.0.0.1 (pytest-kind's signature): yields the local port.

        Only pods on the real node can be forwarded to (kwok pods run nowhere). From the host a
        pod IP or a Service's ClusterIP answers directly too (see :meth:`RealNode.service_url`).
        """
        if self.node is None:
            raise NotImplementedError("this cluster has no real node (LocalCluster(real_node=True)): "
                                      "pods run nowhere, nothing to forward to")
        port = local_port or free_port()
        proc = subprocess.Popen([self.kubectl_path, f"--kubeconfig={self.kubeconfig_path}", "port-forward",
                                 "--address=127.0.0.1", service_or_pod_name, f"{port}:{remote_port}", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            for _ in range(retries * 10):
                if proc.poll() is not None:
                    raise ServiceError(f"kubectl port-forward {service_or_pod_name} exited: {proc.stderr.read()}")
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
                time.sleep(0.1)
            else:
                raise ServiceError(f"kubectl port-forward {service_or_pod_name} did not listen on {port}")
            yield port
        finally:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)

    def load_docker_image(self, archive: Path, name: str | None = None) -> bool:
        """Import an image archive into the real node's containerd (``podman save --format docker-archive``)."""
        if self.node is None:
            raise NotImplementedError("this cluster has no real node (LocalCluster(real_node=True)): "
                                      "no container runtime to load images into")
        return self.node.load_image(archive, name)

    @property
    def kubectl_path(self) -> str:
        """kubectl of the server's own version (built with it), else the one on PATH."""
        built = (self.bin or build_tools()) / "kubectl"
        return str(built) if built.exists() else "kubectl"

    @property
    def helm(self) -> Path:
        return (self.bin or build_tools()) / "helm"

    # -- life cycle --------------------------------------------------------------------------

    def create(self, timeout: float = 90) -> LocalCluster:
        """Start every component and wait until the fake nodes are Ready."""
        t0 = time.monotonic()
        self.bin = build_tools()
        if self.directory.exists():
            self._stop_node()
            self._stop_recorded()
            shutil.rmtree(self.directory)
        self.directory.mkdir(parents=True)
        pki = make_pki(self.directory / "pki", service_ip=KUBERNETES_SERVICE_IP)
        self.ports = {k: free_port() for k in ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler",
                                               "kwok")}
        try:
            self._start_etcd()
            self._start_apiserver(pki)
            self._write_kubeconfig(pki)
            self._save_state()
            cm = self._spawn("controller-manager", [
                str(self.bin / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig_path}", f"--authentication-kubeconfig={self.kubeconfig_path}",
                f"--authorization-kubeconfig={self.kubeconfig_path}", "--bind-address=127.0.0.1",
                f"--secure-port={self.ports['controller-manager']}", "--leader-elect=false",
                "--use-service-account-credentials=false", f"--controllers={CONTROLLERS}",
                f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
                f"--horizontal-pod-autoscaler-sync-period={self.hpa_sync_period}", "--concurrent-gc-syncs=5",
            ])
            sched = self._spawn("scheduler", [
                str(self.bin / "kube-scheduler"), f"--kubeconfig={self.kubeconfig_path}",
                f"--authentication-kubeconfig={self.kubeconfig_path}",
                f"--authorization-kubeconfig={self.kubeconfig_path}", "--leader-elect=false",
                "--bind-address=127.0.0.1", f"--secure-port={self.ports['scheduler']}",
            ])
            # the default StorageClass and its hostPath provisioner (e2e/provisioner.py)
            self._spawn("provisioner", [sys.executable, str(HERE / "provisioner.py"),
                                        f"--kubeconfig={self.kubeconfig_path}", f"--root={self.directory / 'volumes'}"])
            self._spawn("kwok", [
                str(self.bin / "kwok"), f"--kubeconfig={self.kubeconfig_path}",
                f"--config={self.bin.parent / 'kwok-stages.yaml'}", "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--cidr=10.244.0.0/16", "--node-ip=10.255.0.1", "--node-lease-duration-seconds=40",
                f"--server-address=127.0.0.1:{self.ports['kwok']}",
            ]).wait_ready(lambda: True, timeout=1)
            self._save_state()
            # the three start together; nodes are registered while they come up
            self.kubectl("apply", "-f", "-", input=json.dumps({
                "apiVersion": "v1", "kind": "List", "items": [node_manifest(**n, tainted=self.real_node) for n in NODES]}))
            cm.wait_ready(self._healthz("controller-manager"), timeout=60)
            sched.wait_ready(self._healthz("scheduler"), timeout=60)
            deadline = t0 + timeout
            self._wait(lambda: self.kubectl("wait", "--for=condition=Ready", "node", "--all", "--timeout=1s",
                                            check=False).count("condition met") == len(NODES),
                       deadline, "the fake nodes to become Ready", "kwok")
            self._wait(lambda: "default" in self.kubectl("get", "serviceaccount", "-n", "default", "-o", "name",
                                                         check=False),
                       deadline, "the default service account", "controller-manager")
            self._wait(lambda: "standard" in self.kubectl("get", "storageclass", "-o", "name", check=False),
                       deadline, "the default StorageClass", "provisioner")
            if self.real_node:
                self.node = self._make_node()
                self._save_state()
                self.node.start()
        except BaseException:
            self.delete()
            raise
        self.started_in = time.monotonic() - t0
        return self

    def delete(self) -> None:
        """Stop the real node (if any), then every component, newest first, and remove the cluster directory."""
        self._stop_node()
        for proc in reversed(list(self.processes.values())):
            proc.stop()
        self.processes.clear()
        self._stop_recorded()
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- the real node --------------------------------------------------------------------------

    def _make_node(self) -> RealNode:
        return RealNode(self.directory / "node", bin_dir=self.bin or build_tools(), pki=self.directory / "pki",
                        kubeconfig=self.kubeconfig_path, context=self.name, kubectl=self.kubectl,
                        image_store=CACHE / "real-node" / "containerd", extra_args=self.extra_args)

    def _stop_node(self) -> None:
        """Stop the real node while the API server still runs (its pods are deleted through it)."""
        if not (self.directory / "node" / "node.json").exists():
            return
        node = self.node or self._make_node()
        state = self._load_state() or {}
        apiserver = self.processes.get("apiserver")
        api_alive = apiserver.running if apiserver else process_alive(state.get("pids", {}).get("apiserver", 0))
        node.stop(api_alive=api_alive and self.kubeconfig_path.exists())
        self.node = None

    # -- components ---------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> LocalProcess:
        proc = LocalProcess(name, argv + self.extra_args.get(name, []), workdir=self.directory)
        self.processes[name] = proc
        return proc.spawn()

    def _start(self, name: str, argv: list[str], *, ready, timeout: float = 60) -> None:
        self._spawn(name, argv).wait_ready(ready, timeout=timeout)

    def _start_etcd(self) -> None:
        e, p = self.ports["etcd"], self.ports["etcd-peer"]
        self._start("etcd", [
            str(self.bin / "etcd"), "--name=local", f"--data-dir={self.directory / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{e}", f"--advertise-client-urls=http://127.0.0.1:{e}",
            f"--listen-peer-urls=http://127.0.0.1:{p}", f"--initial-advertise-peer-urls=http://127.0.0.1:{p}",
            f"--initial-cluster=local=http://127.0.0.1:{p}", "--unsafe-no-fsync=true", "--log-level=warn",
        ], ready=lambda: urllib.request.urlopen(f"http://127.0.0.1:{e}/health", timeout=1).status == 200)

    def _start_apiserver(self, pki: Path) -> None:
        a = self.ports["apiserver"]
        self._start("apiserver", [
            str(self.bin / "kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
            "--bind-address=127.0.0.1", f"--secure-port={a}", "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none", f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}", f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-issuer=https://127.0.0.1:{a}", f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}", f"--service-cluster-ip-range={SERVICE_RANGE}",
            "--authorization-mode=Node,RBAC", "--allow-privileged=true",
            "--disable-admission-plugins=TaintNodesByCondition",
            f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client", "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group", "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
            *(RealNode.apiserver_flags(pki) if self.real_node else []),
        ], ready=lambda: self._get(f"https://127.0.0.1:{a}/readyz", pki) == 200, timeout=90)

    def _get(self, url: str, pki: Path) -> int:
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:
            return resp.status

    def _healthz(self, name: str):
        ctx = ssl._create_unverified_context()  # the component's self-signed serving cert
        url = f"https://127.0.0.1:{self.ports[name]}/healthz"
        return lambda: urllib.request.urlopen(url, context=ctx, timeout=1).status == 200

    def _write_kubeconfig(self, pki: Path) -> None:
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": self.name,
            "clusters": [{"name": self.name, "cluster": {
                "server": f"https://127.0.0.1:{self.ports['apiserver']}",
                "certificate-authority": str(pki / "ca.crt")}}],
            "users": [{"name": "admin", "user": {"client-certificate": str(pki / "admin.crt"),
                                                 "client-key": str(pki / "admin.key")}}],
            "contexts": [{"name": self.name, "context": {"cluster": self.name, "user": "admin"}}],
        }
        self.kubeconfig_path.write_text(json.dumps(config, indent=2))

    def _wait(self, condition, deadline: float, what: str, component: str) -> None:
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if condition():
                    return
            time.sleep(0.2)
        proc = self.processes.get(component)
        tail = proc.log_tail() if proc else "(not running)"
        raise ServiceError(f"timed out waiting for {what}; {component} log tail:\n{tail}")

    # -- state across processes (python -m e2e.cluster up / down) ------------------------------

    def _save_state(self) -> None:
        state = {"name": self.name, "ports": self.ports, "bin": str(self.bin), "real_node": self.real_node,
                 "pids": {n: p.proc.pid for n, p in self.processes.items() if p.proc}}
        (self.directory / "state.json").write_text(json.dumps(state, indent=2))

    def _load_state(self) -> dict | None:
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            return json.loads((self.directory / "state.json").read_text())
        return None

    def _stop_recorded(self) -> None:
        """Stop processes recorded by another invocation (each leads its own process group)."""
        state = self._load_state()
        if not state:
            return
        pids = list(state.get("pids", {}).values())
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, sig)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(process_alive(p) for p in pids):
                time.sleep(0.1)
            if not any(process_alive(p) for p in pids):
                break

    def is_running(self) -> bool:
        state = self._load_state()
        return bool(state) and all(process_alive(p) for p in state["pids"].values())

    def attach(self) -> LocalCluster:
        """Use a cluster that ``up`` started in another process."""
        state = self._load_state()
        if not state:
            raise ServiceError(f"no local cluster {self.name!r} is running; start one with `python -m e2e.cluster up`")
        self.ports, self.bin = state["ports"], Path(state["bin"])
        self.real_node = state.get("real_node", False)
        if self.real_node:
            self.node = self._make_node()
        return self




def clusters_with_a_real_node() -> list[Path]:
    """Cluster directories (named ones in the cache, temporary ones in /tmp) whose real node was started."""
    roots = (CACHE / "clusters", Path(tempfile.gettempdir()))
    return sorted({p.parent.parent for root in roots for p in root.glob("*/node/node.json")})


def temporary_cluster(name: str = "ocrfleet-test", **kwargs) -> LocalCluster:
    """A cluster in a fresh temporary directory (tests): removed by ``delete()``."""
    return LocalCluster(name, Path(tempfile.mkdtemp(prefix=f"{name}-")), **kwargs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "status", "kubeconfig", "cleanup"])
    parser.add_argument("--name", default="ocrfleet")
    parser.add_argument("--real-node", action="store_true",
                        help="up: add a real kubelet node beside the kwok nodes (root; see e2e/node.py)")
    args = parser.parse_args(argv)
    cluster = LocalCluster(args.name, real_node=args.real_node)
    if args.command == "up":
        if cluster.is_running():
            cluster.attach()
            print(f"cluster {args.name!r} is already running", file=sys.stderr)
        else:
            cluster.create()
            print(f"cluster {args.name!r} started in {cluster.started_in:.1f} s", file=sys.stderr)
            if cluster.node:
                phases = ", ".join(f"{k} {v:.1f} s" for k, v in cluster.node.timings.items())
                print(f"# real node {NODE_NAME} ({NODE_IP}) started: {phases}", file=sys.stderr)
                print("# its pods (nodeSelector ocrfleet.io/node: real) and Service ClusterIPs answer from this "
                      "host", file=sys.stderr)
        print(f"export KUBECONFIG={cluster.kubeconfig_path}")
        print(f"# helm: {cluster.helm}", file=sys.stderr)
    elif args.command == "down":
        cluster.delete()
        print(f"cluster {args.name!r} stopped", file=sys.stderr)
    elif args.command == "cleanup":
        for directory in clusters_with_a_real_node():
            LocalCluster(directory.name, directory).delete()
            print(f"stopped the cluster in {directory} and its real node", file=sys.stderr)
    elif args.command == "kubeconfig":
        print(cluster.attach().kubeconfig_path)
    else:
        if not cluster.is_running():
            print(f"cluster {args.name!r} is not running")
            return 1
        cluster.attach()
        print(cluster.kubectl("version"))
        print(cluster.kubectl("get", "nodes", "-o", "wide"))
        print(cluster.kubectl("get", "pods", "-A"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
