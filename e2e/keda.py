"""KEDA's own operator and metrics server beside the local control plane, for pools with
``workers.autoscaler: keda``.

Both programs are built from KEDA's module source (``e2e/tools/keda/build.sh``, cached) and run
as local processes with the cluster's kubeconfig, the way ``e2e/operator_support.py`` runs
ocrfleet's operator: KEDA's CRDs come from the same module source, the operator's gRPC metrics
service and the metrics server share one certificate made here, and the metrics server is
registered as the cluster's external metrics APIService (through an ExternalName Service to
localhost) for as long as :class:`Keda` runs; afterwards the caller puts its own back.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

from ocrfleet_dev.localproc import free_port

from e2e.certs import make_serving_cert
from e2e.operator_helpers import poll
from e2e.operator_support import APISERVICE, apiservice_manifest

BUILD = Path(__file__).resolve().parent / "tools" / "keda" / "build.sh"
NAMESPACE = "keda"
SERVICE = "keda-metrics-local"


def binaries() -> Path:
    """The directory with keda-operator and keda-adapter (built, or found cached)."""
    run = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, timeout=3600)
    assert run.returncode == 0, f"building KEDA ({BUILD}) failed:\n{run.stderr[-4000:]}"
    return Path(run.stdout.strip().splitlines()[-1])


def crd_directory() -> Path:
    """KEDA's CRDs, from the module source the binaries were built from."""
    version = next(line.split("=", 1)[1].split()[0] for line in BUILD.read_text().splitlines()
                   if line.startswith("KEDA_VERSION="))
    out = subprocess.run(["go", "mod", "download", "-json", f"github.com/kedacore/keda/v2@{version}"],
                         capture_output=True, text=True, check=True, timeout=600).stdout
    return Path(json.loads(out)["Dir"]) / "config" / "crd" / "bases"


class Keda:
    """KEDA's operator and metrics server running against ``cluster``; logs under ``workdir``."""

    def __init__(self, cluster, workdir: Path) -> None:
        self.cluster, self.workdir = cluster, workdir
        self.bin = binaries()
        self.certs = workdir / "certs"
        # one certificate for the operator's gRPC server, the metrics server's client of it (mutual
        # TLS, as KEDA's chart does) and the metrics server's own HTTPS
        ca, _, _ = make_serving_cert(self.certs, f"{SERVICE}.{NAMESPACE}.svc", client=True)
        shutil.copy(ca, self.certs / "ca.crt")  # where KEDA's gRPC TLS looks for its CA
        self.ca = ca
        self.grpc_port, self.adapter_port = free_port(), free_port()
        self.procs: dict[str, subprocess.Popen] = {}

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _start(self, name: str, args: list[str]) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig_path), "WATCH_NAMESPACE": "",
               "POD_NAMESPACE": NAMESPACE, "KEDA_CLUSTER_OBJECT_NAMESPACE": NAMESPACE}
        with open(self.workdir / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen([str(self.bin / name), *args], env=env, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)

    def _alive(self) -> bool:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{self.log(name)[-4000:]}")
        return True

    def start(self) -> None:
        kubectl = self.cluster.kubectl
        kubectl("apply", "--server-side", "-f", str(crd_directory()))
        self.cluster.wait_established("scaledobjects.keda.sh", "triggerauthentications.keda.sh")
        kubectl("create", "namespace", NAMESPACE, check=False)
        kubeconfig = str(self.cluster.kubeconfig_path)
        self._start("keda-operator", [
            f"--metrics-bind-address=127.0.0.1:{free_port()}", f"--health-probe-bind-address=127.0.0.1:{free_port()}",
            f"--metrics-service-bind-address=127.0.0.1:{self.grpc_port}", f"--cert-dir={self.certs}",
            "--enable-cert-rotation=false", "--enable-webhook-patching=false", "--enable-apiservice-patching=false",
            "--leader-elect=false", "--zap-log-level=info"])
        self._start("keda-adapter", [
            f"--secure-port={self.adapter_port}", "--bind-address=127.0.0.1", f"--cert-dir={self.certs}",
            f"--tls-cert-file={self.certs / 'tls.crt'}", f"--tls-private-key-file={self.certs / 'tls.key'}",
            f"--metrics-service-address=127.0.0.1:{self.grpc_port}", f"--port={free_port()}",
            f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}",
            f"--lister-kubeconfig={kubeconfig}", f"--kubeconfig={kubeconfig}"])
        kubectl("apply", "-f", "-", input=self._apiservice())
        poll(lambda: self._alive() and "True" in kubectl(
            "get", "apiservice", APISERVICE, "-o", "jsonpath={.status.conditions[?(@.type=='Available')].status}",
            check=False), 120, "KEDA's metrics server to be the Available external metrics APIService")

    def _apiservice(self) -> str:
        return apiservice_manifest(self.adapter_port, self.ca, service=SERVICE, namespace=NAMESPACE)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
