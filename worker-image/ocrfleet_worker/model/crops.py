"""Line crops: each detected quadrilateral cut out of the page as an upright strip.

A detected line is a rotated rectangle (or, after scaling, a slightly uneven quadrilateral).
The recogniser wants it as a horizontal strip, left-to-right, so the crop is a perspective
warp of the quad onto an axis-aligned rectangle whose width and height are the quad's longer
opposite sides. Edges replicate the border (no black wedges the recogniser could read as ink).

Page rotation is handled before cropping (the page is turned upright and the quads with it),
so a crop taller than it is wide is a genuinely vertical line; it is turned 90° so that the
recogniser still gets a strip.
"""

from __future__ import annotations

import cv2
import numpy as np

from ocrfleet_worker.model.detect import order_clockwise

#: A crop at least this many times taller than wide is turned to lie horizontally.
VERTICAL_ASPECT = 1.5


def crop_line(page: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """The quad (TL, TR, BR, BL in page pixels) warped onto an upright rectangle."""
    quad = np.asarray(quad, dtype=np.float32)
    width = int(round(max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[3] - quad[2]))))
    height = int(round(max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2]))))
    width, height = max(width, 1), max(height, 1)
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(quad, target)
    crop = cv2.warpPerspective(page, matrix, (width, height), flags=cv2.INTER_CUBIC,
                               borderMode=cv2.BORDER_REPLICATE)
    if height >= VERTICAL_ASPECT * width:
        crop = np.ascontiguousarray(np.rot90(crop))
    return crop


def rotate_page(page: np.ndarray, degrees: int) -> np.ndarray:
    """The page turned clockwise by 0, 90, 180 or 270 degrees."""
    turns = {0: 0, 90: 3, 180: 2, 270: 1}[degrees % 360]  # np.rot90 turns counter-clockwise
    return np.ascontiguousarray(np.rot90(page, turns)) if turns else page


def rotate_points(points: np.ndarray, degrees: int, width: int, height: int) -> np.ndarray:
    """Points of a ``width`` x ``height`` page, moved as the page turns clockwise by ``degrees``.

    Pixel centres map exactly: the last column of a page turned by 90° becomes its last row.
    """
    points = np.asarray(points, dtype=np.float32)
    x, y = points[..., 0], points[..., 1]
    degrees %= 360
    if degrees == 0:
        moved = (x, y)
    elif degrees == 90:
        moved = (height - 1 - y, x)
    elif degrees == 180:
        moved = (width - 1 - x, height - 1 - y)
    elif degrees == 270:
        moved = (y, width - 1 - x)
    else:
        raise ValueError(f"page rotation must be a multiple of 90 degrees, got {degrees}")
    return np.stack(moved, axis=-1).astype(np.float32)


def rotate_quad(quad: np.ndarray, degrees: int, width: int, height: int) -> np.ndarray:
    """A quad moved with the page, its corners re-ordered TL, TR, BR, BL in the new frame."""
    return order_clockwise(rotate_points(quad, degrees, width, height))
