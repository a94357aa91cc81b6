"""Cache reuse: when an earlier result of the same content may answer a new document.

A tenant that sends the same bytes again gets the earlier result instead of another OCR run.
The earlier result is usable when it belongs to the same tenant, succeeded, was read by the
model version now asked for (:mod:`ocrfleet.models`), was read as the type now asked for (or
``auto`` is asked), and was masked by no field the new document leaves unmasked
(:meth:`MaskPolicy.covers`): the new policy is then applied on top. Only documents
that were really processed are candidates, never copies of them. The API's intake and
cache check and the worker's consumer all decide through :func:`find_reusable`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ocrfleet.masking import MaskPolicy, mask_page
from ocrfleet.results import DocumentResult, PageResult
from ocrfleet.store import ResultStore

CANDIDATES = 5
"""How many of the newest matching documents are looked at."""


@dataclass(frozen=True)
class Reused:
    result: DocumentResult
    """The earlier document's result, its pages masked per the new document's policy."""

    @property
    def source(self) -> str:
        """The document whose result is reused."""
        return self.result.document_id

    @property
    def model(self) -> str | None:
        """The version that read the earlier document."""
        return self.result.model

    @property
    def document_type(self) -> str:
        return self.result.document_type or "generic"

    @property
    def pages(self) -> list[PageResult]:
        return self.result.pages


def find_reusable(store: ResultStore, tenant: str, sha256: str, policy: MaskPolicy, *,
                  requested_type: str = "auto", exclude: str = "", model: str | None = None) -> Reused | None:
    """The newest earlier result that may answer a new document of ``tenant`` with this content,
    read by ``model`` (the default version without one) and masked per ``policy``; None when
    there is none (``exclude``: the new document's own id)."""
    for row in store.processed_results(tenant, sha256, exclude=exclude, limit=CANDIDATES, model=model):
        masked = MaskPolicy.from_names(row.mask_fields or [])
        if requested_type not in ("auto", row.document_type or "generic") or not policy.covers(masked):
            continue
        earlier = store.get(row.id, tenant=tenant)  # one read of the document and its pages
        if earlier is not None:
            return Reused(earlier.model_copy(update={"pages": [mask_page(p, policy) for p in earlier.pages]}))
    return None
