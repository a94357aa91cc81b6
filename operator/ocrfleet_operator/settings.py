"""The operator's settings: read once from the environment (prefix ``OCRFLEET_``).

Extends the shared :class:`~ocrfleet.settings.CoreSettings` (Redis, blobs, attempts) with
what only the operator needs: watch timeouts, status throttling, the metrics adapter.
Tests build the object directly and hand it to :meth:`ocrfleet_operator.runtime.Runtime.create`.
"""

from __future__ import annotations

from pydantic import Field

from ocrfleet import __version__
from ocrfleet.settings import CoreSettings, StrList


class OperatorSettings(CoreSettings):
    namespace: str = Field(
        "", description="namespace: watch only this namespace; empty watches all namespaces."
    )
    watch_server_timeout: int = Field(
        300, ge=10, description="watch_server_timeout: seconds the API server keeps one watch open."
    )
    watch_client_timeout: int = Field(
        330, ge=10, description="watch_client_timeout: seconds before the operator drops a stalled watch."
    )
    watch_connect_timeout: int = Field(
        30, ge=1, description="watch_connect_timeout: seconds to connect to the API server."
    )
    reconcile_interval: float = Field(
        5.0, gt=0, description="reconcile_interval: seconds between cluster status/scale checks."
    )
    job_progress_interval: float = Field(
        3.0, gt=0, description="job_progress_interval: seconds between reads of a job's counters."
    )
    status_min_interval: float = Field(
        3.0, ge=0, description="status_min_interval: at least this many seconds between two "
        "progress-only status writes of one object (phase changes are written at once)."
    )
    field_manager: str = Field(
        "ocrfleet-operator", description="field_manager: the server-side-apply manager name."
    )
    log_level: str = Field("INFO", description="log_level: DEBUG, INFO, WARNING or ERROR.")
    allowed_image_prefixes: StrList = Field(
        default_factory=list, description="allowed_image_prefixes: every image a pool's pods run must start with "
        "one of these (registry/repository prefixes); empty allows any.")
    api_image: str = Field(
        f"ghcr.io/ocrfleet/api:{__version__}", min_length=1, description="api_image: the API image of a pool whose "
        "spec.api.image is empty (the chart: pools.images with its appVersion).")
    worker_image: str = Field(
        f"ghcr.io/ocrfleet/worker:{__version__}", min_length=1, description="worker_image: the worker (and Triton) "
        "image of a pool whose spec.workers.image is empty (the chart: pools.images with its appVersion).")
    allowed_toleration_keys: StrList = Field(
        default_factory=list, description="allowed_toleration_keys: taint keys a pool's pods may tolerate; empty "
        "allows any.")
    liveness_port: int = Field(
        8080, ge=0, le=65535, description="liveness_port: kopf's /healthz port; 0 disables it."
    )
    prometheus_port: int = Field(
        8081, ge=0, le=65535, description="prometheus_port: plain-HTTP port of the operator's own Prometheus "
        "metrics (/metrics); 0 disables it.")
    prometheus_host: str = Field("0.0.0.0", description="prometheus_host: the Prometheus exposition's listen address.")
    metrics_port: int = Field(
        6443, ge=0, le=65535, description="metrics_port: TLS port of the external metrics adapter; 0 disables it."
    )
    metrics_host: str = Field("0.0.0.0", description="metrics_host: the adapter's listen address.")
    metrics_tls_cert: str = Field(
        "", description="metrics_tls_cert: PEM certificate file; empty generates a self-signed one."
    )
    metrics_tls_key: str = Field("", description="metrics_tls_key: PEM key file of metrics_tls_cert.")
    metrics_client_auth: bool = Field(
        True, description="metrics_client_auth: answer metrics requests only with a client certificate of the "
        "cluster's request-header CA (the aggregator's); false serves anyone who reaches the port.")
