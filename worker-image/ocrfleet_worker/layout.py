"""Page layout from recognised lines: which lines sit on one visual row, in reading order.

Field extraction reads "label value" pairs and table rows, which OCR often returns as
separate boxes (a label box, a value box; one box per table cell). Rows are found by the
vertical centres of the boxes after undoing the page's skew, estimated from the boxes' own
baselines, so a page scanned a few degrees off still groups its table correctly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import median

from ocrfleet.results import TextLine


@dataclass(frozen=True)
class Row:
    """Lines on one visual row, left to right."""

    lines: list[TextLine]

    @property
    def text(self) -> str:
        return " ".join(line.text.strip() for line in self.lines if line.text.strip())

    @property
    def confidence(self) -> float:
        return min((line.confidence for line in self.lines), default=0.0)


def _geometry(line: TextLine) -> tuple[float, float, float, float, float] | None:
    """(centre x, centre y, width, height, baseline angle in radians) of a line's box."""
    if len(line.box) < 4:
        return None
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = line.box[:4]
    cx, cy = (x0 + x1 + x2 + x3) / 4, (y0 + y1 + y2 + y3) / 4
    width = math.hypot(x1 - x0, y1 - y0)
    height = math.hypot(x3 - x0, y3 - y0)
    angle = math.atan2(y1 - y0, x1 - x0)
    return cx, cy, width, height, angle


def skew_angle(lines: list[TextLine]) -> float:
    """The page's skew in radians: the median baseline angle of clearly horizontal boxes."""
    angles = []
    for line in lines:
        g = _geometry(line)
        if g and g[2] > 2 * g[3] and abs(g[4]) < math.radians(15):
            angles.append(g[4])
    return median(angles) if angles else 0.0


def group_rows(lines: list[TextLine]) -> list[Row]:
    """Lines grouped into visual rows, top to bottom, each row left to right.

    Lines without a box keep their given order, one row each (an engine that already
    returns whole rows needs no grouping).
    """
    if not lines:
        return []
    if any(len(line.box) < 4 for line in lines):
        return [Row([line]) for line in lines]
    theta = skew_angle(lines)
    cos, sin = math.cos(-theta), math.sin(-theta)
    placed = []
    for line in lines:
        cx, cy, _w, h, _a = _geometry(line)  # type: ignore[misc]
        # Rotate centres by -skew so rows become horizontal again.
        placed.append((cx * sin + cy * cos, cx * cos - cy * sin, max(h, 1.0), line))
    placed.sort(key=lambda p: p[0])
    rows: list[list[tuple[float, float, float, TextLine]]] = []
    for item in placed:
        y, _x, h, _line = item
        if rows:
            row = rows[-1]
            row_y = sum(p[0] for p in row) / len(row)
            row_h = median(p[2] for p in row)
            if abs(y - row_y) < 0.5 * min(h, row_h):
                row.append(item)
                continue
        rows.append([item])
    return [Row([p[3] for p in sorted(row, key=lambda p: p[1])]) for row in rows]
