"""Masking sensitive fields on the way out, per a document's policy.

The worker stores pages already masked; the API masks again when it answers (a result reused
from the cache may come from a document with a laxer policy, and defence in depth is cheap).
A masked value keeps only its last four characters.
"""

from __future__ import annotations

from collections.abc import Iterable

from ocrfleet.results import DocumentResult


def mask_value(value: str | None, keep: int = 4) -> str | None:
    if value is None:
        return None
    if len(value) <= keep:
        return "*" * len(value)
    return "*" * (len(value) - keep) + value[-keep:]


def apply_policy(result: DocumentResult, mask_fields: Iterable[str]) -> DocumentResult:
    """A copy of ``result`` with every field named in ``mask_fields`` masked."""
    names = set(mask_fields)
    if not names or not result.pages:
        return result
    pages = []
    for page in result.pages:
        fields = [f.model_copy(update={"value": mask_value(f.value), "masked": True})
                  if f.name in names and not f.masked else f
                  for f in page.fields]
        pages.append(page.model_copy(update={"fields": fields}))
    return result.model_copy(update={"pages": pages})
