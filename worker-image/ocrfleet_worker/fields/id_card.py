"""Fields of a Chinese resident identity card (front): name, sex, ethnicity, birth date, address, number.

The number is checked, never trusted: its GB 11643-1999 check digit (ISO 7064 MOD 11-2) must
match, its embedded birth date must be a real date equal to the printed one, and its
sequence digit's parity must agree with the printed sex. A failed check marks the field
``valid=False`` with a note and adds a failed :class:`~ocrfleet.results.Check`; the value is
returned as read, never silently "corrected".

The ethnicity is one of the 56 officially recognised names (:data:`ETHNIC_GROUPS`), printed in
Simplified characters. A recogniser trained on Traditional text too (PP-OCRv6 reads a lone 汉 as
漢) or a read with the trailing 族 is brought to the official Simplified name, with a note that
says what was read; a value that is no official name even so stays as read, ``valid=False``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from ocrfleet.results import Check, ExtractedField, TextLine
from ocrfleet_worker.fields import Extraction
from ocrfleet_worker.layout import group_rows

WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))
CHECK_CHARS = "10X98765432"
# First two digits: the province-level region (GB/T 2260), 71/81/82 included.
REGIONS = frozenset(
    {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46,
     50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82}
)

LABELS = ("姓名", "性别", "民族", "出生", "住址", "公民身份号码")
ETHNIC_GROUPS = frozenset({
    "汉", "蒙古", "回", "藏", "维吾尔", "苗", "彝", "壮", "布依", "朝鲜", "满", "侗", "瑶", "白", "土家", "哈尼", "哈萨克",
    "傣", "黎", "傈僳", "佤", "畲", "高山", "拉祜", "水", "东乡", "纳西", "景颇", "柯尔克孜", "土", "达斡尔", "仫佬", "羌",
    "布朗", "撒拉", "毛南", "仡佬", "锡伯", "阿昌", "普米", "塔吉克", "怒", "乌孜别克", "俄罗斯", "鄂温克", "德昂", "保安", "裕固",
    "京", "塔塔尔", "独龙", "鄂伦春", "赫哲", "门巴", "珞巴", "基诺",
})
"""The 56 ethnic groups of the People's Republic of China, as an ID card prints them (Simplified)."""
# The Traditional forms of the characters in those names (each differs from its Simplified one).
_SIMPLIFIED = str.maketrans("漢維爾鮮滿東鄉納頗達錫烏別羅溫門諾瑤獨龍倫薩壯", "汉维尔鲜满东乡纳颇达锡乌别罗温门诺瑶独龙伦萨壮")
# OCR confusions that are safe to undo inside a run of digits (and only there).
_DIGIT_LOOKALIKES = str.maketrans({"O": "0", "o": "0", "D": "0", "I": "1", "l": "1", "|": "1",
                                   "Z": "2", "S": "5", "B": "8", "x": "X", "×": "X"})
_ID_RE = re.compile(r"(?<![0-9A-Za-z])([0-9OoDIl|ZSB]{17}[0-9Xx×])(?![0-9A-Za-z])")
_DATE_RE = re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日?")


def official_ethnicity(read: str) -> tuple[str, str | None]:
    """``read`` as the official Simplified name, and a note when that is not what was read."""
    name = read.translate(_SIMPLIFIED)
    if name not in ETHNIC_GROUPS and name.endswith("族") and name[:-1] in ETHNIC_GROUPS:
        name = name[:-1]
    if name in ETHNIC_GROUPS:
        return name, None if name == read else f"read as {read}; the official name is {name}"
    return read, "not one of the 56 official ethnic group names"


def check_digit(first17: str) -> str:
    """The GB 11643 check character for the first 17 digits of an ID number."""
    if len(first17) != 17 or not first17.isdigit():
        raise ValueError("the check digit is computed over exactly 17 digits")
    return CHECK_CHARS[sum(int(d) * w for d, w in zip(first17, WEIGHTS, strict=True)) % 11]


@dataclass(frozen=True)
class IdNumberInfo:
    """What an ID number says about its holder, and whether it holds together."""

    number: str
    check_digit_ok: bool
    region_ok: bool
    birth_date: dt.date | None
    sex: str

    @property
    def valid(self) -> bool:
        return self.check_digit_ok and self.region_ok and self.birth_date is not None


def parse_id_number(number: str) -> IdNumberInfo | None:
    """Decode an 18-character ID number; None if it is not even shaped like one."""
    if not re.fullmatch(r"\d{17}[\dX]", number):
        return None
    try:
        birth = dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
        if not (1850 <= birth.year <= dt.date.today().year):
            birth = None
    except ValueError:
        birth = None
    return IdNumberInfo(
        number=number,
        check_digit_ok=check_digit(number[:17]) == number[17],
        region_ok=int(number[:2]) in REGIONS,
        birth_date=birth,
        sex="男" if int(number[16]) % 2 else "女",
    )


