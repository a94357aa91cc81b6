"""Generic key-value pairs, and the document-type classifier."""

from __future__ import annotations

from ocrfleet_worker.doctype import classify_document
from ocrfleet_worker.fields import generic

from tests.worker.lines import line
from tests.worker.test_bank_statement import chinese_statement
from tests.worker.test_id_card import card


def test_key_value_pairs():
    lines = [
        line("Invoice No: INV-2024-001", 0, 0),
        line("日期：2024年3月1日", 0, 50),
        line("Total:", 0, 100, w=80), line("1,234.00", 300, 100, w=100),
        line("Meeting at 10:30 in room 4", 0, 150),
        line("Just a sentence without a pair.", 0, 200),
    ]
    f = {x.name: x.value for x in generic.extract(lines).fields}
    assert f == {"kv:InvoiceNo": "INV-2024-001", "kv:日期": "2024年3月1日", "kv:Total": "1,234.00"}


def test_classifies_each_type():
    assert classify_document(card()).document_type == "id_card"
    assert classify_document(chinese_statement()).document_type == "bank_statement"
    memo = [line("会议纪要", 0, 0), line("参会人员：张三、李四", 0, 50), line("下周继续讨论预算。", 0, 100)]
    assert classify_document(memo).document_type == "generic"
    assert classify_document([]).document_type == "generic"


def test_a_card_with_half_its_labels_misread_is_still_a_card():
    lines = card()
    lines[1] = lines[1].model_copy(update={"text": "性 剔"})
    lines[3] = lines[3].model_copy(update={"text": "民 簇 汉"})
    assert classify_document(lines).document_type == "id_card"
