"""Header-level inspection of a submitted document, fed as a stream of chunks.

A document's type is decided by its magic bytes, never its name, and every cap that can be
read from a header — pixels of an image, pages of a PDF — is checked *while the bytes arrive*:
a 30,000 x 30,000 PNG is refused after its first 24 bytes, and nothing is ever decoded.

:class:`DocumentInspector` keeps at most ``HEAD_BYTES`` of the start (image headers), a short
tail (end markers: a truncated file is refused) and, for PDFs, a running count of page
objects and the largest ``/Count`` of a page tree. What cannot be seen at header level — a PDF
whose page tree sits in compressed object streams, a TIFF whose directory lies past the head —
is left to the worker's decoder, which checks the same caps again before it decodes.

The API runs it on every upload; the worker may run :func:`inspect` on bytes it already holds.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from ocrfleet.errors import DocumentTooLarge, InvalidDocument, UnsupportedType

KINDS = ("jpeg", "png", "tiff", "pdf", "bmp", "webp")
CONTENT_TYPES = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "tiff": "image/tiff",
    "pdf": "application/pdf",
    "bmp": "image/bmp",
    "webp": "image/webp",
}
HEAD_BYTES = 1 << 20
"""How much of the start is kept for header parsing (JPEG frame headers follow EXIF blocks)."""
_TAIL_BYTES = 1024
_PDF_OVERLAP = 64
_PDF_PAGE = re.compile(rb"/Type[ \t\r\n]{0,8}/Page(?![A-Za-z])")
_PDF_COUNT = re.compile(rb"/Count[ \t\r\n]{1,8}(\d{1,9})")
# JPEG start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) are not frames.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


@dataclass(frozen=True)
class DocumentInfo:
    """What the headers say about a document."""

    kind: str
    size: int
    width: int | None = None
    height: int | None = None
    pages: int | None = None
    """Pages of a PDF as far as its uncompressed structure shows; None when it does not."""

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.kind]


def sniff_kind(head: bytes) -> str | None:
    """The type named by the magic bytes at the start, or None when none matches (yet)."""
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[:5] == b"%PDF-":
        return "pdf"
    if head[:2] == b"BM" and len(head) >= 26:
        return "bmp"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


class DocumentInspector:
    """Feed chunks as they arrive; :meth:`finish` once the stream ends.

    Raises :class:`~ocrfleet.errors.UnsupportedType` for unknown magic bytes,
    :class:`~ocrfleet.errors.DocumentTooLarge` past ``max_pixels`` or ``max_pages`` and
    :class:`~ocrfleet.errors.InvalidDocument` for empty, truncated or malformed headers —
    from :meth:`feed` as soon as the evidence is in, so a caller can stop reading.
    """

    def __init__(self, *, max_pixels: int, max_pages: int) -> None:
        self.max_pixels = max_pixels
        self.max_pages = max_pages
        self.size = 0
        self.kind: str | None = None
        self.width: int | None = None
        self.height: int | None = None
        self._head = bytearray()
        self._tail = b""
        self._pdf_carry = b""
        self._pdf_page_objects = 0
        self._pdf_max_count = 0

    # -- streaming ---------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.size += len(chunk)
        if len(self._head) < HEAD_BYTES:
            self._head += chunk[: HEAD_BYTES - len(self._head)]
        self._tail = (self._tail + chunk)[-_TAIL_BYTES:]
        if self.kind is None:
            self._decide_kind(final=False)
        if self.kind is not None and self.width is None:
            self._read_dimensions(final=False)
        if self.kind == "pdf":
            self._scan_pdf(chunk)

    def finish(self) -> DocumentInfo:
        if self.size == 0:
            raise InvalidDocument("the document is empty (0 bytes); send the file's content",
                                  code="empty_document")
        if self.kind is None:
            self._decide_kind(final=True)
        assert self.kind is not None
        if self.width is None:
            self._read_dimensions(final=True)
        pages = None
        if self.kind == "pdf":
            pages = self._finish_pdf()
        self._check_complete()
        return DocumentInfo(kind=self.kind, size=self.size, width=self.width, height=self.height,
                            pages=pages)

    # -- type --------------------------------------------------------------------------------

    def _decide_kind(self, *, final: bool) -> None:
        kind = sniff_kind(bytes(self._head[:32]))
        if kind is None and (final or len(self._head) >= 32):
            raise UnsupportedType(
                "the document is not a supported type (judged by its content, not its name); "
                f"send one of: {', '.join(k.upper() for k in KINDS)}"
            )
        self.kind = kind

    # -- pixels ------------------------------------------------------------------------------

    def _read_dimensions(self, *, final: bool) -> None:
        head = bytes(self._head)
        reader = {
            "png": _png_size, "jpeg": _jpeg_size, "bmp": _bmp_size, "webp": _webp_size, "tiff": _tiff_size,
        }.get(self.kind or "")
        if reader is None:
            return
        size = reader(head, final or len(head) >= HEAD_BYTES)
        if size is None:
            return
        width, height = size
        label = (self.kind or "").upper()
        if width <= 0 or height <= 0:
            raise InvalidDocument(f"the {label} header says {width}x{height} pixels; the file is corrupt")
        if width * height > self.max_pixels:
            raise DocumentTooLarge(
                f"the {label} is {width}x{height} px ({width * height:,} pixels), over the "
                f"{self.max_pixels:,}-pixel limit (a decompression bomb?); scan at a lower resolution"
            )
        self.width, self.height = width, height

    # -- PDF pages ---------------------------------------------------------------------------

    def _scan_pdf(self, chunk: bytes) -> None:
        buf = self._pdf_carry + chunk
        limit = len(buf) - _PDF_OVERLAP
        for m in _PDF_PAGE.finditer(buf):
            if m.start() < limit:
                self._pdf_page_objects += 1
        for m in _PDF_COUNT.finditer(buf):
            if m.start() < limit:
                self._pdf_max_count = max(self._pdf_max_count, int(m.group(1)))
        self._pdf_carry = buf[max(limit, 0):]
        self._check_pages()

    def _finish_pdf(self) -> int | None:
        buf = self._pdf_carry
        self._pdf_page_objects += len(_PDF_PAGE.findall(buf))
        for m in _PDF_COUNT.finditer(buf):
            self._pdf_max_count = max(self._pdf_max_count, int(m.group(1)))
        self._pdf_carry = b""
        self._check_pages()
        pages = max(self._pdf_page_objects, self._pdf_max_count)
        return pages or None

    def _check_pages(self) -> None:
        pages = max(self._pdf_page_objects, self._pdf_max_count)
        if pages > self.max_pages:
            raise DocumentTooLarge(
                f"the PDF has {pages:,} pages, over the {self.max_pages:,}-page limit; split it into "
                "smaller documents"
            )

    # -- completeness ------------------------------------------------------------------------

    def _check_complete(self) -> None:
        tail = self._tail
        label = (self.kind or "").upper()
        truncated = {
            "png": not tail.endswith(b"IEND\xaeB`\x82"),
            "jpeg": b"\xff\xd9" not in tail,
            "pdf": b"%%EOF" not in tail,
        }.get(self.kind or "", False)
        if self.kind in ("bmp", "webp"):
            # Both declare their total length near the start (RIFF counts from byte 8).
            declared = struct.unpack("<I", bytes(self._head[2:6] if self.kind == "bmp" else self._head[4:8]))[0]
            truncated = (declared if self.kind == "bmp" else declared + 8) > self.size
        if truncated:
            why = "shorter than its header declares" if self.kind in ("bmp", "webp") else "its end marker is missing"
            raise InvalidDocument(
                f"the {label} is truncated ({why}); send the complete file",
                code="truncated_document",
            )
        if self.kind != "pdf" and self.width is None and self.kind in ("png", "jpeg", "bmp", "webp"):
            raise InvalidDocument(f"the {label} has no readable image header; the file is corrupt")


def inspect(data: bytes, *, max_pixels: int, max_pages: int) -> DocumentInfo:
    """Inspect a document already in memory (the worker's path)."""
    inspector = DocumentInspector(max_pixels=max_pixels, max_pages=max_pages)
    inspector.feed(data)
    return inspector.finish()


# -- header readers: (head, complete) -> (width, height) or None while more bytes are needed ----


def _png_size(head: bytes, complete: bool) -> tuple[int, int] | None:
    if len(head) < 24:
        return _need_more(complete, "PNG")
    if head[12:16] != b"IHDR":
        raise InvalidDocument("the PNG does not start with an IHDR header; the file is corrupt")
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def _jpeg_size(head: bytes, complete: bool) -> tuple[int, int] | None:
    i = 2
    n = len(head)
    while True:
        while i < n and head[i] == 0xFF and i + 1 < n and head[i + 1] == 0xFF:
            i += 1  # fill bytes
        if i + 4 > n:
            return _need_more(complete, "JPEG")
        if head[i] != 0xFF:
            raise InvalidDocument("the JPEG's segment structure is corrupt; send the original file")
        marker = head[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        if marker in (0xD9, 0xDA):
            raise InvalidDocument("the JPEG has no frame header before its image data; the file is corrupt")
        (length,) = struct.unpack(">H", head[i + 2:i + 4])
        if length < 2:
            raise InvalidDocument("the JPEG's segment structure is corrupt; send the original file")
        if marker in _JPEG_SOF:
            if i + 9 > n:
                return _need_more(complete, "JPEG")
            height, width = struct.unpack(">HH", head[i + 5:i + 9])
            return width, height
        i += 2 + length


def _bmp_size(head: bytes, complete: bool) -> tuple[int, int] | None:
    if len(head) < 26:
        return _need_more(complete, "BMP")
    (header_size,) = struct.unpack("<I", head[14:18])
    if header_size == 12:
        width, height = struct.unpack("<HH", head[18:22])
    else:
        width, height = struct.unpack("<ii", head[18:26])
    return width, abs(height)


def _webp_size(head: bytes, complete: bool) -> tuple[int, int] | None:
    if len(head) < 30:
        return _need_more(complete, "WEBP")
    chunk = head[12:16]
    if chunk == b"VP8X":
        width = 1 + int.from_bytes(head[24:27], "little")
        height = 1 + int.from_bytes(head[27:30], "little")
        return width, height
    if chunk == b"VP8L":
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    raise InvalidDocument("the WEBP has an unknown first chunk; the file is corrupt")


def _tiff_size(head: bytes, complete: bool) -> tuple[int, int] | None:
    if len(head) < 8:
        return _need_more(complete, "TIFF")
    order = "<" if head[:2] == b"II" else ">"
    (offset,) = struct.unpack(order + "I", head[4:8])
    if offset + 2 > len(head):
        # The directory lies past what we keep: the worker checks the size when it decodes.
        return None if not complete or len(head) >= HEAD_BYTES else _truncated("TIFF")
    (entries,) = struct.unpack(order + "H", head[offset:offset + 2])
    if offset + 2 + 12 * entries > len(head):
        return None if not complete or len(head) >= HEAD_BYTES else _truncated("TIFF")
    dims: dict[int, int] = {}
    for k in range(entries):
        entry = head[offset + 2 + 12 * k: offset + 14 + 12 * k]
        tag, typ = struct.unpack(order + "HH", entry[:4])
        if tag in (256, 257):
            value = struct.unpack(order + ("H" if typ == 3 else "I"), entry[8:10] if typ == 3 else entry[8:12])[0]
            dims[tag] = value
    if 256 not in dims or 257 not in dims:
        raise InvalidDocument("the TIFF's first directory has no image size; the file is corrupt")
    return dims[256], dims[257]


def _need_more(complete: bool, label: str) -> None:
    if complete:
        _truncated(label)
    return None


def _truncated(label: str) -> None:
    raise InvalidDocument(f"the {label} is truncated inside its header; send the complete file",
                          code="truncated_document")
