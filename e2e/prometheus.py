"""A real Prometheus (Debian's package) that scrapes the real node the way the chart's monitors say.

There is no Prometheus Operator here, and Debian builds Prometheus without its Kubernetes
discovery, so this module does those two parts for the kinds the chart renders:

* :func:`discover` lists the cluster's pods and EndpointSlices and writes them as file-based
  targets carrying the ``__meta_kubernetes_*`` labels Prometheus's own ``pod`` and ``endpoints``
  discovery would give them (one target per declared container port, or per endpoint port);
* :func:`scrape_configs` turns each PodMonitor or ServiceMonitor endpoint into a scrape job over
  those targets whose relabelings are what the Prometheus Operator generates: keep the targets
  the monitor's selector and port name pick, set ``namespace``, ``pod``, ``container`` (and
  ``service``, ``endpoint``), then the monitor's own relabelings.

So the selection is Prometheus's relabeling over the real pods: a monitor whose selector or port
does not fit what the operator renders finds no target. Only the fields the chart uses are
translated; anything else is refused rather than ignored. :class:`Prometheus` runs the server
on loopback with ``monitoring/rules.yaml`` loaded; the pods it scrapes are on the real node's
bridge.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
import yaml
from ocrfleet_dev.localproc import free_port

from e2e.node import POD_SUBNET
from e2e.operator_helpers import poll

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "monitoring" / "rules.yaml"
_SELECTOR_KEYS = {"matchLabels", "matchExpressions"}
_ENDPOINT_KEYS = {"port", "path", "interval", "honorLabels", "relabelings"}
_RELABEL_KEYS = {"sourceLabels": "source_labels", "targetLabel": "target_label", "regex": "regex",
                 "replacement": "replacement", "action": "action", "separator": "separator"}


def meta_label(kind: str, key: str) -> str:
    """How Prometheus's Kubernetes discovery names an object label: ``__meta_kubernetes_pod_label_app_x``."""
    return f"__meta_kubernetes_{kind}_label_{re.sub(r'[^a-zA-Z0-9_]', '_', key)}"


def _keep(source: str, regex: str) -> dict:
    return {"source_labels": [source], "regex": regex, "action": "keep"}


def _selector(kind: str, selector: dict) -> list[dict]:
    if unknown := set(selector) - _SELECTOR_KEYS:
        raise ValueError(f"selector fields not translated: {sorted(unknown)}")
    rules = [_keep(meta_label(kind, k), re.escape(v)) for k, v in selector.get("matchLabels", {}).items()]
    for e in selector.get("matchExpressions", []):
        if e["operator"] != "In":
            raise ValueError(f"selector operator {e['operator']} not translated")
        rules.append(_keep(meta_label(kind, e["key"]), "|".join(re.escape(v) for v in e["values"])))
    return rules


def _namespaces(selector: dict) -> list[dict]:
    if selector.get("any"):
        return []
    return [_keep("__meta_kubernetes_namespace", "|".join(re.escape(n) for n in selector["matchNames"]))]


def _relabelings(endpoint: dict) -> list[dict]:
    out = []
    for r in endpoint.get("relabelings", []):
        if unknown := set(r) - set(_RELABEL_KEYS):
            raise ValueError(f"relabeling fields not translated: {sorted(unknown)}")
        out.append({_RELABEL_KEYS[k]: v for k, v in r.items()})
    return out


def _object_labels(kind: str, obj: dict) -> dict[str, str]:
    meta = obj["metadata"]
    return {f"__meta_kubernetes_{kind}_name": meta["name"],
            **{meta_label(kind, k): v for k, v in meta.get("labels", {}).items()}}


def _pod_labels(pod: dict, container: dict) -> dict[str, str]:
    return {**_object_labels("pod", pod), "__meta_kubernetes_namespace": pod["metadata"]["namespace"],
            "__meta_kubernetes_pod_phase": pod["status"].get("phase", ""),
            "__meta_kubernetes_pod_container_name": container["name"]}


def _on_the_real_node(address: str | None) -> bool:
    """Only the real node's pods are scraped: kwok's pods have made-up addresses nothing may be sent to."""
    return bool(address) and ipaddress.ip_address(address) in ipaddress.ip_network(POD_SUBNET)


def discover(kubectl) -> dict[str, list[dict]]:
    """The file-based targets of the ``pod`` and ``endpoints`` roles, from ``kubectl get -A -o json``."""
    pods = json.loads(kubectl("get", "pods", "-A", "-o", "json"))["items"]
    by_name = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in pods}
    pod_targets = []
    for pod in pods:
        ip = pod["status"].get("podIP")
        for container in pod["spec"]["containers"] if _on_the_real_node(ip) else []:
            for port in container.get("ports", []):
                pod_targets.append({"targets": [f"{ip}:{port['containerPort']}"], "labels": {
                    **_pod_labels(pod, container), "__meta_kubernetes_pod_container_port_name": port.get("name", "")}})
    services = {(s["metadata"]["namespace"], s["metadata"]["name"]): s
                for s in json.loads(kubectl("get", "services", "-A", "-o", "json"))["items"]}
    endpoint_targets = []
    for slice_ in json.loads(kubectl("get", "endpointslices", "-A", "-o", "json"))["items"]:
        namespace = slice_["metadata"]["namespace"]
        service = services.get((namespace, slice_["metadata"].get("labels", {}).get("kubernetes.io/service-name")))
        for endpoint in slice_.get("endpoints") or [] if service else []:
            ref = endpoint.get("targetRef") or {}
            pod = by_name.get((namespace, ref.get("name"))) if ref.get("kind") == "Pod" else None
            for port, address in ((p, a) for p in slice_.get("ports") or [] for a in endpoint["addresses"]
                                  if _on_the_real_node(a)):
                labels = {**_object_labels("service", service), "__meta_kubernetes_namespace": namespace,
                          "__meta_kubernetes_endpoint_port_name": port.get("name", "")}
                container = next((c for c in (pod or {}).get("spec", {}).get("containers", [])
                                  if any(cp["containerPort"] == port["port"] for cp in c.get("ports", []))), None)
                if pod and container:
                    labels |= _pod_labels(pod, container)
                endpoint_targets.append({"targets": [f"{address}:{port['port']}"], "labels": labels})
    return {"pod": pod_targets, "endpoints": endpoint_targets}


