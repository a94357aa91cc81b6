"""The page pipeline: one page image in, its text lines in reading order and its rotation out.

Stages, each in its own module:

1. :mod:`~ocrfleet_worker.model.detect` finds line quadrilaterals with the DB network;
2. page orientation is decided for the page, not per line: if most text (by length) runs
   vertically, the page is lying on its side and is turned 90° clockwise; then
   :mod:`~ocrfleet_worker.model.classify` lets the lines vote on upright versus upside down,
   and a clear majority turns the page 180° more;
3. :mod:`~ocrfleet_worker.model.crops` cuts each line out of the upright page;
4. :mod:`~ocrfleet_worker.model.recognize` reads the crops in width-sorted batches; a line the
   direction classifier confidently calls the other way round than its page is read both ways
   and the reading with the higher confidence stays;
5. :mod:`~ocrfleet_worker.model.order` puts lines in reading order, robust to a few degrees of skew.

The networks are reached through :class:`Networks` — TorchScript in this process or Triton
over gRPC (:mod:`ocrfleet_worker.engine`); everything else here is plain numpy and OpenCV.

Images are numpy ``uint8`` arrays in **BGR** channel order (OpenCV's; the networks were trained
on it), ``H x W x 3``; grey ``H x W`` and BGRA pages are accepted too. Boxes in the result are
in the pixel coordinates of the *upright* page — the input turned clockwise by ``rotation``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np

from ocrfleet.results import TextLine
from ocrfleet_worker.model import classify, crops, detect, order, recognize


class Networks(Protocol):
    """The three networks with their served ends (:mod:`~ocrfleet_worker.model.ends`), whatever
    runs them."""

    def detect(self, batch: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) BGR pages → uint8 (N, H, W) text probability x 255."""

    def classify(self, batch: np.ndarray) -> np.ndarray:
        """float32 (N, 3, 48, 192) → (N, 2) probability of [upright, upside down]."""

    def recognize(self, batch: np.ndarray) -> np.ndarray:
        """float32 (N, 3, 48, W) → (N, W / 8, 2): per column the best class and its probability."""


@dataclass(frozen=True)
class PipelineSettings:
    detector: detect.DetectorSettings = field(default_factory=detect.DetectorSettings)
    classifier: classify.ClassifierSettings = field(default_factory=classify.ClassifierSettings)
    recognizer: recognize.RecognizerSettings = field(default_factory=recognize.RecognizerSettings)
    min_confidence: float = 0.5
    """min_confidence: lines read with a lower confidence are dropped (mostly noise and graphics)."""
    detect_orientation: bool = True
    """detect_orientation: decide the page's rotation (0/90/180/270); off trusts the page as given."""


@dataclass
class PageRead:
    """What the model read on one page."""

    lines: list[TextLine]
    rotation: int
    """Degrees (0, 90, 180, 270) the input was turned clockwise to read upright."""
    width: int
    """Width of the upright page; boxes are in its pixels."""
    height: int
    timings_ms: dict[str, float] = field(default_factory=dict)
    """Milliseconds per stage: detect, classify, recognize, total."""


