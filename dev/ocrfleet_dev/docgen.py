"""A generator of labelled documents: the sample set the tests, the benchmarks and the README use.

Every document is rendered with Pillow and Debian's Noto CJK fonts (``fonts-noto-cjk``) from
a random but reproducible (seeded) identity or account, and written beside a truth file
``<name>.truth.json`` holding what a perfect reader would return: per page the text lines
with their boxes, and per document its type and expected fields (and statement rows).

Kinds: ``id_card`` (Chinese resident ID card, front, with a valid GB 11643 number),
``bank_statement`` (Chinese or English, rows with a running balance), ``generic`` (a
mixed Chinese/English page with key-value pairs) and ``mixed`` (a two-page PDF: an ID card
page and a generic page).

Degradations, chosen per document and recorded in the truth: ``rotate90/180/270`` (the page
is turned counter-clockwise by that much; ``pages[].rotation`` is the clockwise turn that
makes it upright again), ``skew`` (a few degrees), ``blur``, ``noise``, ``jpeg`` (heavy
compression artefacts) and ``low_contrast``. Truth boxes are in the clean, upright page.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_DIR = Path("/usr/share/fonts/opentype/noto")
SANS = FONT_DIR / "NotoSansCJK-Regular.ttc"
SANS_BOLD = FONT_DIR / "NotoSansCJK-Bold.ttc"
SC_INDEX = 2  # the Simplified Chinese face of the collection

KINDS = ("id_card", "bank_statement", "generic", "mixed")
DEGRADATIONS = ("rotate90", "rotate180", "rotate270", "skew", "blur", "noise", "jpeg", "low_contrast")


class FontsMissing(RuntimeError):
    pass


@lru_cache(maxsize=32)
def font(size: int, *, bold: bool = False) -> ImageFont.FreeTypeFont:
    path = SANS_BOLD if bold else SANS
    if not path.exists():
        raise FontsMissing(f"{path} is missing; install Debian's fonts-noto-cjk package")
    return ImageFont.truetype(str(path), size, index=SC_INDEX)


# -- identities --------------------------------------------------------------------------------

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾萧田董潘袁蔡蒋余于杜叶程魏苏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英文华建国志强海燕晓东红梅玉兰俊峰宇轩子涵欣怡浩然梓萱雨泽思远佳怡嘉豪"
ETHNICITIES = ["汉"] * 12 + ["回", "满", "蒙古", "壮", "藏", "维吾尔", "苗", "彝", "朝鲜", "土家"]
REGIONS = [
    ("110105", "北京市朝阳区", ["建国路", "朝阳北路", "望京街", "酒仙桥路"]),
    ("110108", "北京市海淀区", ["中关村大街", "学院路", "西三环北路"]),
    ("310104", "上海市徐汇区", ["漕溪北路", "肇嘉浜路", "天钥桥路"]),
    ("440305", "广东省深圳市南山区", ["科技园路", "南海大道", "深南大道"]),
    ("330106", "浙江省杭州市西湖区", ["文三路", "天目山路", "西溪路"]),
    ("510107", "四川省成都市武侯区", ["人民南路", "科华北路", "玉林西路"]),
    ("420106", "湖北省武汉市武昌区", ["中南路", "中北路", "武珞路"]),
    ("610113", "陕西省西安市雁塔区", ["小寨东路", "长安南路", "科技路"]),
]
WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))


def id_check_digit(first17: str) -> str:
    """GB 11643-1999 check character (ISO 7064 MOD 11-2)."""
    return "10X98765432"[sum(int(d) * w for d, w in zip(first17, WEIGHTS, strict=True)) % 11]


@dataclass
class Line:
    text: str
    box: list[tuple[float, float]]


@dataclass
class Canvas:
    """A page being drawn, remembering every line's text and box."""

    image: Image.Image
    lines: list[Line] = field(default_factory=list)

    @property
    def draw(self) -> ImageDraw.ImageDraw:
        return ImageDraw.Draw(self.image)

    def text(self, xy: tuple[float, float], text: str, size: int, *, fill=(20, 20, 20), bold: bool = False,
             record: bool = True) -> tuple[float, float, float, float]:
        f = font(size, bold=bold)
        self.draw.text(xy, text, font=f, fill=fill)
        x0, y0, x1, y1 = self.draw.textbbox(xy, text, font=f)
        if record and text.strip():
            pad = 2
            self.lines.append(Line(text, [(x0 - pad, y0 - pad), (x1 + pad, y0 - pad), (x1 + pad, y1 + pad),
                                          (x0 - pad, y1 + pad)]))
        return x0, y0, x1, y1


