"""Tenants and their API keys: create, issue, revoke, look up (the database side of auth).

Used by the admin CLI (:mod:`ocrfleet_api.admin`) and by :mod:`ocrfleet_api.auth`. A key is
shown once, when it is issued, together with its request-signing secret; afterwards only its
hash is known. The signing secret is never stored: it is derived from the deployment's
master key and the key id, so the database alone cannot forge signatures.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select

from ocrfleet.store import ResultStore, utcnow
from ocrfleet_api.tables import ApiKeyRow, TenantRow

KEY_PREFIX = "ofk"
_TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class IssuedKey:
    """A freshly issued key: the only time its plaintext and signing secret are seen."""

    tenant: str
    key_id: str
    api_key: str
    signing_secret: str


@dataclass(frozen=True)
class KeyRecord:
    """What auth needs to know about a key (cached briefly by :mod:`ocrfleet_api.auth`)."""

    key_id: str
    tenant: str
    key_sha256: str
    revoked: bool
    tenant_active: bool
    require_signature: bool
    rate_limit: int | None
    mask_fields: list[str] | None = None
    """The tenant's own masking policy; None: the deployment's default."""
    ocrjob_namespaces: tuple[str, ...] = ()
    """Namespaces whose OcrJob results the tenant may read."""


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def split_key(api_key: str) -> str | None:
    """The key id of a well-formed key, else None."""
    parts = api_key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not re.fullmatch(r"[0-9a-f]{16}", parts[1]) or not parts[2]:
        return None
    return parts[1]


def signing_secret(master_key: str, key_id: str) -> str:
    """The request-signing secret of a key, derived (never stored)."""
    return hmac.new(master_key.encode(), f"ocrfleet-signing:{key_id}".encode(), hashlib.sha256).hexdigest()


class TenantDirectory:
    """Tenant and key rows in the results database."""

    def __init__(self, store: ResultStore, master_key: str) -> None:
        self.store = store
        self.master_key = master_key

    def create_tenant(self, name: str, *, require_signature: bool = False, rate_limit: int | None = None,
                      mask_fields: list[str] | None = None, ocrjob_namespaces: list[str] | None = None) -> None:
        if not _TENANT_NAME.match(name):
            raise ValueError(f"tenant name {name!r} must be lowercase letters, digits, '.', '_' or '-'")
        with self.store.session() as s:
            if s.get(TenantRow, name) is not None:
                raise ValueError(f"tenant {name!r} exists already")
            s.add(TenantRow(name=name, require_signature=require_signature, rate_limit=rate_limit,
                            mask_fields=mask_fields, ocrjob_namespaces=ocrjob_namespaces))

    def update_tenant(self, name: str, *, active: bool | None = None, require_signature: bool | None = None,
                      rate_limit: int | None = None, mask_fields: list[str] | None = None,
                      ocrjob_namespaces: list[str] | None = None) -> None:
        with self.store.session() as s:
            row = s.get(TenantRow, name)
            if row is None:
                raise KeyError(f"no tenant {name!r}")
            if active is not None:
                row.active = active
            if require_signature is not None:
                row.require_signature = require_signature
            if rate_limit is not None:
                row.rate_limit = rate_limit
            if mask_fields is not None:
                row.mask_fields = mask_fields
            if ocrjob_namespaces is not None:
                row.ocrjob_namespaces = ocrjob_namespaces

    def issue_key(self, tenant: str, *, label: str = "") -> IssuedKey:
        key_id = secrets.token_hex(8)
        api_key = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        with self.store.session() as s:
            if s.get(TenantRow, tenant) is None:
                raise KeyError(f"no tenant {tenant!r}; create it first")
            s.add(ApiKeyRow(key_id=key_id, tenant=tenant, key_sha256=hash_key(api_key), label=label))
        return IssuedKey(tenant=tenant, key_id=key_id, api_key=api_key,
                         signing_secret=signing_secret(self.master_key, key_id))

    def revoke_key(self, key_id: str) -> None:
        with self.store.session() as s:
            row = s.get(ApiKeyRow, key_id)
            if row is None:
                raise KeyError(f"no API key {key_id!r}")
            if row.revoked_at is None:
                row.revoked_at = utcnow()

    def lookup(self, key_id: str) -> KeyRecord | None:
        with self.store.session() as s:
            found = s.execute(
                select(ApiKeyRow, TenantRow).join(TenantRow, TenantRow.name == ApiKeyRow.tenant)
                .where(ApiKeyRow.key_id == key_id)
            ).first()
            if found is None:
                return None
            key, tenant = found
            return KeyRecord(key_id=key.key_id, tenant=key.tenant, key_sha256=key.key_sha256,
                             revoked=key.revoked_at is not None, tenant_active=tenant.active,
                             require_signature=tenant.require_signature, rate_limit=tenant.rate_limit,
                             mask_fields=tenant.mask_fields,
                             ocrjob_namespaces=tuple(tenant.ocrjob_namespaces or ()))

    def list_keys(self, tenant: str) -> list[tuple[str, str, bool]]:
        with self.store.session() as s:
            rows = s.scalars(select(ApiKeyRow).where(ApiKeyRow.tenant == tenant).order_by(ApiKeyRow.created_at))
            return [(r.key_id, r.label, r.revoked_at is not None) for r in rows]