def scrape_configs(monitors: list[dict], targets: Path, interval: str) -> list[dict]:
    """One scrape job per endpoint of each PodMonitor and ServiceMonitor in ``monitors``, over the
    targets :func:`discover` writes to ``targets/<role>.json``."""
    jobs = []
    for monitor in monitors:
        kind, spec, name = monitor["kind"], monitor["spec"], monitor["metadata"]["name"]
        role = {"PodMonitor": "pod", "ServiceMonitor": "endpoints"}[kind]
        endpoints = spec["podMetricsEndpoints"] if kind == "PodMonitor" else spec["endpoints"]
        for i, endpoint in enumerate(endpoints):
            if unknown := set(endpoint) - _ENDPOINT_KEYS:
                raise ValueError(f"{kind} endpoint fields not translated: {sorted(unknown)}")
            port_label = ("__meta_kubernetes_pod_container_port_name" if role == "pod"
                          else "__meta_kubernetes_endpoint_port_name")
            selected = "pod" if role == "pod" else "service"
            relabel = [*_selector(selected, spec["selector"]), _keep(port_label, re.escape(endpoint["port"])),
                       {"source_labels": ["__meta_kubernetes_pod_phase"], "regex": "Failed|Succeeded",
                        "action": "drop"},
                       {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                       {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                       {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"}]
            if role == "endpoints":
                relabel.append({"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"})
            relabel.append({"target_label": "endpoint", "replacement": endpoint["port"]})
            jobs.append({
                "job_name": f"{kind.lower()}/{monitor['metadata'].get('namespace', '')}/{name}/{i}",
                "scrape_interval": interval,
                "metrics_path": endpoint.get("path", "/metrics"),
                "honor_labels": bool(endpoint.get("honorLabels", False)),
                "file_sd_configs": [{"files": [str(targets / f"{role}.json")], "refresh_interval": "5s"}],
                "relabel_configs": _namespaces(spec.get("namespaceSelector", {})) + relabel + _relabelings(endpoint),
            })
    return jobs


class Prometheus:
    """``prometheus`` on a loopback port, scraping the cluster as ``monitors`` say and evaluating
    ocrfleet's rules; the targets are rediscovered every few seconds until :meth:`stop`."""

    def __init__(self, monitors: list[dict], kubectl, *, interval: str = "2s") -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus not found: Debian's prometheus package (make system installs it)")
        self.directory = Path(tempfile.mkdtemp(prefix="ocrfleet-prometheus-"))
        self.kubectl, self.done = kubectl, threading.Event()
        self._discover()
        self.refresher = threading.Thread(target=self._refresh, daemon=True, name="prometheus-discovery")
        self.refresher.start()
        config = {"global": {"scrape_interval": interval, "evaluation_interval": interval},
                  "rule_files": [str(RULES)], "scrape_configs": scrape_configs(monitors, self.directory, interval)}
        (self.directory / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = self.directory / "prometheus.log"
        self.process = subprocess.Popen(
            [binary, f"--config.file={self.directory / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.directory / 'data'}", f"--web.listen-address={self.url[7:]}"],
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        self.http = httpx.Client(base_url=self.url, timeout=30)
        self.started = time.time()
        try:
            poll(self._ready, 60, "Prometheus to be ready", interval=0.5)
        except AssertionError:
            self.stop()
            raise AssertionError(f"Prometheus did not start; its log:\n{self.log.read_text()[-4000:]}") from None

    def _discover(self) -> None:
        for role, groups in discover(self.kubectl).items():
            path = self.directory / f"{role}.json"
            text = json.dumps(groups, sort_keys=True)
            if not path.exists() or path.read_text() != text:
                path.with_suffix(".tmp").write_text(text)
                os.replace(path.with_suffix(".tmp"), path)

    def _refresh(self) -> None:
        while not self.done.wait(5):
            try:
                self._discover()
            except Exception as exc:  # a slow API server: keep the last targets, try again
                print(f"prometheus discovery: {exc}")

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"Prometheus exited {self.process.returncode}:\n{self.log.read_text()[-4000:]}")
        try:
            return self.http.get("/-/ready").status_code == 200
        except httpx.TransportError:
            return False

    def api(self, path: str, **params) -> dict:
        r = self.http.get(f"/api/v1/{path}", params=params)
        body = r.json()
        assert r.status_code == 200 and body["status"] == "success", f"{path} {params}: {r.status_code} {body}"
        return body["data"]

    def targets(self) -> list[dict]:
        return self.api("targets", state="active")["activeTargets"]

    def query_range(self, expr: str, step: str = "5s") -> list[dict]:
        """``expr`` over everything scraped so far."""
        return self.api("query_range", query=expr, start=self.started, end=time.time(), step=step)["result"]

    def stop(self) -> None:
        self.done.set()
        self.refresher.join(30)
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)
