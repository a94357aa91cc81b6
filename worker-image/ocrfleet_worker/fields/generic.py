"""Fields of any page: key-value pairs such as ``Invoice No: 2024-001`` or ``日期：2024年3月1日``.

A pair is a row whose text splits at its first colon into a short key and a non-empty value,
or a row of exactly two boxes whose first ends with a colon. Keys are returned as printed
(the field name is ``kv:<key>``, spaces removed: OCR keeps or drops them at whim) so nothing
about the page's vocabulary is assumed.
"""

from __future__ import annotations

import re

from ocrfleet.results import ExtractedField, TextLine
from ocrfleet_worker.fields import Extraction
from ocrfleet_worker.layout import group_rows

MAX_KEY_CHARS = 32
_PAIR_RE = re.compile(rf"^\s*([^:：]{{1,{MAX_KEY_CHARS}}}?)\s*[:：]\s*(\S.*?)\s*$")
# A time such as 12:30 is not a pair.
_TIME_RE = re.compile(r"\d[:：]\d")


def extract(lines: list[TextLine]) -> Extraction:
    out = Extraction()
    seen: set[str] = set()
    for row in group_rows(lines):
        texts = [line.text.strip() for line in row.lines if line.text.strip()]
        pair = None
        if len(texts) == 2 and texts[0][-1:] in ":：":
            pair = texts[0][:-1].strip(), texts[1]
        elif (m := _PAIR_RE.match(row.text)) and not _TIME_RE.search(row.text[: m.end(1) + 2]):
            pair = m.group(1), m.group(2)
        if pair is None or not pair[0] or not pair[1]:
            continue
        key = re.sub(r"\s+", "", pair[0])  # OCR keeps or drops spaces at whim
        if key in seen:
            continue
        seen.add(key)
        out.fields.append(ExtractedField(name=f"kv:{key}", value=pair[1], confidence=round(row.confidence, 4)))
    return out
