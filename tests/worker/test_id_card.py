"""ID card fields: read, then checked against the number (GB 11643 check digit, birth date, sex)."""

from __future__ import annotations

import pytest
from ocrfleet_worker.fields import id_card

from tests.worker.lines import line

# The standard's own examples.
VALID_NUMBERS = ["11010519491231002X", "440524188001010014"]


@pytest.mark.parametrize("number", VALID_NUMBERS)
def test_check_digit_of_the_standards_examples(number):
    assert id_card.check_digit(number[:17]) == number[17]
    assert id_card.parse_id_number(number).valid


def test_every_single_digit_error_is_caught():
    number = "11010519491231002X"
    for i in range(17):
        for d in "0123456789":
            if d == number[i]:
                continue
            wrong = number[:i] + d + number[i + 1:]
            info = id_card.parse_id_number(wrong)
            assert not info.check_digit_ok, wrong


def card(number="11010519491231002X", birth="1949年12月31日", sex="女", skew=0.0, conf=0.97, ethnicity="汉"):
    return [
        line("姓  名 王小丽", 40, 40, skew_deg=skew, conf=conf),
        line("性  别", 40, 100, w=90, skew_deg=skew, conf=conf),
        line(sex, 150, 100, w=30, skew_deg=skew, conf=conf),
        line(f"民  族 {ethnicity}", 260, 100, skew_deg=skew, conf=conf),
        line(f"出  生 {birth}", 40, 160, skew_deg=skew, conf=conf),
        line("住  址 北京市朝阳区建国路", 40, 220, skew_deg=skew, conf=conf),
        line("88号院3号楼2单元501", 130, 260, skew_deg=skew, conf=0.9),
        line(f"公民身份号码 {number}", 40, 380, skew_deg=skew, conf=conf),
    ]


def fields(lines):
    out = id_card.extract(lines)
    return {f.name: f for f in out.fields}, {c.name: c for c in out.checks}


@pytest.mark.parametrize("skew", [0.0, 3.0, -3.0])
def test_reads_every_field_of_a_card(skew):
    f, checks = fields(card(skew=skew))
    assert f["name"].value == "王小丽"
    assert f["sex"].value == "女" and f["sex"].valid is True
    assert f["ethnicity"].value == "汉"
    assert f["birth_date"].value == "1949-12-31" and f["birth_date"].valid is True
    assert f["address"].value == "北京市朝阳区建国路88号院3号楼2单元501"
    assert f["address"].confidence == pytest.approx(0.9)
    assert f["id_number"].value == "11010519491231002X" and f["id_number"].valid is True
    assert all(c.passed for c in checks.values()) and len(checks) == 3


def test_wrong_check_digit_is_flagged_not_corrected():
    f, checks = fields(card(number="110105194912310021"))
    assert f["id_number"].value == "110105194912310021"
    assert f["id_number"].valid is False
    assert "check digit 1 is wrong" in f["id_number"].note and "X" in f["id_number"].note
    assert checks["id_number_check_digit"].passed is False


def test_birth_date_is_cross_checked_against_the_number():
    f, checks = fields(card(birth="1949年12月30日"))
    assert f["birth_date"].valid is False
    assert checks["birth_date_matches_id_number"].passed is False


def test_sex_is_cross_checked_against_the_number():
    f, checks = fields(card(sex="男"))  # ...002X: 17th digit 2 is even, so female
    assert f["sex"].valid is False and "女" in f["sex"].note
    assert checks["sex_matches_id_number"].passed is False


def test_impossible_birth_date_in_the_number_is_invalid():
    number = "11010519491331002"  # month 13
    number += id_card.check_digit(number)
    f, _ = fields(card(number=number))
    assert f["id_number"].valid is False and "not a real date" in f["id_number"].note


def test_ocr_lookalikes_inside_the_number_are_read_as_digits():
    f, _ = fields(card(number="11O1O519491231002x"))
    assert f["id_number"].value == "11010519491231002X" and f["id_number"].valid


def test_missing_fields_are_reported_as_missing():
    f, checks = fields([line("姓名 李四", 0, 0)])
    assert f["name"].value == "李四"
    assert f["id_number"].value is None and f["id_number"].valid is None
    assert checks == {}


def test_lines_without_boxes_work_in_reading_order():
    lines = [ln.model_copy(update={"box": []}) for ln in card()]
    f, _ = fields(lines)
    assert f["id_number"].valid and f["address"].value.endswith("501")


def test_there_are_56_official_ethnic_group_names():
    assert len(id_card.ETHNIC_GROUPS) == 56 and {"汉", "维吾尔", "朝鲜", "达斡尔", "基诺"} <= id_card.ETHNIC_GROUPS


@pytest.mark.parametrize(("read", "official"), [
    ("漢", "汉"),  # PP-OCRv6 small reads a lone 汉 as Traditional
    ("維吾爾", "维吾尔"), ("朝鮮", "朝鲜"), ("满族", "满"), ("達斡爾族", "达斡尔"),
])
def test_an_ethnicity_read_in_traditional_characters_or_with_zu_is_the_official_name(read, official):
    f, _ = fields(card(ethnicity=read))
    assert f["ethnicity"].value == official and f["ethnicity"].valid is True
    assert f["ethnicity"].note == f"read as {read}; the official name is {official}"


def test_an_official_ethnicity_carries_no_note_and_another_word_is_kept_as_read():
    f, _ = fields(card(ethnicity="回"))
    assert (f["ethnicity"].value, f["ethnicity"].valid, f["ethnicity"].note) == ("回", True, None)
    f, _ = fields(card(ethnicity="火星"))
    assert f["ethnicity"].value == "火星" and f["ethnicity"].valid is False
    assert f["ethnicity"].note == "not one of the 56 official ethnic group names"
