"""Settings every part reads: where Redis, the database and the blobs are, and which pool.

Read once from the environment (prefix ``OCRFLEET_``) into a typed object; each image's own
settings extend :class:`CoreSettings`. Tests build the object directly.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Annotated

from pydantic import BeforeValidator, Field, SecretStr
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ocrfleet import __version__, keys


def _str_list(value):
    """A JSON list (as the operator renders it) or comma-separated values."""
    if isinstance(value, str):
        return json.loads(value) if value.lstrip().startswith("[") else [v for v in value.split(",") if v.strip()]
    return value


StrList = Annotated[list[str], NoDecode, BeforeValidator(_str_list)]
"""A list setting: ``OCRFLEET_X='["a", "b"]'`` or ``OCRFLEET_X=a,b``."""


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
    mask_default: StrList = Field(
        default_factory=lambda: ["all"],
        description="mask_default: fields masked in every result unless a tenant has its own policy "
        "(a JSON list or comma-separated names; 'all', or 'none'); requests can only add to it.",
    )
    max_attempts: int = Field(3, ge=1, description="max_attempts: tries per document before the dead letters.")
    claim_idle_ms: int = Field(
        60_000, ge=1000, description="claim_idle_ms: how long an in-flight task may idle before it is reclaimed."
    )

    @property
    def pool(self) -> str:
        """The pool's identity in Redis keys (:func:`ocrfleet.keys.pool`)."""
        return keys.pool(self.cluster_namespace, self.cluster)


def describe(settings: type[BaseSettings]) -> str:
    """Every ``OCRFLEET_*`` variable a settings class reads, with its default and what it does."""
    lines = []
    for name, field in settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, SecretStr):
            shown = "(a secret: its default is not shown)" if default.get_secret_value() else ""
        else:
            shown = default if isinstance(default, str) else json.dumps(default, default=str)
        description = (field.description or "").removeprefix(f"{name}: ")
        lines.append(f"  OCRFLEET_{name.upper()}={shown}\n      {description}")
    return "\n".join(lines)


def command_line(argv: Sequence[str], *, program: str, summary: str, settings: type[BaseSettings]) -> None:
    """An image's program takes no arguments but ``--help`` (its settings, from the environment)
    and ``--version``; both print and exit, anything else is refused with a usage line."""
    parser = argparse.ArgumentParser(
        prog=program, description=summary, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="settings, read from the environment (shown with their defaults):\n" + describe(settings))
    parser.add_argument("--version", action="version", version=f"%(prog)s (ocrfleet {__version__})")
    parser.parse_args(list(argv))
