"""Building recognised lines with boxes for the pure tests (as an engine would return them)."""

from __future__ import annotations

import math

from ocrfleet.results import TextLine


def line(text: str, x: float, y: float, *, w: float | None = None, h: float = 30, conf: float = 0.98,
         skew_deg: float = 0.0) -> TextLine:
    w = w if w is not None else 24 * max(len(text), 1)
    t = math.radians(skew_deg)
    dx, dy = math.cos(t), math.sin(t)

    def rot(px: float, py: float) -> tuple[float, float]:
        return (px * dx - py * dy, px * dy + py * dx)

    corners = [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
    return TextLine(text=text, confidence=conf, box=[rot(*c) for c in corners])


def table(rows: list[list[tuple[str, float]]], *, top: float = 100, pitch: float = 45,
          skew_deg: float = 0.0) -> list[TextLine]:
    """One box per cell: ``rows`` of (text, x) at successive rows."""
    out = []
    for r, cells in enumerate(rows):
        for text, x in cells:
            out.append(line(text, x, top + r * pitch, skew_deg=skew_deg, w=14 * len(text) + 10))
    return out