def _clean(text: str) -> str:
    """Drop spaces (card labels are printed spaced out) and fold full-width forms."""
    text = "".join(chr(ord(c) - 0xFEE0) if "！" <= c <= "～" else c for c in text)
    return re.sub(r"\s+", "", text).replace(":", "").replace("：", "")


def _find_id_number(text: str) -> str | None:
    m = _ID_RE.search(text)
    return m.group(1).translate(_DIGIT_LOOKALIKES) if m else None


def extract(lines: list[TextLine]) -> Extraction:
    rows = [(_clean(r.text), r.confidence) for r in group_rows(lines)]
    found: dict[str, tuple[str, float]] = {}

    def after(label: str, text: str) -> str:
        return text.split(label, 1)[1]

    address_parts: list[tuple[str, float]] = []
    in_address = False
    for i, (text, conf) in enumerate(rows):
        if not text:
            continue
        starts_label = any(text.startswith(lab) for lab in LABELS)
        if in_address and not starts_label and not _find_id_number(text):
            address_parts.append((text, conf))
            continue
        in_address = False
        if "姓名" in text and "name" not in found:
            value = after("姓名", text)
            if not value and i + 1 < len(rows):
                value, conf = rows[i + 1]
            found["name"] = (value, conf)
        if "性别" in text and (m := re.search(r"性别([男女])", text)):
            found["sex"] = (m.group(1), conf)
        if "民族" in text and (m := re.search(r"民族([\u4e00-\u9fff]{1,8})", text)):
            found["ethnicity"] = (m.group(1), conf)
        if "出生" in text and (m := _DATE_RE.search(after("出生", text))):
            y, mo, d = (int(g) for g in m.groups())
            try:
                found["birth_date"] = (dt.date(y, mo, d).isoformat(), conf)
            except ValueError:
                found["birth_date"] = (f"{y:04d}-{mo:02d}-{d:02d}", conf)
        if text.startswith("住址"):
            address_parts = [(after("住址", text), conf)]
            in_address = True
        if (number := _find_id_number(text)) and "id_number" not in found:
            found["id_number"] = (number, conf)
    if address_parts:
        found["address"] = ("".join(t for t, _ in address_parts), min(c for _, c in address_parts))
    return _assemble(found)


def _assemble(found: dict[str, tuple[str, float]]) -> Extraction:
    out = Extraction()
    info = parse_id_number(found["id_number"][0]) if "id_number" in found else None

    def add(name: str, *, valid: bool | None = None, note: str | None = None) -> None:
        value, conf = found.get(name, (None, 0.0))
        out.fields.append(ExtractedField(name=name, value=value or None, confidence=round(conf, 4),
                                         valid=valid if value else None, note=note if value else None))

    add("name")
    sex_ok = None if info is None or "sex" not in found else found["sex"][0] == info.sex
    add("sex", valid=sex_ok, note=None if sex_ok is not False else f"the ID number says {info.sex}")
    if "ethnicity" in found:
        read, conf = found["ethnicity"]
        official, note = official_ethnicity(read)
        found["ethnicity"] = (official, conf)
        add("ethnicity", valid=official in ETHNIC_GROUPS, note=note)
    else:
        add("ethnicity")
    birth = found.get("birth_date", (None, 0))[0]
    birth_ok = None
    if info is not None and birth is not None:
        birth_ok = info.birth_date is not None and info.birth_date.isoformat() == birth
    add("birth_date", valid=birth_ok,
        note=None if birth_ok is not False else "does not match the birth date in the ID number")
    add("address")
    if info is None:
        raw = found.get("id_number", (None, 0))[0]
        add("id_number", valid=False if raw else None, note="not an 18-character ID number")
        return out
    problems = []
    if not info.check_digit_ok:
        problems.append(f"check digit {info.number[17]} is wrong (GB 11643 gives {check_digit(info.number[:17])})")
    if not info.region_ok:
        problems.append(f"region code {info.number[:2]} does not exist")
    if info.birth_date is None:
        problems.append(f"embedded birth date {info.number[6:14]} is not a real date")
    add("id_number", valid=info.valid, note="; ".join(problems) or None)
    out.checks.append(Check(name="id_number_check_digit", passed=info.check_digit_ok,
                            detail="GB 11643-1999 MOD 11-2"
                            if info.check_digit_ok else problems[0]))
    if birth_ok is not None:
        out.checks.append(Check(name="birth_date_matches_id_number", passed=birth_ok,
                                detail=f"printed {birth}, number says "
                                       f"{info.birth_date.isoformat() if info.birth_date else info.number[6:14]}"))
    if sex_ok is not None:
        out.checks.append(Check(name="sex_matches_id_number", passed=sex_ok,
                                detail=f"printed {found['sex'][0]}, number says {info.sex}"))
    return out
