"""Dates as statements and cards print them, read into ISO ``YYYY-MM-DD``.

Accepted: ``2024-01-31``, ``2024/01/31``, ``2024.01.31``, ``20240131``, ``2024年1月31日``,
``31 Jan 2024`` and ``Jan 31, 2024`` (spaces optional: OCR often drops them). Day-first and month-first slashed dates
(``01/02/2024``) are ambiguous, so they are not guessed at.
"""

from __future__ import annotations

import datetime as dt
import re

MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
_MON = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?"

DATE_PATTERN = (
    r"(?:\d{4}\s*[-/.]\s*\d{1,2}\s*[-/.]\s*\d{1,2}"
    r"|\d{4}\s*年\s*\d{1,2}\s*月\s*\d{1,2}\s*日?"
    r"|(?<!\d)20\d{6}(?!\d)"
    rf"|\d{{1,2}}\s*{_MON}\s*\d{{4}}"
    rf"|{_MON}\s*\d{{1,2}},?\s*\d{{4}})"
)
DATE_RE = re.compile(DATE_PATTERN, re.IGNORECASE)


def parse_date(text: str) -> str | None:
    """The ISO form of a date written in one of the accepted forms, or None."""
    t = text.strip()
    try:
        if (m := re.fullmatch(r"(\d{4})\s*(?:[-/.]|年)\s*(\d{1,2})\s*(?:[-/.]|月)\s*(\d{1,2})\s*日?", t)) or (m := re.fullmatch(r"(\d{4})(\d{2})(\d{2})", t)):
            y, mo, d = (int(g) for g in m.groups())
        elif m := re.fullmatch(r"(\d{1,2})\s*([A-Za-z]{3})[a-z]*\.?\s*(\d{4})", t):
            d, mo, y = int(m.group(1)), MONTHS.get(m.group(2).lower(), 0), int(m.group(3))
        elif m := re.fullmatch(r"([A-Za-z]{3})[a-z]*\.?\s*(\d{1,2}),?\s*(\d{4})", t):
            mo, d, y = MONTHS.get(m.group(1).lower(), 0), int(m.group(2)), int(m.group(3))
        else:
            return None
        return dt.date(y, mo, d).isoformat()
    except ValueError:
        return None
