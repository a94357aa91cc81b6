"""An engine that answers with recorded reads instead of running a model.

It stands in for the OCR model where the model is not the thing under test — the queue and
crash tests, CLI tests without the weights: each page image is keyed by a hash of its
pixels, and a page it knows gets its recorded lines (the generator's truth); a page it does
not know gets one line naming that key, so a stored result can still be traced back to its
page. ``delay_s`` simulates inference time so a test can interrupt a worker mid-page.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ocrfleet_worker.documents import DecodeLimits, decode
from ocrfleet_worker.pipeline import engine_image

from ocrfleet.results import TextLine


@dataclass
class ReplayRead:
    lines: list[TextLine] = field(default_factory=list)
    rotation: int = 0


def page_key(image: np.ndarray) -> str:
    """A stable key for a decoded page: its shape and pixels."""
    digest = hashlib.sha256(repr(image.shape).encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()[:32]


class ReplayEngine:
    """``read_page`` from a table of known pages (an :class:`~ocrfleet_worker.pipeline.PageReader`)."""

    def __init__(self, reads: dict[str, ReplayRead] | None = None, *, delay_s: float = 0.0) -> None:
        self.reads = dict(reads or {})
        self.delay_s = delay_s
        self.calls = 0

    def read_page(self, image: np.ndarray) -> ReplayRead:
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)  # stands for inference time
        key = page_key(image)
        known = self.reads.get(key)
        if known is not None:
            return known
        return ReplayRead(lines=[TextLine(text=f"page {key}", confidence=1.0)])

    def learn(self, data: bytes, pages: list[ReplayRead], limits: DecodeLimits | None = None) -> None:
        """Record the reads of a document's pages, in page order."""
        for page, read in zip(decode(data, limits).pages, pages, strict=False):
            self.reads[page_key(engine_image(page.image))] = read

    @classmethod
    def from_sample_set(cls, root: str | Path, *, limits: DecodeLimits | None = None,
                        delay_s: float = 0.0) -> ReplayEngine:
        """Learn every document of a generated sample set (``*.truth.json`` beside each file)."""
        engine = cls(delay_s=delay_s)
        for truth_path in sorted(Path(root).rglob("*.truth.json")):
            truth = json.loads(truth_path.read_text())
            data = (truth_path.parent / truth["file"]).read_bytes()
            reads = [ReplayRead(lines=[TextLine(**ln) for ln in page["lines"]], rotation=page.get("rotation", 0))
                     for page in truth["pages"]]
            engine.learn(data, reads, limits)
        return engine
