"""An external metrics API server: each OcrCluster's queue depth for the HPA.

Registered as the APIService ``v1beta1.external.metrics.k8s.io``, it answers the aggregator:

- ``GET /apis/external.metrics.k8s.io/v1beta1`` — an APIResourceList naming the metric;
- ``GET /apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/ocrfleet_queue_depth
  ?labelSelector=ocrfleet.io/cluster=NAME`` — an ExternalMetricValueList with the cluster's
  waiting + in-flight documents. Counting the in-flight ones keeps the HPA from scaling
  away workers that are still busy.

It serves TLS only (the aggregator insists) with the certificate the chart keeps in a Secret
(its CA is the APIService's ``caBundle``), and answers only the aggregator: a metrics request
must present a client certificate signed by the cluster's request-header CA (the
``extension-apiserver-authentication`` ConfigMap in ``kube-system``) whose name is among its
allowed names. Namespace and cluster names are checked to be Kubernetes names before they are
used. Redis is read off the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from ocrfleet.queue import QueueDepth
from ocrfleet_operator.builders import CLUSTER_LABEL, QUEUE_DEPTH_METRIC

log = logging.getLogger(__name__)

GROUP_VERSION = "external.metrics.k8s.io/v1beta1"
BASE = f"/apis/{GROUP_VERSION}"

# (namespace, cluster) -> its queue depth, or None for a cluster nobody knows.
DepthSource = Callable[[str, str], QueueDepth | None]
# namespace -> the clusters known there.
ClusterLister = Callable[[str], list[str]]


_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class ClientAuth:
    """Who may ask: certificates of ``ca_pem`` whose common name is in ``allowed_names``
    (any name of that CA when the list is empty, as the aggregator's own check does)."""

    ca_pem: str
    allowed_names: tuple[str, ...] = ()

    @classmethod
    def from_configmap(cls, data: dict) -> ClientAuth:
        """From ``kube-system/extension-apiserver-authentication``'s data."""
        ca = data.get("requestheader-client-ca-file", "")
        if not ca:
            raise LookupError("extension-apiserver-authentication has no requestheader-client-ca-file: the API "
                              "server runs without --requestheader-client-ca-file, so no aggregator can be verified")
        return cls(ca, tuple(json.loads(data.get("requestheader-allowed-names") or "[]")))

    def allows(self, peercert: dict | None) -> bool:
        if not peercert:
            return False
        names = [v for rdn in peercert.get("subject", ()) for k, v in rdn if k == "commonName"]
        return not self.allowed_names or any(n in self.allowed_names for n in names)


def parse_label_selector(selector: str) -> dict[str, str]:
    """Equality terms of a label selector (``a=b,c==d``); set-based terms are ignored."""
    out = {}
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term or "=" not in term:
            continue
        key, _, value = term.replace("==", "=").partition("=")
        out[key.strip()] = value.strip()
    return out


def resource_list() -> dict:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [{"name": QUEUE_DEPTH_METRIC, "singularName": "", "namespaced": True,
                       "kind": "ExternalMetricValueList", "verbs": ["get"]}],
    }


def metric_value_list(values: dict[str, int], *, now: datetime) -> dict:
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "kind": "ExternalMetricValueList",
        "apiVersion": GROUP_VERSION,
        "metadata": {},
        "items": [
            {"metricName": QUEUE_DEPTH_METRIC, "metricLabels": {CLUSTER_LABEL: cluster},
             "timestamp": stamp, "value": str(depth)}
            for cluster, depth in sorted(values.items())
        ],
    }


def _status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                              "message": message, "reason": reason, "code": code}, status=code)


def make_app(depth_of: DepthSource, clusters_in: ClusterLister, auth: ClientAuth | None = None) -> web.Application:
    @web.middleware
    async def aggregator_only(request: web.Request, handler):
        if request.path.startswith(BASE) and auth is not None and not auth.allows(
                request.transport.get_extra_info("peercert") if request.transport else None):
            return _status(401, "Unauthorized", "external metrics are served to the API server's aggregator only: "
                           "present a client certificate of its request-header CA")
        return await handler(request)

    async def discovery(_request: web.Request) -> web.Response:
        return web.json_response(resource_list())

    async def metric(request: web.Request) -> web.Response:
        ns, name = request.match_info["namespace"], request.match_info["metric"]
        if name != QUEUE_DEPTH_METRIC:
            return _status(404, "NotFound", f"no external metric {name!r}; this adapter serves {QUEUE_DEPTH_METRIC}")
        labels = parse_label_selector(request.query.get("labelSelector", ""))
        bad = [v for v in (ns, labels.get(CLUSTER_LABEL, "x")) if not _NAME.match(v)]
        if bad:
            return _status(400, "BadRequest", f"{bad[0]!r} is not a Kubernetes name (a namespace or an OcrCluster)")
        names = [labels[CLUSTER_LABEL]] if CLUSTER_LABEL in labels else await asyncio.to_thread(clusters_in, ns)
        values = {}
        for cluster in names:
            try:
                depth = await asyncio.to_thread(depth_of, ns, cluster)
            except Exception as exc:  # Redis away: the HPA keeps its last decision
                log.warning("queue depth of %s/%s unavailable: %s", ns, cluster, exc)
                return _status(503, "ServiceUnavailable", f"queue depth of {ns}/{cluster} unavailable: {exc}")
            if depth is not None:
                values[cluster] = depth.total
        if CLUSTER_LABEL in labels and not values:
            return _status(404, "NotFound", f"no OcrCluster {labels[CLUSTER_LABEL]!r} in namespace {ns!r}")
        return web.json_response(metric_value_list(values, now=datetime.now(UTC)))

    async def healthy(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(middlewares=[aggregator_only])
    app.router.add_get(BASE, discovery)
    app.router.add_get(BASE + "/", discovery)
    app.router.add_get(BASE + "/namespaces/{namespace}/{metric}", metric)
    app.router.add_get("/healthz", healthy)
    app.router.add_get("/readyz", healthy)
    return app


def tls_context(cert: str = "", key: str = "", auth: ClientAuth | None = None) -> ssl.SSLContext:
    """The serving certificate (the given files, or a fresh self-signed one for local runs); with
    ``auth``, client certificates are asked for and verified against its CA (the middleware
    then refuses metrics requests without one; probes of /healthz need none)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if auth is not None:
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(cadata=auth.ca_pem)
    if cert:
        ctx.load_cert_chain(cert, key)
        return ctx
    with tempfile.TemporaryDirectory() as tmp:
        cert_path, key_path = _self_signed(Path(tmp))
        ctx.load_cert_chain(cert_path, key_path)
    return ctx


def _self_signed(directory: Path) -> tuple[Path, Path]:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ocrfleet-metrics")])
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class MetricsAdapter:
    """The server's life: :meth:`start` on the operator's loop, :meth:`stop` at clean-up."""

    def __init__(self, depth_of: DepthSource, clusters_in: ClusterLister, *, host: str, port: int,
                 ssl_context: ssl.SSLContext, auth: ClientAuth | None = None) -> None:
        self.app = make_app(depth_of, clusters_in, auth)
        self.host, self.port, self.ssl_context = host, port, ssl_context
        self.runner: web.AppRunner | None = None

    async def start(self) -> int:
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port, ssl_context=self.ssl_context)
        await site.start()
        sockets = site._server.sockets if site._server else []  # the bound port when port=0
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.info("external metrics adapter listening on https://%s:%d%s", self.host, self.port, BASE)
        return self.port

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()
            self.runner = None
