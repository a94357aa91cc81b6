"""The operator's own Kubernetes client: a few REST verbs over httpx.

kopf watches and patches its resources with its own client; this one does the rest —
server-side apply of children, reads of pods and autoscalers, status writes — with explicit
paths instead of a generated client, so what goes over the wire is plain to see. Credentials
come from the kubeconfig (or the pod's service account) through ``kubernetes.config``.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
from collections.abc import Mapping
from typing import Any

import httpx

# Where each kind the operator handles lives: (API prefix, plural).
RESOURCES: dict[str, tuple[str, str]] = {
    "Deployment": ("/apis/apps/v1", "deployments"),
    "StatefulSet": ("/apis/apps/v1", "statefulsets"),
    "Service": ("/api/v1", "services"),
    "Pod": ("/api/v1", "pods"),
    "Secret": ("/api/v1", "secrets"),
    "ConfigMap": ("/api/v1", "configmaps"),
    "Event": ("/api/v1", "events"),
    "HorizontalPodAutoscaler": ("/apis/autoscaling/v2", "horizontalpodautoscalers"),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    "ScaledObject": ("/apis/keda.sh/v1alpha1", "scaledobjects"),
    "TriggerAuthentication": ("/apis/keda.sh/v1alpha1", "triggerauthentications"),
    "OcrCluster": ("/apis/ocrfleet.io/v1alpha1", "ocrclusters"),
    "OcrJob": ("/apis/ocrfleet.io/v1alpha1", "ocrjobs"),
}


class KubeError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


_SEGMENT = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def path(kind: str, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
    """The REST path of an object; a namespace or name that is not a Kubernetes name (``../x``,
    ``a/b``, ``%2e``) is refused, so no value from a request or a label can steer the path."""
    for part in (namespace, name):
        if part is not None and part != "" and (not _SEGMENT.match(part) or ".." in part):
            raise ValueError(f"{part!r} is not a Kubernetes object name")
    prefix, plural = RESOURCES[kind]
    p = prefix + (f"/namespaces/{namespace}" if namespace else "") + f"/{plural}"
    if name:
        p += f"/{name}"
    if sub:
        p += f"/{sub}"
    return p


class ConfigAuth(httpx.Auth):
    """The bearer token of a ``kubernetes`` client configuration, asked for on every request.

    In a pod the token is a projected, expiring file the kubelet rotates; the in-cluster
    configuration's refresh hook re-reads it (at most once a minute), so a long-running
    operator never sends a token that has expired.
    """

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self._lock = threading.Lock()

    def header(self) -> str | None:
        with self._lock:
            if self.cfg.refresh_api_key_hook is not None:
                self.cfg.refresh_api_key_hook(self.cfg)
            for key, value in (self.cfg.api_key or {}).items():
                prefix = (self.cfg.api_key_prefix or {}).get(key, "")
                return f"{prefix} {value}".strip()
        return None

    def auth_flow(self, request: httpx.Request):
        header = self.header()
        if header:
            request.headers["Authorization"] = header
        yield request


class Kube:
    """A thread-safe client for the handful of calls the operator makes."""

    def __init__(self, http: httpx.Client, *, field_manager: str = "ocrfleet-operator") -> None:
        self.http = http
        self.field_manager = field_manager

    @classmethod
    def from_config(cls, *, field_manager: str = "ocrfleet-operator", kubeconfig: str | None = None) -> Kube:
        from kubernetes import client, config

        cfg = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=cfg)
        except config.ConfigException:
            config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        verify: Any = True
        if cfg.verify_ssl is False:
            verify = False
        elif cfg.ssl_ca_cert:
            verify = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
        if cfg.cert_file and isinstance(verify, ssl.SSLContext):
            verify.load_cert_chain(cfg.cert_file, cfg.key_file)
        http = httpx.Client(base_url=cfg.host, verify=verify, auth=ConfigAuth(cfg), timeout=30.0)
        return cls(http, field_manager=field_manager)

    def close(self) -> None:
        self.http.close()

    # -- verbs -------------------------------------------------------------------------------

    def _send(self, method: str, url: str, **kw) -> httpx.Response:
        response = self.http.request(method, url, **kw)
        if response.status_code >= 400:
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text
            raise KubeError(response.status_code, message)
        return response

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        try:
            return self._send("GET", path(kind, namespace, name)).json()
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, kind: str, namespace: str, *, label_selector: str = "") -> list[dict]:
        params = {"labelSelector": label_selector} if label_selector else {}
        return self._send("GET", path(kind, namespace), params=params).json().get("items", [])

    def create(self, manifest: Mapping) -> dict:
        meta = manifest["metadata"]
        return self._send("POST", path(manifest["kind"], meta["namespace"]), json=manifest,
                          params={"fieldManager": self.field_manager}).json()

    def apply(self, manifest: Mapping) -> dict:
        """Server-side apply, taking over fields another manager changed (drift repair)."""
        meta = manifest["metadata"]
        return self._send(
            "PATCH", path(manifest["kind"], meta["namespace"], meta["name"]),
            content=json.dumps(manifest),
            headers={"Content-Type": "application/apply-patch+yaml"},
            params={"fieldManager": self.field_manager, "force": "true"},
        ).json()

    def merge_patch(self, kind: str, namespace: str, name: str, patch: Mapping, *, sub: str | None = None,
                    field_manager: str | None = None) -> dict:
        return self._send(
            "PATCH", path(kind, namespace, name, sub), content=json.dumps(patch),
            headers={"Content-Type": "application/merge-patch+json"},
            params={"fieldManager": field_manager or self.field_manager},
        ).json()

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        try:
            self._send("DELETE", path(kind, namespace, name),
                       json={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})
            return True
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
