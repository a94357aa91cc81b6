"""Settings every part reads: where Redis, the database and the blobs are, and which pool.

Read once from the environment (prefix ``OCRFLEET_``) into a typed object; each image's own
settings extend :class:`CoreSettings`. Tests build the object directly.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ocrfleet import keys


class CoreSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OCRFLEET_", extra="ignore")

    cluster: str = Field("default", description="cluster: the OcrCluster (processing pool) this process serves.")
    cluster_namespace: str = Field(
        "", description="cluster_namespace: the OcrCluster's namespace (empty outside Kubernetes)."
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="redis_url: the queue and counters.")
    database_url: str = Field(
        "sqlite:///ocrfleet.db", description="database_url: the results store (SQLAlchemy URL)."
    )
    blob_root: str = Field(
        "./blobs", description="blob_root: the content-addressed blob store: a directory, or s3://bucket/prefix."
    )
    s3_endpoint: str = Field("", description="s3_endpoint: http(s)://host:port of the object store (s3:// blobs).")
    s3_access_key: str = Field("", description="s3_access_key: the object store's access key id.")
    s3_secret_key: str = Field("", description="s3_secret_key: the object store's secret key.")
    s3_region: str = Field("us-east-1", description="s3_region: the object store's region.")
    max_attempts: int = Field(3, ge=1, description="max_attempts: tries per document before the dead letters.")
    claim_idle_ms: int = Field(
        60_000, ge=1000, description="claim_idle_ms: how long an in-flight task may idle before it is reclaimed."
    )

    @property
    def pool(self) -> str:
        """The pool's identity in Redis keys (:func:`ocrfleet.keys.pool`)."""
        return keys.pool(self.cluster_namespace, self.cluster)
