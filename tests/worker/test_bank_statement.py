"""Bank statement fields and rows, and the running-balance check."""

from __future__ import annotations

from decimal import Decimal

import pytest
from ocrfleet_worker.fields import bank_statement
from ocrfleet_worker.fields.dates import parse_date

from tests.worker.lines import line, table


@pytest.mark.parametrize("text,iso", [
    ("2024-01-31", "2024-01-31"), ("2024/1/5", "2024-01-05"), ("2024年3月1日", "2024-03-01"),
    ("20240229", "2024-02-29"), ("05 Feb 2024", "2024-02-05"), ("Feb 5, 2024", "2024-02-05"),
    ("2023-02-29", None), ("01/02/2024", None),
])
def test_dates(text, iso):
    assert parse_date(text) == iso


def chinese_statement(balances=("13,000.00", "12,880.50", "12,780.50"), skew=0.0):
    head = [
        line("中国工商银行 个人账户对账单", 200, 20, skew_deg=skew),
        line("户名：张三", 40, 60, skew_deg=skew),
        line("账号：6222 0212 3456 7890 123", 400, 60, skew_deg=skew),
        line("起止日期：2024-01-01 至 2024-01-31", 40, 100, skew_deg=skew),
        line("期初余额：8,000.00", 40, 140, skew_deg=skew),
    ]
    rows = table([
        [("交易日期", 40), ("摘要", 220), ("金额", 600), ("余额", 800)],
        [("2024-01-03", 40), ("工资", 220), ("+5,000.00", 600), (balances[0], 800)],
        [("2024-01-09", 40), ("超市 消费", 220), ("-119.50", 600), (balances[1], 800)],
        [("2024-01-20", 40), ("转账给 李四", 220), ("-100.00", 600), (balances[2], 800)],
    ], top=200, skew_deg=skew)
    tail = [line("期末余额：12,780.50", 40, 420, skew_deg=skew)]
    return head + rows + tail


@pytest.mark.parametrize("skew", [0.0, 2.5, -2.5])
def test_reads_a_chinese_statement(skew):
    out = bank_statement.extract(chinese_statement(skew=skew))
    f = {x.name: x.value for x in out.fields}
    assert f["account_number"] == "6222021234567890123"
    assert f["account_holder"] == "张三"
    assert (f["period_start"], f["period_end"]) == ("2024-01-01", "2024-01-31")
    assert f["opening_balance"] == "8000.00" and f["closing_balance"] == "12780.50"
    assert [(r["date"], r["description"], r["amount"], r["balance"]) for r in out.rows] == [
        ("2024-01-03", "工资", "5000.00", "13000.00"),
        ("2024-01-09", "超市 消费", "-119.50", "12880.50"),
        ("2024-01-20", "转账给 李四", "-100.00", "12780.50"),
    ]
    assert out.checks[0].name == "running_balance" and out.checks[0].passed


def test_a_misread_balance_fails_the_running_balance_check():
    out = bank_statement.extract(chinese_statement(balances=("13,000.00", "12,886.50", "12,780.50")))
    check = out.checks[0]
    assert not check.passed
    assert "row 2 (2024-01-09)" in check.detail and "row 3 (2024-01-20)" in check.detail


def test_english_statement_with_unsigned_debit_credit_columns():
    lines = [
        line("Statement of Account", 40, 10),
        line("Account Number: 0123-4567-8901", 40, 50),
        line("Statement Period: 01 Mar 2024 to 31 Mar 2024", 40, 90),
        line("Opening Balance 1,000.00", 40, 130),
        *table([
            [("Date", 40), ("Description", 200), ("Debit", 600), ("Credit", 700), ("Balance", 800)],
            [("02 Mar 2024", 40), ("Coffee shop", 200), ("4.50", 600), ("995.50", 800)],
            [("05 Mar 2024", 40), ("Salary ACME Ltd", 200), ("2,500.00", 700), ("3,495.50", 800)],
        ], top=180),
    ]
    out = bank_statement.extract(lines)
    f = {x.name: x.value for x in out.fields}
    assert f["account_number"] == "012345678901"
    assert (f["period_start"], f["period_end"]) == ("2024-03-01", "2024-03-31")
    assert [r["amount"] for r in out.rows] == ["-4.50", "2500.00"]
    assert out.checks[0].passed


def test_running_balance_check_alone():
    rows = [{"date": "d", "amount": Decimal("10"), "balance": Decimal("110"), "signed": True},
            {"date": "d", "amount": Decimal("-5"), "balance": Decimal("105"), "signed": True}]
    assert bank_statement.running_balance_check(rows, opening=Decimal("100")).passed
    assert not bank_statement.running_balance_check(rows, opening=Decimal("99")).passed
    assert not bank_statement.running_balance_check(rows, closing=Decimal("104")).passed


def test_english_statement_as_ocr_reads_it_without_spaces():
    lines = [
        line("StatementPeriod:01Mar2025to31Mar2025", 40, 90),
        *table([[("24Mar2025", 40), ("Pharmacy", 200), ("-10.00", 600), ("990.00", 800)],
                [("25Mar 2025", 40), ("Rent", 200), ("-90.00", 600), ("900.00", 800)]], top=180),
    ]
    out = bank_statement.extract(lines)
    f = {x.name: x.value for x in out.fields}
    assert (f["period_start"], f["period_end"]) == ("2025-03-01", "2025-03-31")
    assert [r["date"] for r in out.rows] == ["2025-03-24", "2025-03-25"] and out.checks[0].passed
