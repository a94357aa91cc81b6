"""Text recognition around the CTC network: line crops in, strings with confidences out.

PP-OCRv4's recogniser reads a strip 48 pixels high and of any width (a multiple of 8 helps)
and emits, for every 8-pixel column, a probability over 6,625 classes: the CTC *blank*
(class 0), the 6,623 characters of the dictionary in its order, and a space (last). Greedy CTC
decoding takes the most likely class per column, merges runs of the same class, and drops the
blanks; the line's confidence is the mean probability of the characters it kept.

Crops go to the network in batches: sorted by aspect ratio, cut into groups of at most
``batch_size``, each group resized to height 48 (aspect kept) and right-padded with zeros to a
common width. That width is rounded up to a multiple of ``width_step`` so that requests from
different pages share shapes — Triton's dynamic batcher only merges requests of equal shape.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ocrfleet_worker.model.detect import normalise


@dataclass(frozen=True)
class RecognizerSettings:
    height: int = 48
    """height: the strip height the network was trained on."""
    min_width: int = 320
    """min_width: no batch is narrower than this (short words keep their trained context)."""
    max_width: int = 3200
    """max_width: longer lines are squeezed to this width."""
    width_step: int = 64
    """width_step: batch widths are rounded up to a multiple of this (shared shapes batch better)."""
    batch_size: int = 8
    """batch_size: crops per network call (at most the Triton model's max_batch_size)."""


@dataclass(frozen=True)
class CropBatch:
    """Which crops (by index) go through the network together, and at which width."""

    indices: tuple[int, ...]
    width: int


@dataclass(frozen=True)
class Reading:
    text: str
    confidence: float


def plan_batches(crops: Sequence[np.ndarray], settings: RecognizerSettings) -> list[CropBatch]:
    """Group crops of similar aspect ratio; each group gets one padded width."""
    ratios = [c.shape[1] / max(c.shape[0], 1) for c in crops]
    order = sorted(range(len(crops)), key=lambda i: ratios[i])
    batches = []
    for start in range(0, len(order), settings.batch_size):
        group = tuple(order[start : start + settings.batch_size])
        widest = max(math.ceil(settings.height * ratios[i]) for i in group)
        width = max(settings.min_width, math.ceil(widest / settings.width_step) * settings.width_step)
        batches.append(CropBatch(group, min(width, settings.max_width)))
    return batches


def prepare_strip(crop: np.ndarray, width: int, height: int) -> np.ndarray:
    """A crop resized to ``height`` (aspect kept, at most ``width``), normalised, zero-padded."""
    resized_width = min(width, max(1, math.ceil(height * crop.shape[1] / max(crop.shape[0], 1))))
    strip = np.zeros((3, height, width), dtype=np.float32)
    strip[:, :, :resized_width] = normalise(cv2.resize(crop, (resized_width, height)))
    return strip


def prepare_batch(crops: Sequence[np.ndarray], batch: CropBatch, settings: RecognizerSettings) -> np.ndarray:
    return np.stack([prepare_strip(crops[i], batch.width, settings.height) for i in batch.indices])


class CtcDecoder:
    """Greedy CTC decoding over the recogniser's classes: blank, the dictionary, space."""

    def __init__(self, dictionary: Sequence[str]) -> None:
        self.classes = ["", *dictionary, " "]

    def decode(self, best: np.ndarray) -> list[Reading]:
        """(batch, steps, 2): each step's best class and its probability
        (:class:`~ocrfleet_worker.model.ends.BestClass`) → one reading per item."""
        best_p = best[:, :, 1]
        best = np.rint(best[:, :, 0]).astype(np.int64)
        readings = []
        for ids, ps in zip(best, best_p, strict=True):
            keep = ids != 0
            keep[1:] &= ids[1:] != ids[:-1]
            kept = ids[keep]
            if kept.size == 0:
                readings.append(Reading("", 0.0))
                continue
            if int(kept.max()) >= len(self.classes):
                raise ValueError(f"the network emits class {int(kept.max())} but the dictionary has "
                                 f"{len(self.classes)}: model and dictionary do not match")
            text = "".join(self.classes[i] for i in kept)
            readings.append(Reading(text, float(ps[keep].mean())))
        return readings
