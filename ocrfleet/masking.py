"""Masking sensitive fields: the one rule set, applied to fields, text lines and table rows.

A policy names the fields to mask (``"all"`` means every sensitive field, ``"none"`` none).
A document's policy is its deployment's or tenant's default (:attr:`CoreSettings.mask_default`,
a tenant's own policy, an OcrCluster's ``spec.masking.default``) plus what its request or
OcrJob asks for: a request can add fields, never remove the default's.

Each field has its rule — an ID number keeps its region prefix and last two characters
(``110***********34``, a fixed-width mask), an account number its last four digits, a name its
surname — and the same value is replaced in the page's text lines and rows, so the raw number
never reaches the store. The worker masks before it stores; the API masks again with the same
rules on every way out (masking is idempotent), so no path answers with less masking than the
document's policy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ocrfleet.results import DocumentResult, PageResult

SENSITIVE_FIELDS = ("id_number", "name", "address", "birth_date", "account_number", "account_holder")
MASK = "*"


def keep_ends(value: str, head: int, tail: int) -> str:
    """Keep ``head`` leading and ``tail`` trailing characters; mask the rest (at least one)."""
    if len(value) <= head + tail:
        head, tail = min(head, max(len(value) - 1, 0)), 0
    return value[:head] + MASK * (len(value) - head - tail) + (value[len(value) - tail:] if tail else "")


ID_NUMBER_STARS = 11


def mask_id_number(value: str) -> str:
    """Region prefix and last two characters around a fixed run of stars: ``110***********34``.

    The run has a fixed width (not the number's), as the product has always shown masked numbers.
    """
    if len(value) < 8:
        return mask_all(value)
    return value[:3] + MASK * ID_NUMBER_STARS + value[-2:]


def mask_account_number(value: str) -> str:
    return keep_ends(value, 0, 4)


def mask_name(value: str) -> str:
    return keep_ends(value, 1, 0)


def mask_address(value: str) -> str:
    return keep_ends(value, 6, 0)


def mask_all(value: str) -> str:
    return MASK * len(value)


RULES: dict[str, Callable[[str], str]] = {
    "id_number": mask_id_number,
    "account_number": mask_account_number,
    "name": mask_name,
    "account_holder": mask_name,
    "address": mask_address,
    "birth_date": mask_all,
}


@dataclass(frozen=True)
class MaskPolicy:
    """Which fields a job masks."""

    fields: frozenset[str] = frozenset()

    @classmethod
    def from_names(cls, names: Iterable[str]) -> MaskPolicy:
        chosen: set[str] = set()
        for name in names:
            name = name.strip()
            if name in ("all", "*"):
                chosen.update(SENSITIVE_FIELDS)
            elif name and name != "none":
                chosen.add(name)
        return cls(frozenset(chosen))

    def __bool__(self) -> bool:
        return bool(self.fields)

    def __or__(self, other: MaskPolicy) -> MaskPolicy:
        return MaskPolicy(self.fields | other.fields)

    def names(self) -> list[str]:
        """The fields, sorted: how a policy is stored on a document and carried by a task."""
        return sorted(self.fields)

    def covers(self, other: MaskPolicy) -> bool:
        """True when this policy masks every field ``other`` masks.

        A result stored under ``other`` can serve a request under this policy (masking the
        rest on top); the other way round it cannot, the masked characters are gone.
        """
        return self.fields >= other.fields


def mask_page(page: PageResult, policy: MaskPolicy) -> PageResult:
    """A copy of ``page`` with the policy's fields masked in fields and text lines."""
    if not policy:
        return page
    page = page.model_copy(deep=True)
    replacements: list[tuple[str, str]] = []
    for field in page.fields:
        if field.name in policy.fields and field.value and not field.masked:
            masked = RULES.get(field.name, mask_all)(field.value)
            replacements.append((field.value, masked))
            if field.name == "id_number":  # the number may sit in the text with spacing
                replacements.append((" ".join(field.value), " ".join(masked)))
            if field.name == "birth_date" and re.fullmatch(r"\d{4}-\d{2}-\d{2}", field.value):
                y, m, d = field.value.split("-")  # printed as 1990年1月1日
                printed = f"{y}年{int(m)}月{int(d)}日"
                replacements.append((printed, mask_all(printed)))
            field.value, field.masked = masked, True
    # Longest first, so a value that contains another is replaced whole.
    replacements.sort(key=lambda r: len(r[0]), reverse=True)
    for line in page.lines:
        line.text = _mask_text(line.text, replacements)
    for row in page.rows:
        for key, value in row.items():
            if isinstance(value, str):
                for raw, masked in replacements:
                    if len(raw) >= 2 and raw in value:
                        row[key] = value = value.replace(raw, masked)
    return page


def mask_result(result: DocumentResult, policy: MaskPolicy) -> DocumentResult:
    """A copy of ``result`` with every page masked per ``policy``."""
    if not policy or not result.pages:
        return result
    return result.model_copy(update={"pages": [mask_page(p, policy) for p in result.pages]})


def _mask_text(text: str, replacements: list[tuple[str, str]]) -> str:
    """Mask every occurrence of a raw value, and the tail of a line that continues one.

    A value read from several lines (an address that wraps) never occurs whole in one line;
    a line whose last four or more characters (spaces ignored) lie inside a raw value has
    that tail masked, which also covers a label followed by the value's first part.
    """
    for raw, masked in replacements:
        if len(raw) >= 2 and raw in text:
            text = text.replace(raw, masked)
    squeezed = "".join(text.split())
    for raw, _masked in replacements:
        for k in range(len(squeezed), 3, -1):
            if squeezed[-k:] in raw:
                return squeezed[:-k] + MASK * k
    return text
