"""Fields of a bank statement (Chinese or English): account, holder, period, balances and rows.

A transaction row is a visual row that starts with a date and ends with two amounts: the
transaction amount and the balance after it. The running-balance check verifies that each
balance follows from the previous one (and the first from the opening balance, the last
into the closing balance, when those are printed) — a misread digit anywhere in the table
shows up as a failed check with the row it broke on.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from ocrfleet.results import Check, ExtractedField, TextLine
from ocrfleet_worker.fields import Extraction
from ocrfleet_worker.fields.dates import DATE_PATTERN, parse_date
from ocrfleet_worker.layout import group_rows

AMOUNT = r"[+\-−]?\s?(?:¥|￥|\$|£|€|RMB|CNY)?\s?(?:\d{1,3}(?:,\d{3})+|\d+)\.\d{2}"
_AMOUNT_RE = re.compile(rf"(?<![\d.,])({AMOUNT})(?![\d])")
_ROW_RE = re.compile(rf"^\s*({DATE_PATTERN})\s*(.*)$", re.IGNORECASE)
_ACCOUNT_RE = re.compile(
    r"(?:账号|卡号|账户号码|帐号|Account\s*(?:No\.?|Number|#))\s*[:：]?\s*([0-9][0-9 \-*]{6,32}[0-9])",
    re.IGNORECASE,
)
_HOLDER_RE = re.compile(r"(?:户名|账户名称|客户姓名|Account\s*(?:Name|Holder)|Name)\s*[:：]\s*(.+)", re.IGNORECASE)
_PERIOD_RE = re.compile(
    rf"({DATE_PATTERN})\s*(?:至|到|~|～|—|–|-|to|through)\s*({DATE_PATTERN})", re.IGNORECASE
)
_OPENING_RE = re.compile(rf"(?:期初余额|上期余额|Opening\s+Balance|Balance\s+Brought\s+Forward)\s*[:：]?\s*({AMOUNT})",
                         re.IGNORECASE)
_CLOSING_RE = re.compile(rf"(?:期末余额|本期余额|Closing\s+Balance|Balance\s+Carried\s+Forward)\s*[:：]?\s*({AMOUNT})",
                         re.IGNORECASE)


def parse_amount(text: str) -> Decimal | None:
    """``-1,234.50`` / ``+¥1,234.50`` / ``−12.00`` as a Decimal; None if it is not an amount."""
    t = re.sub(r"[\s,¥￥$£€]|RMB|CNY", "", text).replace("−", "-")
    try:
        return Decimal(t)
    except InvalidOperation:
        return None


def _signed(text: str) -> bool:
    return text.strip()[:1] in "+-−"


def parse_row(text: str) -> dict[str, Any] | None:
    """A transaction row's date, description, amount and balance; None if it is not one."""
    m = _ROW_RE.match(text)
    if not m:
        return None
    date = parse_date(m.group(1))
    if date is None:
        return None
    rest = m.group(2)
    amounts = list(_AMOUNT_RE.finditer(rest))
    if len(amounts) < 2:
        return None
    amount_m, balance_m = amounts[-2], amounts[-1]
    amount, balance = parse_amount(amount_m.group(1)), parse_amount(balance_m.group(1))
    if amount is None or balance is None:
        return None
    description = rest[: amount_m.start()].strip(" |:：")
    return {"date": date, "description": description, "amount": amount, "balance": balance,
            "signed": _signed(amount_m.group(1))}


def extract(lines: list[TextLine]) -> Extraction:
    out = Extraction()
    found: dict[str, tuple[str, float]] = {}
    rows: list[dict[str, Any]] = []
    for row in group_rows(lines):
        text, conf = row.text, row.confidence
        if (parsed := parse_row(text)) is not None:
            parsed["confidence"] = round(conf, 4)
            rows.append(parsed)
            continue
        if "account_number" not in found and (m := _ACCOUNT_RE.search(text)):
            found["account_number"] = (re.sub(r"[ \-]", "", m.group(1)), conf)
        if "account_holder" not in found and (m := _HOLDER_RE.search(text)):
            holder = re.split(r"\s{2,}|\s(?=[A-Za-z ]+[:：])|(?=账号|卡号|币种)", m.group(1).strip())[0]
            found["account_holder"] = (holder.strip(), conf)
        if "period_start" not in found and (m := _PERIOD_RE.search(text)):
            start, end = parse_date(m.group(1)), parse_date(m.group(2))
            if start and end:
                found["period_start"], found["period_end"] = (start, conf), (end, conf)
        if "opening_balance" not in found and (m := _OPENING_RE.search(text)):
            found["opening_balance"] = (str(parse_amount(m.group(1))), conf)
        if "closing_balance" not in found and (m := _CLOSING_RE.search(text)):
            found["closing_balance"] = (str(parse_amount(m.group(1))), conf)

    for name in ("account_number", "account_holder", "period_start", "period_end",
                 "opening_balance", "closing_balance"):
        value, conf = found.get(name, (None, 0.0))
        out.fields.append(ExtractedField(name=name, value=value, confidence=round(conf, 4)))
    if "period_start" in found and found["period_start"][0] > found["period_end"][0]:
        for f in out.fields:
            if f.name in ("period_start", "period_end"):
                f.valid, f.note = False, "the period ends before it starts"

    opening = parse_amount(found["opening_balance"][0]) if "opening_balance" in found else None
    closing = parse_amount(found["closing_balance"][0]) if "closing_balance" in found else None
    if rows:
        out.checks.append(running_balance_check(rows, opening=opening, closing=closing))
    out.rows = [
        {"date": r["date"], "description": r["description"], "amount": f"{r['amount']:.2f}",
         "balance": f"{r['balance']:.2f}", "confidence": r["confidence"]}
        for r in rows
    ]
    return out


def running_balance_check(rows: list[dict[str, Any]], *, opening: Decimal | None = None,
                          closing: Decimal | None = None) -> Check:
    """Each balance must equal the previous balance plus the row's amount.

    An unsigned amount (statements that print debits and credits in separate columns) must
    move the balance by exactly its size, in either direction; its sign is then set from the
    direction so that the stored rows always carry signed amounts.
    """
    broken: list[str] = []
    previous = opening
    for i, row in enumerate(rows, start=1):
        if previous is not None:
            delta = row["balance"] - previous
            if row["signed"]:
                ok = delta == row["amount"]
            else:
                ok = abs(delta) == abs(row["amount"])
                if ok:
                    row["amount"] = delta
            if not ok:
                broken.append(f"row {i} ({row['date']}): {previous} {row['amount']:+} ≠ {row['balance']}")
        previous = row["balance"]
    if closing is not None and rows and rows[-1]["balance"] != closing:
        broken.append(f"last balance {rows[-1]['balance']} ≠ closing balance {closing}")
    if broken:
        return Check(name="running_balance", passed=False, detail="; ".join(broken))
    return Check(name="running_balance", passed=True, detail=f"{len(rows)} rows follow from each other")