@dataclass
class Document:
    """One generated document before it is written: pages, truth, chosen output format."""

    name: str
    kind: str
    language: str
    pages: list[Canvas]
    fields: dict[str, Any]
    rows: list[dict[str, str]] = field(default_factory=list)
    format: str = "png"
    page_types: list[str] = field(default_factory=list)
    """Each page's type (a mixed document's differ); defaults to ``kind`` for every page."""
    page_fields: list[dict[str, Any]] = field(default_factory=list)


def _name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))


def id_card_page(rng: random.Random) -> tuple[Canvas, dict[str, Any]]:
    region, place, streets = rng.choice(REGIONS)
    birth = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(0, 55 * 365))
    seq = rng.randrange(0, 1000)
    sex = "男" if seq % 2 else "女"
    first17 = f"{region}{birth:%Y%m%d}{seq:03d}"
    number = first17 + id_check_digit(first17)
    address = f"{place}{rng.choice(streets)}{rng.randrange(1, 300)}号{rng.randrange(1, 30)}号楼{rng.randrange(101, 2800)}室"
    truth = {"name": _name(rng), "sex": sex, "ethnicity": rng.choice(ETHNICITIES),
             "birth_date": birth.isoformat(), "address": address, "id_number": number}

    page = Canvas(Image.new("RGB", (856, 540), (246, 243, 233)))
    d = page.draw
    for y in range(0, 540, 6):  # the card's faint guilloche-like background
        d.line([(0, y), (856, y + 40)], fill=(236, 232, 220), width=1)
    d.rounded_rectangle([4, 4, 851, 535], radius=24, outline=(200, 196, 186), width=2)
    d.rectangle([600, 80, 800, 330], fill=(222, 222, 222))  # photo
    label, value = (70, 110, 160), (10, 10, 10)
    page.text((60, 60), "姓  名", 26, fill=label)
    page.text((170, 56), truth["name"], 32, fill=value)
    page.text((60, 130), "性  别", 26, fill=label)
    page.text((170, 128), sex, 28, fill=value)
    page.text((280, 130), "民  族", 26, fill=label)
    page.text((390, 128), truth["ethnicity"], 28, fill=value)
    page.text((60, 200), "出  生", 26, fill=label)
    page.text((170, 198), f"{birth.year}年{birth.month}月{birth.day}日", 28, fill=value)
    page.text((60, 270), "住  址", 26, fill=label)
    for i in range(0, len(address), 13):
        page.text((170, 268 + (i // 13) * 42), address[i:i + 13], 28, fill=value)
    page.text((60, 450), "公民身份号码", 26, fill=label)
    page.text((290, 446), number, 34, fill=value)
    return page, truth


STATEMENT_DESCRIPTIONS = {
    "zh": ["工资", "超市消费", "转账给张明", "房租", "水电费", "餐饮消费", "网上购物", "信用卡还款", "利息",
           "ATM取款", "手机充值", "医院缴费"],
    "en": ["Salary ACME Ltd", "Grocery store", "Transfer to J. Smith", "Rent", "Electricity bill", "Restaurant",
           "Online purchase", "Card repayment", "Interest", "ATM withdrawal", "Mobile top-up", "Pharmacy"],
}
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _money(value: Decimal, *, signed: bool = False) -> str:
    text = f"{abs(value):,.2f}"
    if signed:
        return ("+" if value >= 0 else "-") + text
    return text if value >= 0 else "-" + text


def statement_page(rng: random.Random, language: str) -> tuple[Canvas, dict[str, Any], list[dict[str, str]]]:
    year, month = rng.randrange(2021, 2026), rng.randrange(1, 13)
    start = dt.date(year, month, 1)
    end = (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
    account = "".join(str(rng.randrange(10)) for _ in range(rng.choice((16, 19))))
    holder = _name(rng) if language == "zh" else rng.choice(["Li Wei", "Zhang Min", "Emily Chen", "David Wang",
                                                              "Sarah Liu", "Michael Zhao"])
    opening = Decimal(rng.randrange(100_000, 5_000_000)) / 100
    days = sorted(rng.sample(range(1, end.day + 1), rng.randrange(8, 16)))
    balance = opening
    rows = []
    for day in days:
        credit = rng.random() < 0.3
        amount = Decimal(rng.randrange(1_000, 900_000 if credit else 300_000)) / 100
        amount = amount if credit else -amount
        balance += amount
        date = dt.date(year, month, day)
        rows.append({"date": date.isoformat(), "description": rng.choice(STATEMENT_DESCRIPTIONS[language]),
                     "amount": f"{amount:.2f}", "balance": f"{balance:.2f}"})
    truth = {"account_number": account, "account_holder": holder, "period_start": start.isoformat(),
             "period_end": end.isoformat(), "opening_balance": f"{opening:.2f}", "closing_balance": f"{balance:.2f}"}

    page = Canvas(Image.new("RGB", (1240, 1754), (255, 255, 255)))
    spaced = " ".join(account[i:i + 4] for i in range(0, len(account), 4))
    if language == "zh":
        title = rng.choice(["中国工商银行", "中国建设银行", "招商银行", "中国银行"]) + " 个人账户对账单"
        head = [f"户名：{holder}", f"账号：{spaced}", f"起止日期：{start.isoformat()} 至 {end.isoformat()}",
                f"期初余额：{_money(opening)}"]
        cols, fmt_date, closing = ("交易日期", "摘要", "金额", "余额"), (lambda d: d), f"期末余额：{_money(balance)}"
    else:
        title = rng.choice(["Bank of Shanghai", "Harbour City Bank", "Pacific Commerce Bank"]) + " Statement of Account"

        def fmt_date(iso: str) -> str:
            d = dt.date.fromisoformat(iso)
            return f"{d.day:02d} {MONTHS[d.month - 1]} {d.year}"

        head = [f"Account Name: {holder}", f"Account Number: {spaced}",
                f"Statement Period: {fmt_date(start.isoformat())} to {fmt_date(end.isoformat())}",
                f"Opening Balance: {_money(opening)}"]
        cols, closing = ("Date", "Description", "Amount", "Balance"), f"Closing Balance: {_money(balance)}"
    page.text((100, 80), title, 40, bold=True)
    for i, text in enumerate(head):
        page.text((100, 170 + i * 50), text, 26)
    top = 400
    xs = (100, 330, 760, 1000)
    page.draw.line([(90, top - 10), (1150, top - 10)], fill=(0, 0, 0), width=2)
    for x, text in zip(xs, cols, strict=True):
        page.text((x, top), text, 26, bold=True)
    page.draw.line([(90, top + 45), (1150, top + 45)], fill=(0, 0, 0), width=1)
    for r, row in enumerate(rows):
        y = top + 65 + r * 52
        page.text((xs[0], y), fmt_date(row["date"]), 24)
        page.text((xs[1], y), row["description"], 24)
        page.text((xs[2], y), _money(Decimal(row["amount"]), signed=True), 24)
        page.text((xs[3], y), _money(Decimal(row["balance"])), 24)
    page.text((100, top + 95 + len(rows) * 52), closing, 26)
    return page, truth, rows


GENERIC_PAIRS = [
    ("发票号码", lambda r: f"{r.randrange(10**7, 10**8)}"), ("开票日期", lambda r: f"2024年{r.randrange(1, 13)}月{r.randrange(1, 29)}日"),
    ("Invoice No", lambda r: f"INV-{r.randrange(1000, 9999)}"), ("Customer", lambda r: r.choice(["ACME Ltd", "Globex"])),
    ("联系电话", lambda r: f"138{r.randrange(10**7, 10**8)}"), ("Total", lambda r: f"{r.randrange(100, 99999)}.00"),
    ("合同编号", lambda r: f"HT-{r.randrange(10**5, 10**6)}"), ("Reference", lambda r: f"REF{r.randrange(10**5, 10**6)}"),
]
GENERIC_TEXT = [
    "本通知自发布之日起生效，请各部门认真执行。", "Please keep this page for your records.",
    "如有疑问，请联系客户服务中心。", "Thank you for your business.", "会议纪要：下周一上午九点讨论预算。",
    "The goods remain our property until paid in full.",
]


def generic_page(rng: random.Random) -> tuple[Canvas, dict[str, Any]]:
    page = Canvas(Image.new("RGB", (1240, 1000), (255, 255, 255)))
    page.text((100, 70), rng.choice(["通知 Notice", "发票 Invoice", "收据 Receipt", "备忘录 Memo"]), 40, bold=True)
    pairs = rng.sample(GENERIC_PAIRS, 4)
    truth: dict[str, Any] = {}
    y = 180
    for key, make in pairs:
        value = make(rng)
        page.text((100, y), f"{key}: {value}" if key.isascii() else f"{key}：{value}", 28)
        truth[f"kv:{key.replace(' ', '')}"] = value  # as the worker names it
        y += 60
    for text in rng.sample(GENERIC_TEXT, 3):
        page.text((100, y + 30), text, 26)
        y += 56
    return page, truth


def make_document(index: int, kind: str, rng: random.Random) -> Document:
    name = f"{index:04d}_{kind}"
    if kind == "id_card":
        page, truth = id_card_page(rng)
        return Document(name, kind, "zh", [page], truth, format=rng.choice(["jpeg", "png"]))
    if kind == "bank_statement":
        language = rng.choice(["zh", "en"])
        page, truth, rows = statement_page(rng, language)
        return Document(f"{name}_{language}", kind, language, [page], truth, rows, format=rng.choice(["png", "pdf"]))
    if kind == "generic":
        page, truth = generic_page(rng)
        return Document(name, kind, "mixed", [page], truth, format="png")
    card, card_truth = id_card_page(rng)
    other, other_truth = generic_page(rng)
    return Document(name, "mixed", "zh", [card, other], card_truth, format="pdf",
                    page_types=["id_card", "generic"], page_fields=[card_truth, other_truth])


# -- degradations ------------------------------------------------------------------------------


def choose_degradations(rng: random.Random, clean_fraction: float) -> list[str]:
    if rng.random() < clean_fraction:
        return []
    chosen = []
    if rng.random() < 0.4:
        chosen.append(rng.choice(["rotate90", "rotate180", "rotate270"]))
    others = ["skew", "blur", "noise", "jpeg", "low_contrast"]
    chosen += rng.sample(others, rng.choice((1, 1, 2)))
    return chosen


def degrade(image: Image.Image, degradations: list[str], rng: random.Random) -> tuple[Image.Image, int, float]:
    """Apply ``degradations``; returns the image, its clockwise turn back to upright, the skew."""
    rotation, skew = 0, 0.0
    img = image
    if "skew" in degradations:
        skew = rng.choice((-1, 1)) * rng.uniform(1.0, 4.0)
        img = img.rotate(skew, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(255, 255, 255))
    for angle in (90, 180, 270):
        if f"rotate{angle}" in degradations:
            img = img.rotate(angle, expand=True)
            rotation = angle
    if "blur" in degradations:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.8, 1.4)))
    if "low_contrast" in degradations:
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = rng.uniform(100, 130), rng.uniform(190, 215)
        img = Image.fromarray((lo + arr * (hi - lo) / 255).astype(np.uint8))
    if "noise" in degradations:
        arr = np.asarray(img, dtype=np.float32)
        noise = np.random.default_rng(rng.randrange(2**32)).normal(0, rng.uniform(6, 12), arr.shape)
        img = Image.fromarray(np.clip(arr + noise, 0, 255).astype(np.uint8))
    if "jpeg" in degradations:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=rng.randrange(20, 35))
        img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return img, rotation, skew


