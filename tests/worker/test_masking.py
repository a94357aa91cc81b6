"""Masking per job policy: fields and every place the text repeats them."""

from __future__ import annotations

from ocrfleet_worker.fields import id_card

from ocrfleet.masking import MaskPolicy, mask_account_number, mask_id_number, mask_page
from ocrfleet.results import PageResult
from tests.worker.test_id_card import card


def test_rules():
    assert mask_id_number("110105194912310234") == "110***********34"
    assert mask_account_number("6222021234567890123") == "***************0123"


def card_page():
    lines = card()
    found = id_card.extract(lines)
    return PageResult(page=1, width=800, height=500, document_type="id_card", lines=lines, fields=found.fields)


def test_masks_fields_and_lines_of_the_policy_only():
    page = card_page()
    masked = mask_page(page, MaskPolicy.from_names(["id_number", "address"]))
    f = {x.name: x for x in masked.fields}
    assert f["id_number"].value == "110***********2X" and f["id_number"].masked
    assert f["name"].value == "王小丽" and not f["name"].masked
    text = "\n".join(ln.text for ln in masked.lines)
    assert "11010519491231002X" not in text and "110***********2X" in text
    assert "建国路" not in text and "501" not in text  # the wrapped address, both lines
    assert "王小丽" in text
    # The original is untouched.
    assert page.fields[-1].value == "11010519491231002X"


def test_all_masks_every_sensitive_field_and_empty_policy_is_a_no_op():
    page = card_page()
    assert mask_page(page, MaskPolicy()) is page
    masked = mask_page(page, MaskPolicy.from_names(["all"]))
    text = "\n".join(ln.text for ln in masked.lines)
    for secret in ("王小丽", "1949年12月31日", "11010519491231002X", "北京市朝阳区"):
        assert secret not in text, secret
    assert {x.name for x in masked.fields if x.masked} == {"name", "birth_date", "address", "id_number"}
