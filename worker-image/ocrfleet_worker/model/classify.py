"""Text direction: is a line crop upright or upside down, and which way does the page read?

PP-OCR's direction classifier (mobile v2) looks at a line crop resized to 48 x 192 and gives
two probabilities: upright (0°) and upside down (180°). Used line by line, as the reference
pipeline does, one confident mistake turns a good line upside down and loses it. ocrfleet
decides orientation for the *page* instead: lines vote, weighted by their length (long lines
carry more evidence and the classifier is surer of them), and the page turns 180° only when
the weighted share of upside-down votes is a clear majority. A line that disagrees with its
page with high confidence is read both ways by the pipeline, and the recogniser's confidence
decides (see :mod:`ocrfleet_worker.model.reader`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ocrfleet_worker.model.recognize import prepare_strip

INPUT_HEIGHT = 48
INPUT_WIDTH = 192


@dataclass(frozen=True)
class ClassifierSettings:
    page_vote_share: float = 0.6
    """page_vote_share: the length-weighted share of upside-down lines that turns the page 180°."""
    line_disagreement: float = 0.95
    """line_disagreement: a line whose classifier says the opposite of its page with at least this
    probability is read both ways (1.0 or more: never)."""
    max_lines_for_vote: int = 24
    """max_lines_for_vote: the page vote looks at the longest lines only (bounds the cost)."""
    batch_size: int = 8
    """batch_size: crops per network call."""


@dataclass(frozen=True)
class LineDirection:
    upside_down: bool
    confidence: float


def prepare_batch(crops: Sequence[np.ndarray]) -> np.ndarray:
    """Crops as the classifier's (N, 3, 48, 192) input."""
    return np.stack([prepare_strip(c, INPUT_WIDTH, INPUT_HEIGHT) for c in crops])


def directions(probabilities: np.ndarray) -> list[LineDirection]:
    """(N, 2) probabilities [upright, upside down] → one direction per crop."""
    return [LineDirection(bool(p[1] > p[0]), float(max(p[0], p[1]))) for p in np.asarray(probabilities)]


def page_upside_down(found: Sequence[LineDirection], weights: Sequence[float], settings: ClassifierSettings) -> bool:
    """The length-weighted vote over the lines' directions."""
    total = float(sum(weights))
    if total <= 0:
        return False
    flipped = sum(w * d.confidence for d, w in zip(found, weights, strict=True) if d.upside_down)
    upright = sum(w * d.confidence for d, w in zip(found, weights, strict=True) if not d.upside_down)
    return flipped / max(flipped + upright, 1e-9) >= settings.page_vote_share


def vote_sample(lengths: Sequence[float], settings: ClassifierSettings) -> list[int]:
    """Indices of the lines that vote: the longest ones, at most ``max_lines_for_vote``."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])[: settings.max_lines_for_vote]
