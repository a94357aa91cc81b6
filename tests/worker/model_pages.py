"""Pages with known text for the model tests and the model benchmark.

Chinese and English lines drawn with Pillow in Noto Sans CJK (Debian's fonts-noto-cjk) on a
white page, left-aligned, one line per row; optionally turned by a multiple of 90° or skewed a
few degrees. Returns the page as RGB ``uint8`` and the lines' text in reading order.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
FONT_INDEX_SC = 2  # Noto Sans CJK SC inside the collection

CHINESE = [
    "姓名张伟性别男民族汉",
    "出生1990年3月7日",
    "住址北京市海淀区中关村大街27号",
    "公民身份号码110108199003071234",
    "交易日期摘要金额余额",
    "2024-01-05工资收入8500.00",
    "中国工商银行对账单第1页",
    "请妥善保管您的账户信息",
    "上海市浦东新区世纪大道100号",
    "本期余额人民币12345.67元",
]
ENGLISH = [
    "Account Statement January 2024",
    "Opening balance 1,024.50",
    "Card payment SUPERMARKET -45.20",
    "Transfer from savings 500.00",
    "Closing balance 1,479.30",
    "Customer service: +86 400 820 8888",
    "Page 1 of 2",
    "Reference: INV-2024-0017",
]


@dataclass(frozen=True)
class LabelledPage:
    image: np.ndarray
    """RGB uint8."""
    lines: list[str]
    """The drawn text, in reading order."""


def font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONT), size, index=FONT_INDEX_SC)


def render_page(lines: list[str], *, width: int = 1000, font_size: int = 30, pitch: float = 1.9,
                margin: int = 60) -> LabelledPage:
    face = font(font_size)
    height = int(2 * margin + pitch * font_size * len(lines))
    page = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(page)
    for row, text in enumerate(lines):
        draw.text((margin, margin + row * pitch * font_size), text, font=face, fill=(20, 20, 20))
    return LabelledPage(np.asarray(page), list(lines))


def sample_page(seed: int = 0, n_lines: int = 10, **render) -> LabelledPage:
    """A mixed Chinese/English page drawn from the sentences above."""
    rng = random.Random(seed)
    pool = CHINESE + ENGLISH
    return render_page([rng.choice(pool) for _ in range(n_lines)], **render)


def turned(page: LabelledPage, degrees: int) -> LabelledPage:
    """The page turned *counter-clockwise* by ``degrees`` (a reader must turn it clockwise back)."""
    return LabelledPage(np.ascontiguousarray(np.rot90(page.image, degrees // 90)), page.lines)


def skewed(page: LabelledPage, degrees: float) -> LabelledPage:
    """The page rotated by a small angle (white fill), as a scanner feeds it askew."""
    image = Image.fromarray(page.image).rotate(degrees, resample=Image.BICUBIC, expand=True, fillcolor="white")
    return LabelledPage(np.asarray(image), page.lines)


@functools.lru_cache(maxsize=1)
def local_engine():
    """One in-process torch engine for the whole test session (loading takes seconds)."""
    from ocrfleet_worker.engine import LocalTorchEngine
    from ocrfleet_worker.model.networks import TorchSettings

    return LocalTorchEngine(TorchSettings(device="auto", threads=1))


@functools.lru_cache(maxsize=1)
def reference_ocr():
    """The reference pipeline (rapidocr_onnxruntime), one thread like ours."""
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1)
