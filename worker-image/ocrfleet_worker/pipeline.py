"""One document from bytes to page results: decode, read, classify, extract, mask.

This is the worker's pure core: no queue, no store. The OCR engine is passed in as anything
with ``read_page(image) -> PageText`` (``.lines``, ``.rotation``) — the Triton adapter in a
cluster, the in-process PyTorch engine locally, a replay of known answers in tests.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ocrfleet.masking import MaskPolicy, mask_page
from ocrfleet.results import DOCUMENT_TYPES, PageResult, TextLine
from ocrfleet_worker.doctype import classify_document
from ocrfleet_worker.documents import DecodeLimits, decode
from ocrfleet_worker.fields import extract


class PageText(Protocol):
    """What an engine read on one page, as far as the pipeline needs it."""

    lines: list[TextLine]
    rotation: int
    """Degrees (0, 90, 180, 270) the page was turned clockwise to read upright."""


class PageReader(Protocol):
    """The one OCR engine protocol: Triton's and the in-process engine (:mod:`ocrfleet_worker.engine`),
    and the dev tooling's replay, all read pages this way."""

    def read_page(self, image: np.ndarray) -> PageText:
        """Read one page: ``uint8`` H x W x 3, RGB (the engine converts for its networks)."""


MODEL_STAGES = ("detect", "classify", "recognize")
"""The model's stages an engine may time in its reads (:attr:`PageRead.timings_ms`)."""


def engine_image(rgb: np.ndarray) -> np.ndarray:
    """A decoded page as the engine takes it: RGB ``uint8``, contiguous."""
    return np.ascontiguousarray(rgb)


@dataclass(frozen=True)
class ProcessedDocument:
    kind: str
    document_type: str
    pages: list[PageResult]
    processing_ms: float
    stage_seconds: tuple[tuple[str, float], ...] = ()
    """How long each stage took, in order: ``decode`` and ``mask`` once per document; ``read`` (the
    engine's whole ``read_page``), the model's own ``detect``/``classify``/``recognize`` when the
    engine reports them (``timings_ms``), and ``extract`` (classify and fields) once per page."""


def page_result(index: int, image: np.ndarray, read: PageText, *, requested_type: str = "auto") -> PageResult:
    """Classify and extract one page already read by the engine (no masking)."""
    lines = list(read.lines)
    doc_type = requested_type if requested_type not in ("auto", "") else classify_document(lines).document_type
    found = extract(doc_type, lines)
    h, w = image.shape[:2]
    rotation = int(read.rotation) % 360
    if rotation in (90, 270):
        w, h = h, w
    w, h = getattr(read, "width", w) or w, getattr(read, "height", h) or h
    return PageResult(page=index + 1, width=w, height=h, rotation=rotation, document_type=doc_type,
                      lines=lines, fields=found.fields, rows=found.rows, checks=found.checks)


def document_type_of(pages: list[PageResult]) -> str:
    """The document's type: its most common specific page type, else ``generic``."""
    specific = Counter(p.document_type for p in pages if p.document_type != "generic")
    return specific.most_common(1)[0][0] if specific else "generic"


class DocumentPipeline:
    def __init__(self, engine: PageReader, limits: DecodeLimits | None = None) -> None:
        self.engine = engine
        self.limits = limits or DecodeLimits()

    def process(self, data: bytes, *, requested_type: str = "auto",
                mask: MaskPolicy | None = None) -> ProcessedDocument:
        """Every page of one document; raises InvalidDocument (and kin) for unusable input."""
        if requested_type not in DOCUMENT_TYPES:
            requested_type = "auto"
        start = time.perf_counter()
        stages: list[tuple[str, float]] = []
        decoded = decode(data, self.limits)
        stages.append(("decode", time.perf_counter() - start))
        pages = []
        for p in decoded.pages:
            tick = time.perf_counter()
            read = self.engine.read_page(engine_image(p.image))
            stages.append(("read", time.perf_counter() - tick))
            timings = getattr(read, "timings_ms", None) or {}
            stages += [(stage, timings[stage] / 1000) for stage in MODEL_STAGES if stage in timings]
            tick = time.perf_counter()
            pages.append(page_result(p.index, p.image, read, requested_type=requested_type))
            stages.append(("extract", time.perf_counter() - tick))
        if mask:
            tick = time.perf_counter()
            pages = [mask_page(p, mask) for p in pages]
            stages.append(("mask", time.perf_counter() - tick))
        return ProcessedDocument(kind=decoded.kind, document_type=document_type_of(pages), pages=pages,
                                 processing_ms=(time.perf_counter() - start) * 1000, stage_seconds=tuple(stages))
