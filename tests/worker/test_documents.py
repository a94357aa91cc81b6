"""Decoding: types by magic bytes, caps checked before decoding, hostile files refused clearly."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from ocrfleet_worker.documents import DecodeLimits, decode, stretch_contrast
from PIL import Image

from ocrfleet.errors import DocumentTooLarge, InvalidDocument, UnsupportedType
from tests.worker.hostile import encrypted_pdf, jpeg_bytes, pdf_bytes, png16_bomb, png_bomb, png_bytes


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt,kind", [("JPEG", "jpeg"), ("PNG", "png"), ("TIFF", "tiff"), ("BMP", "bmp"),
                                      ("WEBP", "webp"), ("PDF", "pdf")])
def test_each_supported_type_decodes_to_rgb_pages(fmt, kind):
    data = _save(Image.new("RGB", (120, 80), (200, 10, 10)), fmt)
    doc = decode(data)
    assert doc.kind == kind and len(doc.pages) == 1
    page = doc.pages[0].image
    assert page.dtype == np.uint8 and page.ndim == 3 and page.shape[2] == 3


def test_type_comes_from_content_not_name():
    # A PNG is a PNG whatever it is called; text is refused whatever it is called.
    assert decode(png_bytes(10, 10)).kind == "png"
    with pytest.raises(UnsupportedType, match="not a supported type"):
        decode(b"hello, I am a text file pretending to be scan.jpg")


def test_empty_document_is_refused():
    with pytest.raises(InvalidDocument, match="empty") as err:
        decode(b"")
    assert err.value.code == "empty_document"


def test_truncated_jpeg_is_a_clear_error():
    data = jpeg_bytes(400, 300)
    with pytest.raises(InvalidDocument, match="JPEG is truncated"):
        decode(data[: len(data) // 2])


def test_truncated_pdf_is_a_clear_error():
    data = pdf_bytes(2)
    with pytest.raises(InvalidDocument, match="PDF"):
        decode(data[: len(data) // 3])


def test_encrypted_pdf_asks_for_the_password_to_be_removed():
    with pytest.raises(InvalidDocument, match="encrypted") as err:
        decode(encrypted_pdf())
    assert err.value.code == "encrypted_document"


def test_decompression_bomb_is_refused_before_decoding():
    bomb = png_bomb(10_000, 10_000)  # 100 megapixels in ~150 KB
    assert len(bomb) < 500_000
    with pytest.raises(DocumentTooLarge, match="decompression bomb"):
        decode(bomb)


def test_pil_bomb_guard_also_holds_when_our_cap_is_raised():
    with pytest.raises(DocumentTooLarge):
        decode(png_bomb(12_000, 12_000), DecodeLimits(max_pixels=10**9))  # PIL warns past 120 Mpx


def test_image_20000_px_long_is_refused():
    with pytest.raises(DocumentTooLarge, match="20000x300 px"):
        decode(png_bytes(20_000, 300))


def test_byte_cap():
    with pytest.raises(DocumentTooLarge, match="byte limit"):
        decode(png_bytes(100, 100), DecodeLimits(max_bytes=50))


def test_pdf_page_cap():
    with pytest.raises(DocumentTooLarge, match="3 pages"):
        decode(pdf_bytes(3), DecodeLimits(max_pages=2))


def test_multi_page_tiff_gives_every_page():
    frames = [Image.new("L", (64, 48), c) for c in (0, 128, 255)]
    data = _save(frames[0], "TIFF", save_all=True, append_images=frames[1:])
    doc = decode(data)
    assert [p.index for p in doc.pages] == [0, 1, 2]
    assert [int(p.image.mean()) for p in doc.pages] == [0, 128, 255]


def test_multi_page_pdf_renders_every_page_within_max_side():
    doc = decode(pdf_bytes(2), DecodeLimits(pdf_dpi=300, max_side=500))
    assert len(doc.pages) == 2
    assert all(max(p.image.shape[:2]) <= 500 for p in doc.pages)


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (200, 100), (255, 255, 255))
    img.paste((0, 0, 0), (0, 0, 20, 20))  # a black square top-left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs 90° clockwise
    page = decode(_save(img, "JPEG", exif=exif, quality=95)).pages[0]
    assert page.image.shape[:2] == (200, 100)  # portrait once upright
    assert page.image[:20, -20:].mean() < 60  # the square is now top-right


def test_downscale_to_max_side():
    page = decode(png_bytes(3000, 1500), DecodeLimits(max_side=1000)).pages[0]
    assert page.image.shape[:2] == (500, 1000)
    assert page.scale == pytest.approx(1 / 3)


def test_low_contrast_scan_is_stretched_and_good_scan_is_not():
    rng = np.random.default_rng(0)
    faint = rng.integers(150, 190, size=(100, 100, 3), dtype=np.uint8)
    stretched, applied = stretch_contrast(faint)
    assert applied
    assert int(stretched.max()) - int(stretched.min()) > 200
    good = rng.integers(0, 256, size=(100, 100, 3), dtype=np.uint8)
    same, applied = stretch_contrast(good)
    assert not applied and same is good
    blank = np.full((50, 50, 3), 255, np.uint8)
    assert stretch_contrast(blank)[1] is False


def test_corrupt_png_body_is_a_clear_error():
    data = bytearray(png_bytes(300, 300, color=7))
    data[60:] = b"\x00" * (len(data) - 60)
    with pytest.raises(InvalidDocument, match="PNG"):
        decode(bytes(data))


def test_a_16_bit_page_is_held_to_the_decoded_byte_cap_not_only_the_pixel_cap():
    """79 Mpx at 16 bits: under the pixel cap, so only the decoded bytes can refuse it."""
    bomb = png16_bomb(8900, 8900)
    assert len(bomb) < 500_000
    limits = DecodeLimits(max_pixels=80_000_000, max_decoded_bytes=100 * 1024 * 1024)
    with pytest.raises(DocumentTooLarge, match=r"mode I;16 \(2 bytes a pixel\).*over the 104,857,600-byte limit"):
        decode(bomb, limits)


def test_a_16_bit_page_under_the_caps_decodes_in_bounded_memory(tmp_path):
    """The 154 KB PNG that once took 1.5 GiB: decoded in a fresh process, its peak is measured."""
    path = tmp_path / "bomb16.png"
    path.write_bytes(png16_bomb(8900, 8900))
    probe = (
        "import resource, sys\n"
        "from ocrfleet_worker.documents import DecodeLimits, decode\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "page = decode(data, DecodeLimits(max_pixels=80_000_000)).pages[0]\n"
        "grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before\n"
        "print(page.image.shape, grown // 1024)\n")
    done = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr
    shape, grown_mib = done.stdout.rsplit(" ", 1)
    assert shape.startswith("(2048, 2048, 3)")
    stored_mib = 8900 * 8900 * 2 / 2**20  # what Pillow must hold: 151 MiB
    assert int(grown_mib) < 2.5 * stored_mib, f"decoding grew the process by {grown_mib} MiB"
