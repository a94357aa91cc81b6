"""Reading order: top to bottom, left to right, even on a page scanned a few degrees askew.

Sorting boxes by their top-left corner breaks as soon as a page is skewed: across a wide
page a 2° tilt moves a line's right end by more than a line height, so the right half of one
row sorts before the left half of the row above. ocrfleet first estimates the page's skew
from the lines themselves (the length-weighted median angle of the boxes' long edges), turns
the box centres back by that angle, and then groups boxes into rows: a box joins a row when its
centre lies within half a line height of the row's centre line. Rows are read top to bottom,
boxes within a row left to right.

This is a single-column order; tables come out row by row, which is what field extraction
for statements wants. Multi-column article layouts are not separated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: Skew estimates beyond this are not skew but rotated text; they are ignored.
MAX_SKEW_DEGREES = 15.0


def skew_degrees(quads: Sequence[np.ndarray]) -> float:
    """The page's skew: the length-weighted median angle of the boxes' top and bottom edges."""
    angles, weights = [], []
    for quad in quads:
        for a, b in ((quad[0], quad[1]), (quad[3], quad[2])):
            dx, dy = float(b[0] - a[0]), float(b[1] - a[1])
            length = math.hypot(dx, dy)
            height = float(np.linalg.norm(quad[0] - quad[3]))
            if length < 2 * max(height, 1.0):  # short boxes say little about the angle
                continue
            angle = math.degrees(math.atan2(dy, dx))
            if abs(angle) <= MAX_SKEW_DEGREES:
                angles.append(angle)
                weights.append(length)
    if not angles:
        return 0.0
    order = np.argsort(angles)
    cumulative = np.cumsum(np.asarray(weights)[order])
    return float(np.asarray(angles)[order][np.searchsorted(cumulative, cumulative[-1] / 2)])


def reading_order(quads: Sequence[np.ndarray]) -> list[int]:
    """Indices of ``quads`` (TL, TR, BR, BL each) in reading order."""
    if not quads:
        return []
    angle = math.radians(skew_degrees(quads))
    cos, sin = math.cos(-angle), math.sin(-angle)
    rows_of: list[tuple[float, float, float]] = []  # (centre y, centre x, height) after deskew
    for quad in quads:
        cx, cy = np.asarray(quad, dtype=np.float64).mean(axis=0)
        height = (np.linalg.norm(quad[0] - quad[3]) + np.linalg.norm(quad[1] - quad[2])) / 2
        rows_of.append((sin * cx + cos * cy, cos * cx - sin * cy, float(height)))

    rows: list[list[int]] = []
    row_centres: list[float] = []
    row_heights: list[float] = []
    for i in sorted(range(len(quads)), key=lambda k: rows_of[k][0]):
        y, _, h = rows_of[i]
        if rows and abs(y - row_centres[-1]) <= 0.5 * min(h, row_heights[-1]):
            rows[-1].append(i)
            n = len(rows[-1])
            row_centres[-1] += (y - row_centres[-1]) / n
            row_heights[-1] += (h - row_heights[-1]) / n
        else:
            rows.append([i])
            row_centres.append(y)
            row_heights.append(h)
    return [i for row in rows for i in sorted(row, key=lambda k: rows_of[k][1])]
