"""Decoding a submitted document into page images the OCR engine can read.

The bytes come from users, so nothing here trusts them: the type is sniffed from the magic
bytes (never from the file name, by :mod:`ocrfleet.sniff`), every cap — bytes, pixels per page, pixels per side, pages —
is checked from the header *before* pixels are decoded (a decompression bomb never gets to
allocate its gigabytes) — including the bytes a page decodes to, which depend on its mode and
bit depth, not only its pixel count — and every failure is an :class:`~ocrfleet.errors.InvalidDocument`
(or one of its kinds) whose message says what was wrong.

Each page comes out upright per its EXIF orientation, as RGB ``uint8``, downscaled so its
longer side is at most ``max_side``, and with low-contrast scans stretched to full range.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ocrfleet.errors import DocumentTooLarge, InvalidDocument
from ocrfleet.sniff import inspect

# The worker checks its own caps from the header first; PIL's own bomb guard stays on as a
# second line (it raises at twice this many pixels and warns above it — we turn the warning
# into an error below).
Image.MAX_IMAGE_PIXELS = 120_000_000

@dataclass(frozen=True)
class DecodeLimits:
    """Caps and pre-processing knobs of decoding.

    Its defaults are the worker's (:class:`~ocrfleet_worker.settings.WorkerSettings` takes them).
    A pool sets ``max_bytes`` from its ``spec.api.maxUploadBytes`` and ``max_pages``,
    ``max_side`` and ``pdf_dpi`` from its ``spec.preprocessing``, whose CRD defaults are these
    (tests/operator/test_contracts.py checks it)."""

    max_bytes: int = 50 * 1024 * 1024
    """Larger documents are refused before any parsing."""
    max_pixels: int = 80_000_000
    """Pixels of one page as stored (width x height), checked from the header."""
    max_dimension: int = 16_384
    """Pixels of one side as stored, checked from the header."""
    max_decoded_bytes: int = 320 * 1024 * 1024
    """Bytes one page decodes to (pixels x bytes per pixel of its mode), checked from the header."""
    max_pages: int = 50
    """Pages of a PDF or multi-page TIFF."""
    max_side: int = 2048
    """Pages are downscaled so their longer side is at most this many pixels."""
    pdf_dpi: int = 200
    """Resolution PDF pages are rendered at (before the ``max_side`` downscale)."""
    contrast_min_range: int = 96
    """A page whose 1st-99th percentile grey range is narrower than this is stretched."""


@dataclass(frozen=True)
class Page:
    """One decoded page, ready for OCR."""

    index: int
    image: np.ndarray
    """RGB, ``uint8``, shape (height, width, 3)."""
    source_size: tuple[int, int]
    """(width, height) as stored in the document, before orientation and downscaling."""
    scale: float = 1.0
    """How much the page was scaled from its stored (or rendered) size."""
    contrast_stretched: bool = False


@dataclass(frozen=True)
class DecodedDocument:
    kind: str
    pages: list[Page]


def decode(data: bytes, limits: DecodeLimits | None = None) -> DecodedDocument:
    """Sniff, check and decode every page of ``data``."""
    limits = limits or DecodeLimits()
    if len(data) > limits.max_bytes:
        raise DocumentTooLarge(
            f"the document is {len(data):,} bytes, over the {limits.max_bytes:,}-byte limit"
        )
    # Type by magic bytes, header-level caps and end markers (shared with the API's upload check).
    kind = inspect(data, max_pixels=limits.max_pixels, max_pages=limits.max_pages).kind
    pages = _decode_pdf(data, limits) if kind == "pdf" else _decode_image(data, kind, limits)
    if not pages:
        raise InvalidDocument("the document has no pages")
    return DecodedDocument(kind=kind, pages=pages)


# -- raster images -----------------------------------------------------------------------------


def _decode_image(data: bytes, kind: str, limits: DecodeLimits) -> list[Page]:
    label = kind.upper()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            frames = getattr(img, "n_frames", 1) if kind == "tiff" else 1
            if frames > limits.max_pages:
                raise DocumentTooLarge(f"the {label} has {frames} pages, over the {limits.max_pages}-page limit")
            pages = []
            for i in range(frames):
                if frames > 1:
                    img.seek(i)
                _check_size(img, limits, f"page {i + 1}" if frames > 1 else "the image")
                img.load()
                pages.append(_prepare(i, img, limits))
            return pages
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DocumentTooLarge(f"the {label} would decode to too many pixels (a decompression bomb?): {exc}") from None
    except UnidentifiedImageError:
        raise InvalidDocument(f"the file starts like a {label} but is not a readable {label}") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as exc:
        raise InvalidDocument(f"the {label} is truncated or corrupt ({exc}); send the complete file") from None


STORED_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
"""Bytes per pixel Pillow holds a page in; every other mode takes four (RGB included)."""
WIDE_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
"""Modes with more than 8 bits a channel: shrunk before they are converted to 8-bit RGB."""


def _check_size(img: Image.Image, limits: DecodeLimits, what: str) -> None:
    w, h = img.size
    if w <= 0 or h <= 0:
        raise InvalidDocument(f"{what} has no pixels ({w}x{h})")
    if max(w, h) > limits.max_dimension:
        raise DocumentTooLarge(
            f"{what} is {w}x{h} px; a side over {limits.max_dimension:,} px is refused — scan at a lower resolution"
        )
    if w * h > limits.max_pixels:
        raise DocumentTooLarge(
            f"{what} is {w}x{h} px ({w * h:,} pixels), over the {limits.max_pixels:,}-pixel limit"
            " (a decompression bomb?)"
        )
    per_pixel = STORED_BYTES.get(img.mode, 4)
    if w * h * per_pixel > limits.max_decoded_bytes:
        raise DocumentTooLarge(
            f"{what} is {w}x{h} px in mode {img.mode} ({per_pixel} bytes a pixel) and would decode to "
            f"{w * h * per_pixel:,} bytes, over the {limits.max_decoded_bytes:,}-byte limit "
            "(a decompression bomb? send it at 8 bits a channel or a lower resolution)"
        )


def _prepare(index: int, img: Image.Image, limits: DecodeLimits, *, scale: float = 1.0) -> Page:
    source_size = img.size
    upright = ImageOps.exif_transpose(img) or img
    if upright.mode in WIDE_MODES:  # shrink in its own mode first: converting it whole costs ~20 bytes a pixel
        upright, shrink = downscale(upright, limits.max_side)
        rgb, more = downscale(_to_rgb(upright), limits.max_side)
        shrink *= more
    else:
        rgb, shrink = downscale(_to_rgb(upright), limits.max_side)
    array = np.asarray(rgb, dtype=np.uint8)
    array, stretched = stretch_contrast(array, limits.contrast_min_range)
    return Page(index=index, image=array, source_size=source_size, scale=scale * shrink,
                contrast_stretched=stretched)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    if img.mode in WIDE_MODES:
        arr = np.array(img, dtype=np.float32)  # a copy: shrunk already, so small
        lo, hi = float(arr.min()), float(arr.max())
        arr -= lo
        arr *= 255.0 / max(hi - lo, 1.0)
        return Image.fromarray(arr.astype(np.uint8)).convert("RGB")
    return img.convert("RGB")


def downscale(img: Image.Image, max_side: int) -> tuple[Image.Image, float]:
    """Shrink so the longer side is at most ``max_side``; returns the image and the factor."""
    w, h = img.size
    longest = max(w, h)
    if longest <= max_side:
        return img, 1.0
    factor = max_side / longest
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0), factor


def stretch_contrast(image: np.ndarray, min_range: int = 96) -> tuple[np.ndarray, bool]:
    """Stretch a washed-out page to the full 0-255 range.

    Pages whose 1st-99th percentile grey range already spans ``min_range`` levels are left
    alone (stretching a good scan only amplifies noise). Returns the image and whether it
    was stretched.
    """
    grey = image.mean(axis=2) if image.ndim == 3 else image
    step = max(1, int(np.sqrt(grey.size / 250_000)))  # percentiles of a sample are plenty
    lo, hi = np.percentile(grey[::step, ::step], (1, 99))
    spread = hi - lo
    if spread >= min_range or spread < 8:  # fine already, or a blank page: nothing to stretch
        return image, False
    out = (image.astype(np.float32) - lo) * (255.0 / spread)
    return np.clip(out, 0, 255).astype(np.uint8), True


# -- PDF ---------------------------------------------------------------------------------------


def _decode_pdf(data: bytes, limits: DecodeLimits) -> list[Page]:
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if exc.err_code in (pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY):
            raise InvalidDocument(
                "the PDF is encrypted and needs a password; remove the password and send it again",
                code="encrypted_document",
            ) from None
        raise InvalidDocument(f"the PDF is truncated or corrupt ({exc}); send the complete file") from None
    try:
        count = len(pdf)
        if count == 0:
            raise InvalidDocument("the PDF has no pages")
        if count > limits.max_pages:
            raise DocumentTooLarge(f"the PDF has {count} pages, over the {limits.max_pages}-page limit")
        pages = []
        for i in range(count):
            page = pdf[i]
            try:
                w_pt, h_pt = page.get_size()
                if not (w_pt > 0 and h_pt > 0):
                    raise InvalidDocument(f"PDF page {i + 1} has no area ({w_pt}x{h_pt} pt)")
                # Render straight at the size we keep: a poster-sized page never becomes a
                # 100-megapixel bitmap just to be shrunk again.
                scale = min(limits.pdf_dpi / 72.0, limits.max_side / max(w_pt, h_pt))
                bitmap = page.render(scale=scale, may_draw_forms=False)
                img = bitmap.to_pil()
            except pdfium.PdfiumError as exc:
                raise InvalidDocument(f"PDF page {i + 1} cannot be rendered ({exc})") from None
            finally:
                page.close()
            pages.append(_prepare(i, img, limits, scale=scale))
        return pages
    finally:
        pdf.close()
