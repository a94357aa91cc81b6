"""Builders of hostile and edge-case documents for the decoding tests (made in memory)."""

from __future__ import annotations

import io
import re
import struct
import zlib

from PIL import Image


def png_bytes(width: int, height: int, color: int = 255) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(width: int = 200, height: int = 100, **save) -> bytes:
    img = Image.new("RGB", (width, height), (255, 255, 255))
    for x in range(0, width, 7):
        img.putpixel((x, height // 2), (0, 0, 0))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **save)
    return buf.getvalue()


def pdf_bytes(pages: int = 1) -> bytes:
    buf = io.BytesIO()
    images = [Image.new("RGB", (300, 200), (255, 255, 255)) for _ in range(pages)]
    images[0].save(buf, format="PDF", save_all=True, append_images=images[1:], resolution=72)
    return buf.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A valid greyscale PNG of ``width`` x ``height`` zeros: a few hundred KB that decode to GBs."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    comp = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    rows_per_chunk = max(1, (1 << 22) // len(row))
    parts = []
    for start in range(0, height, rows_per_chunk):
        parts.append(comp.compress(row * min(rows_per_chunk, height - start)))
    parts.append(comp.flush())
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


def encrypted_pdf() -> bytes:
    """A PDF with a standard security handler whose user password is not empty.

    Built as an incremental update of a plain PDF: an ``/Encrypt`` dictionary (RC4, R2) whose
    ``/U`` entry matches no empty password, so every reader asks for one.
    """
    base = pdf_bytes()
    size = int(re.search(rb"/Size (\d+)", base).group(1))
    root = re.search(rb"/Root (\d+ \d+ R)", base).group(1)
    prev = int(re.findall(rb"startxref\s+(\d+)", base)[-1])
    obj_offset = len(base)
    enc = (f"{size} 0 obj\n<< /Filter /Standard /V 1 /R 2 /Length 40 /P -4 "
           f"/O <{'a5' * 32}> /U <{'5c' * 32}> >>\nendobj\n").encode()
    xref_offset = obj_offset + len(enc)
    xref = f"xref\n{size} 1\n{obj_offset:010d} 00000 n \n".encode()
    trailer = (f"trailer\n<< /Size {size + 1} /Root {root.decode()} /Prev {prev} /Encrypt {size} 0 R "
               f"/ID [<{'01' * 16}> <{'01' * 16}>] >>\nstartxref\n{xref_offset}\n%%EOF\n").encode()
    return base + enc + xref + trailer


def png16_bomb(width: int, height: int) -> bytes:
    """A 16-bit greyscale PNG of mostly zeros: a few hundred KB that decode to 2 bytes a pixel."""
    import numpy as np

    pixels = np.zeros((height, width), dtype=np.uint16)
    pixels[100:200, 100:min(width, 4000)] = 40000
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()