# -- writing -----------------------------------------------------------------------------------


def encode(images: list[Image.Image], fmt: str) -> tuple[bytes, str]:
    buf = io.BytesIO()
    if fmt == "pdf":
        images[0].save(buf, format="PDF", save_all=True, append_images=images[1:], resolution=150)
        return buf.getvalue(), "pdf"
    if fmt == "jpeg":
        images[0].save(buf, format="JPEG", quality=92)
        return buf.getvalue(), "jpg"
    images[0].save(buf, format="PNG", optimize=False)
    return buf.getvalue(), "png"


def generate(out_dir: str | Path, count: int = 20, *, seed: int = 0, kinds: tuple[str, ...] = KINDS,
             clean_fraction: float = 0.4) -> list[Path]:
    """Write ``count`` documents and their truth files to ``out_dir``; returns the truth paths."""
    return list(iter_generate(out_dir, count, seed=seed, kinds=kinds, clean_fraction=clean_fraction))


def iter_generate(out_dir: str | Path, count: int = 20, *, seed: int = 0, kinds: tuple[str, ...] = KINDS,
                  clean_fraction: float = 0.4) -> Iterator[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for index in range(count):
        kind = kinds[index % len(kinds)]
        doc = make_document(index, kind, rng)
        degradations = choose_degradations(rng, clean_fraction)
        images, pages = [], []
        for i, canvas in enumerate(doc.pages):
            img, rotation, skew = degrade(canvas.image, degradations, rng)
            images.append(img)
            pages.append({"document_type": doc.page_types[i] if doc.page_types else doc.kind,
                          "fields": doc.page_fields[i] if doc.page_fields else doc.fields,
                          "rotation": rotation, "skew_degrees": round(skew, 2), "width": canvas.image.width,
                          "height": canvas.image.height,
                          "lines": [{"text": ln.text, "confidence": 1.0, "box": ln.box} for ln in canvas.lines]})
        data, ext = encode(images, "jpeg" if "jpeg" in degradations and doc.format == "png" else doc.format)
        file = f"{doc.name}.{ext}"
        (out / file).write_bytes(data)
        truth = {"file": file, "document_type": "id_card" if doc.kind == "mixed" else doc.kind,
                 "kind": doc.kind, "language": doc.language, "degradations": degradations,
                 "fields": doc.fields, "rows": doc.rows, "pages": pages}
        path = out / f"{doc.name}.truth.json"
        path.write_text(json.dumps(truth, ensure_ascii=False, indent=1))
        yield path
