"""The operator's Kubernetes client follows a rotated service-account token."""

from __future__ import annotations

import datetime as dt

import httpx
from kubernetes import client
from kubernetes.config.incluster_config import InClusterConfigLoader
from ocrfleet_operator.kube import ConfigAuth, Kube


def test_a_rotated_service_account_token_is_used_from_the_next_request(tmp_path):
    token, ca = tmp_path / "token", tmp_path / "ca.crt"
    token.write_text("first-token")
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    loader = InClusterConfigLoader(str(token), str(ca), environ={
        "KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"})
    loader._token_refresh_period = dt.timedelta(0)  # the kubelet rotates hourly; re-read at once here
    cfg = client.Configuration()
    loader.load_and_set(cfg)
    seen = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(200, json={"kind": "ConfigMap"})

    kube = Kube(httpx.Client(base_url="https://10.0.0.1", transport=httpx.MockTransport(answer),
                             auth=ConfigAuth(cfg)))
    kube.get("ConfigMap", "kube-system", "extension-apiserver-authentication")
    token.write_text("rotated-token")
    kube.get("ConfigMap", "kube-system", "extension-apiserver-authentication")
    assert seen == ["bearer first-token", "bearer rotated-token"]
