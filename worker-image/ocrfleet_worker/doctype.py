"""Document type from a page's recognised text: ``id_card``, ``bank_statement`` or ``generic``.

A transparent scorer, not a model: each type has label words that its layout always prints
and a structural signal (an 18-character ID number; dated rows ending in two amounts). The
best type wins if it scores enough; otherwise the page is ``generic``. The score is returned
as the confidence so a borderline call is visible in the result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ocrfleet.results import TextLine
from ocrfleet_worker.fields.bank_statement import parse_row
from ocrfleet_worker.layout import group_rows

ID_CARD_WORDS = ("姓名", "性别", "民族", "出生", "住址", "公民身份号码")
STATEMENT_WORDS = (
    "对账单", "交易明细", "账号", "卡号", "余额", "交易日期", "摘要", "户名", "期初", "期末",
    "statement", "account", "balance", "transaction", "opening", "closing", "period",
)
_ID_NUMBER_RE = re.compile(r"(?<!\d)\d{17}[\dXx](?!\d)")
THRESHOLD = 0.5


@dataclass(frozen=True)
class Classification:
    document_type: str
    confidence: float
    scores: dict[str, float]


def classify_document(lines: list[TextLine]) -> Classification:
    text = "".join(line.text for line in lines)
    squeezed = re.sub(r"\s+", "", text)
    lower = text.lower()

    id_hits = sum(word in squeezed for word in ID_CARD_WORDS)
    id_score = min(1.0, id_hits / 4) * 0.7 + (0.3 if _ID_NUMBER_RE.search(squeezed) else 0.0)

    word_hits = sum(word in lower for word in STATEMENT_WORDS)
    tx_rows = sum(parse_row(row.text) is not None for row in group_rows(lines))
    statement_score = min(1.0, word_hits / 4) * 0.5 + min(1.0, tx_rows / 3) * 0.5

    scores = {"id_card": round(id_score, 3), "bank_statement": round(statement_score, 3)}
    best = max(scores, key=scores.__getitem__)
    if scores[best] < THRESHOLD:
        return Classification("generic", round(1.0 - scores[best], 3), scores)
    return Classification(best, scores[best], scores)
