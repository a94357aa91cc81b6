"""Field extraction: from a page's recognised lines to typed fields, table rows and checks.

One module per document type; each exposes ``extract(lines) -> Extraction``. Extractors
never raise on odd input: a field they cannot find is returned with ``value=None`` so the
result always says what was looked for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ocrfleet.results import Check, ExtractedField, TextLine


@dataclass
class Extraction:
    """What an extractor found on one page."""

    fields: list[ExtractedField] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    def get(self, name: str) -> ExtractedField | None:
        return next((f for f in self.fields if f.name == name), None)


def extractor(document_type: str) -> Callable[[list[TextLine]], Extraction]:
    """The extractor for a document type (``generic`` for any type without its own)."""
    from ocrfleet_worker.fields import bank_statement, generic, id_card

    return {"id_card": id_card.extract, "bank_statement": bank_statement.extract}.get(
        document_type, generic.extract
    )


def extract(document_type: str, lines: list[TextLine]) -> Extraction:
    return extractor(document_type)(lines)
