"""The API's settings: the shared core's, plus limits, auth and serving knobs.

Read once from the environment (prefix ``OCRFLEET_``), e.g. ``OCRFLEET_MAX_UPLOAD_BYTES``;
tests build :class:`ApiSettings` directly and pass it to :func:`ocrfleet_api.app.create_app`.
"""

from __future__ import annotations

from pydantic import Field, SecretStr

from ocrfleet.settings import CoreSettings, StrList

KNOWN_WEAK_KEYS = frozenset({"change-me", "changeme", "secret", "password", "ocrfleet", "test", "default"})
MIN_MASTER_KEY = 32


class ApiSettings(CoreSettings):
    # -- serving ---------------------------------------------------------------------------
    host: str = Field("0.0.0.0", description="host: the address uvicorn binds.")
    port: int = Field(8080, ge=1, le=65535, description="port: the port uvicorn listens on.")
    workers: int = Field(1, ge=1, description="workers: uvicorn worker processes.")
    public_url: str = Field("", description="public_url: prefix of status URLs; empty: relative URLs.")
    metrics_port: int = Field(9090, ge=0, le=65535,
                              description="metrics_port: Prometheus metrics, apart from the tenants' port; 0: none.")

    # -- input caps ------------------------------------------------------------------------
    max_upload_bytes: int = Field(50 * 1024 * 1024, ge=1,
                                  description="max_upload_bytes: the largest document accepted, in bytes.")
    max_pixels: int = Field(80_000_000, ge=1, description="max_pixels: pixels of an image (width x height).")
    max_pdf_pages: int = Field(50, ge=1, description="max_pdf_pages: pages of a PDF (a pool's "
                               "spec.preprocessing.maxPages; the worker's max_pages).")
    max_batch_documents: int = Field(100, ge=1, description="max_batch_documents: documents in one batch.")
    max_batch_bytes: int = Field(200 * 1024 * 1024, ge=1,
                                 description="max_batch_bytes: the largest batch request body, in bytes.")
    max_json_bytes: int = Field(64 * 1024, ge=1024,
                                description="max_json_bytes: any request body that is not an upload, in bytes.")
    max_field_bytes: int = Field(8192, ge=64, description="max_field_bytes: a non-file form field, in bytes.")

    # -- auth ------------------------------------------------------------------------------
    signing_master_key: SecretStr = Field(
        SecretStr(""),
        description="signing_master_key: derives each API key's request-signing secret; at least 32 random "
        "characters, kept in a Secret (the operator generates one per pool). Required.",
    )
    require_signatures: bool = Field(False, description="require_signatures: every request must be signed.")
    signature_window_s: int = Field(300, ge=1,
                                    description="signature_window_s: accepted clock skew of a signed request.")
    auth_cache_s: float = Field(5.0, ge=0,
                                description="auth_cache_s: how long a looked-up key is trusted (revocation lag).")
    auth_miss_cache_s: float = Field(
        30.0, ge=0, description="auth_miss_cache_s: how long a key id that names no key is remembered as unknown "
        "(a probe repeated costs no database lookup).")
    auth_failure_limit: int = Field(
        60, ge=1, description="auth_failure_limit: failed authentications one client address may make per minute "
        "before its unknown keys are refused with 429 without a lookup.")

    database_timeout_s: float = Field(
        10.0, gt=0, description="database_timeout_s: a read the database does not answer within this is a 503.")

    # -- flow control ----------------------------------------------------------------------
    rate_limit_requests: int = Field(600, ge=1,
                                     description="rate_limit_requests: requests per window per tenant without a "
                                     "limit of its own (a pool's spec.api.rateLimitPerMinute).")
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
    url_fetch_prefixes: StrList = Field(
        default_factory=list,
        description="url_fetch_prefixes: URLs the API may fetch documents from; empty disables URL submission.",
    )
    url_fetch_timeout_s: float = Field(30.0, gt=0, description="url_fetch_timeout_s: timeout of a URL fetch.")

    def master_key(self) -> str:
        """The signing master key, refused when it is missing, short or a known default: with a
        known key anyone holding an API key could derive its signing secret."""
        key = self.signing_master_key.get_secret_value()
        if not key:
            raise ValueError("OCRFLEET_SIGNING_MASTER_KEY is not set; give the API a random key of at least "
                             f"{MIN_MASTER_KEY} characters (e.g. openssl rand -hex 32) from a Secret")
        if key.lower() in KNOWN_WEAK_KEYS or len(key) < MIN_MASTER_KEY:
            raise ValueError(f"OCRFLEET_SIGNING_MASTER_KEY is a known default or shorter than {MIN_MASTER_KEY} "
                             "characters; request signing would be worthless. Use a random key "
                             "(e.g. openssl rand -hex 32)")
        return key
