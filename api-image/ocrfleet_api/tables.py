"""The API's own tables: tenants, their API keys, and batches (on the shared ``Base``).

An API key is ``ofk_<key_id>_<secret>``; only its SHA-256 is stored (keys are long random
tokens, so a fast hash is enough and no plaintext ever reaches the database). ``key_id`` is
the lookup handle and appears in logs; the secret never does.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ocrfleet.store import Base, utcnow


class TenantRow(Base):
    __tablename__ = "api_tenants"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    require_signature: Mapped[bool] = mapped_column(Boolean, default=False)
    rate_limit: Mapped[int | None] = mapped_column(Integer, default=None)
    """Requests per rate-limit window; None: the deployment's default."""
    mask_fields: Mapped[list | None] = mapped_column(JSON, default=None)
    """The tenant's masking policy (field names; [] masks nothing); None: the deployment's default."""
    ocrjob_namespaces: Mapped[list | None] = mapped_column(JSON, default=None)
    """Namespaces whose OcrJob results the tenant's keys may read; None: none."""
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128), ForeignKey("api_tenants.name", ondelete="CASCADE"),
                                        index=True)
    key_sha256: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class BatchRow(Base):
    __tablename__ = "api_batches"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128), index=True)
    total: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
