"""The API's settings: the shared core's, plus limits, auth and serving knobs.

Read once from the environment (prefix ``OCRFLEET_``), e.g. ``OCRFLEET_MAX_UPLOAD_BYTES``;
tests build :class:`ApiSettings` directly and pass it to :func:`ocrfleet_api.app.create_app`.
"""

from __future__ import annotations

from pydantic import Field, SecretStr

from ocrfleet.settings import CoreSettings


class ApiSettings(CoreSettings):
    # -- serving ---------------------------------------------------------------------------
    host: str = Field("0.0.0.0", description="host: the address uvicorn binds.")
    port: int = Field(8080, ge=1, le=65535, description="port: the port uvicorn listens on.")
    workers: int = Field(1, ge=1, description="workers: uvicorn worker processes.")
    public_url: str = Field("", description="public_url: prefix of status URLs; empty: relative URLs.")

    # -- input caps ------------------------------------------------------------------------
    max_upload_bytes: int = Field(50 * 1024 * 1024, ge=1,
                                  description="max_upload_bytes: the largest document accepted, in bytes.")
    max_pixels: int = Field(80_000_000, ge=1, description="max_pixels: pixels of an image (width x height).")
    max_pdf_pages: int = Field(50, ge=1, description="max_pdf_pages: pages of a PDF.")
    max_batch_documents: int = Field(100, ge=1, description="max_batch_documents: documents in one batch.")
    max_batch_bytes: int = Field(200 * 1024 * 1024, ge=1,
                                 description="max_batch_bytes: the largest batch request body, in bytes.")
    max_field_bytes: int = Field(8192, ge=64, description="max_field_bytes: a non-file form field, in bytes.")

    # -- auth ------------------------------------------------------------------------------
    signing_master_key: SecretStr = Field(
        SecretStr("change-me"),
        description="signing_master_key: derives each API key's request-signing secret; keep it in a Secret.",
    )
    require_signatures: bool = Field(False, description="require_signatures: every request must be signed.")
    signature_window_s: int = Field(300, ge=1,
                                    description="signature_window_s: accepted clock skew of a signed request.")
    auth_cache_s: float = Field(5.0, ge=0,
                                description="auth_cache_s: how long a looked-up key is trusted (revocation lag).")

    # -- flow control ----------------------------------------------------------------------
    rate_limit_requests: int = Field(6000, ge=1,
                                     description="rate_limit_requests: requests per window per tenant (default).")
    rate_limit_window_s: int = Field(60, ge=1, description="rate_limit_window_s: the rate-limit window.")
    max_queue_depth: int = Field(100_000, ge=0,
                                 description="max_queue_depth: above this many queued documents, submissions get 503.")
    queue_depth_cache_s: float = Field(1.0, ge=0,
                                       description="queue_depth_cache_s: how long a read queue depth is reused.")
    backpressure_retry_after_s: int = Field(30, ge=1,
                                            description="backpressure_retry_after_s: Retry-After of a 503.")
    result_cache_entries: int = Field(10_000, ge=0,
                                      description="result_cache_entries: processed results kept in memory per process.")
    result_cache_ttl_s: float = Field(60.0, ge=0, description="result_cache_ttl_s: how long one is kept.")
    idempotency_ttl_s: int = Field(86_400, ge=1, description="idempotency_ttl_s: how long a first answer is kept.")

    # -- URL submissions -------------------------------------------------------------------
    url_fetch_prefixes: list[str] = Field(
        default_factory=list,
        description="url_fetch_prefixes: URLs the API may fetch documents from; empty disables URL submission.",
    )
    url_fetch_timeout_s: float = Field(30.0, gt=0, description="url_fetch_timeout_s: timeout of a URL fetch.")