class ModelReader:
    """Pre- and post-processing around a :class:`Networks`; safe to share between threads."""

    def __init__(self, networks: Networks, dictionary: Sequence[str], settings: PipelineSettings | None = None) -> None:
        self.networks = networks
        self.settings = settings or PipelineSettings()
        self.decoder = recognize.CtcDecoder(dictionary)

    def read_page(self, image: np.ndarray) -> PageRead:
        started = time.perf_counter()
        timings: dict[str, float] = {}
        page = as_bgr(image)
        height, width = page.shape[:2]

        tick = time.perf_counter()
        prepared = detect.prepare_page(page, self.settings.detector)
        probability = self.networks.detect(prepared.pages)[0]
        boxes = detect.boxes_from_probability(probability, prepared, self.settings.detector)
        timings["detect"] = _ms(tick)

        rotation = sideways_rotation([b.quad for b in boxes]) if self.settings.detect_orientation else 0
        upright = crops.rotate_page(page, rotation)
        quads = [crops.rotate_quad(b.quad, rotation, width, height) for b in boxes]
        line_crops = [crops.crop_line(upright, q) for q in quads]

        tick = time.perf_counter()
        suspects: list[int] = []
        if self.settings.detect_orientation and line_crops:
            flip, suspects = self._orientation(line_crops, quads)
            if flip:
                h, w = upright.shape[:2]
                rotation = (rotation + 180) % 360
                upright = crops.rotate_page(upright, 180)
                quads = [crops.rotate_quad(q, 180, w, h) for q in quads]
                line_crops = [np.ascontiguousarray(c[::-1, ::-1]) for c in line_crops]
        timings["classify"] = _ms(tick)

        tick = time.perf_counter()
        readings = self._recognize(line_crops)
        if suspects:
            flipped = self._recognize([np.ascontiguousarray(line_crops[i][::-1, ::-1]) for i in suspects])
            for i, other in zip(suspects, flipped, strict=True):
                if other.confidence > readings[i].confidence:
                    readings[i] = other
        timings["recognize"] = _ms(tick)

        kept = [i for i, r in enumerate(readings) if r.text.strip() and r.confidence >= self.settings.min_confidence]
        ordered = [kept[k] for k in order.reading_order([quads[i] for i in kept])]
        lines = [TextLine(text=readings[i].text, confidence=round(readings[i].confidence, 5),
                          box=[(round(float(x), 1), round(float(y), 1)) for x, y in quads[i]])
                 for i in ordered]
        timings["total"] = _ms(started)
        up_h, up_w = upright.shape[:2]
        return PageRead(lines=lines, rotation=rotation, width=up_w, height=up_h, timings_ms=timings)

    def _orientation(self, line_crops: list[np.ndarray], quads: list[np.ndarray]) -> tuple[bool, list[int]]:
        """Whether the page is upside down, and the lines that confidently disagree with it."""
        cfg = self.settings.classifier
        lengths = [float(np.linalg.norm(q[0] - q[1])) for q in quads]
        sample = classify.vote_sample(lengths, cfg)
        found: list[classify.LineDirection] = []
        for start in range(0, len(sample), cfg.batch_size):
            chunk = sample[start : start + cfg.batch_size]
            found += classify.directions(self.networks.classify(classify.prepare_batch([line_crops[i] for i in chunk])))
        flip = classify.page_upside_down(found, [lengths[i] for i in sample], cfg)
        suspects = [i for i, d in zip(sample, found, strict=True)
                    if d.upside_down != flip and d.confidence >= cfg.line_disagreement]
        return flip, sorted(suspects)

    def _recognize(self, line_crops: list[np.ndarray]) -> list[recognize.Reading]:
        cfg = self.settings.recognizer
        readings: list[recognize.Reading] = [recognize.Reading("", 0.0)] * len(line_crops)
        for batch in recognize.plan_batches(line_crops, cfg):
            best = self.networks.recognize(recognize.prepare_batch(line_crops, batch, cfg))
            for i, reading in zip(batch.indices, self.decoder.decode(best), strict=True):
                readings[i] = reading
        return readings


def sideways_rotation(quads: Sequence[np.ndarray]) -> int:
    """90 when most text (by length) runs vertically — the page lies on its side — else 0."""
    vertical = horizontal = 0.0
    for quad in quads:
        w = float(np.linalg.norm(quad[0] - quad[1]))
        h = float(np.linalg.norm(quad[0] - quad[3]))
        if h >= crops.VERTICAL_ASPECT * w:
            vertical += h
        elif w >= crops.VERTICAL_ASPECT * h:
            horizontal += w
    return 90 if vertical > horizontal else 0


def as_bgr(image: np.ndarray) -> np.ndarray:
    """A uint8 H x W x 3 BGR page from grey, BGR or BGRA input."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"a page must be uint8 pixels, got {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f"a page must be H x W, H x W x 3 or H x W x 4 pixels, got shape {image.shape}")


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)
