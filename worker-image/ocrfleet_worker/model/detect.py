"""Text detection around the DB network: page in, text-line quadrilaterals out.

PP-OCR's detector is a Differentiable Binarization (DB) network: it maps a page to a
probability map of "this pixel is inside a text line", trained on line regions *shrunk*
towards their centre. Boxes come back in three steps:

1. threshold the map (``binary_threshold``) and, optionally, dilate it by 2x2 so lines broken
   by a thin gap stay whole;
2. each connected region becomes its minimum-area rotated rectangle; a region whose mean
   probability inside that rectangle is under ``box_threshold`` is dropped;
3. the rectangle is grown back by the shrink the network was trained with ("unclip": offset
   the polygon outwards by area x ratio / perimeter, with pyclipper) and the minimum-area
   rectangle of the grown polygon is the line's box.

The network wants both sides a multiple of 32; :func:`prepare_page` scales the page so that its
short side is at least ``min_side`` (small text needs the pixels) and its long side at most
``max_side``, and records the scale so boxes map back to page pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pyclipper


@dataclass(frozen=True)
class DetectorSettings:
    min_side: int = 736
    """min_side: the page's short side is scaled up to at least this many pixels before detection."""
    max_side: int = 2000
    """max_side: the page's long side is scaled down to at most this many pixels before detection."""
    binary_threshold: float = 0.3
    """binary_threshold: probability above which a pixel counts as text."""
    box_threshold: float = 0.5
    """box_threshold: minimum mean probability inside a candidate box."""
    unclip_ratio: float = 1.6
    """unclip_ratio: how far a box is grown back (offset = area x ratio / perimeter)."""
    dilate: bool = True
    """dilate: close one-pixel gaps in the text mask before finding regions."""
    max_candidates: int = 1000
    """max_candidates: at most this many regions are examined per page."""
    min_box_side: float = 3.0
    """min_box_side: regions whose short side is below this (in map pixels) are noise."""


@dataclass(frozen=True)
class DetectorInput:
    """The page at the network's size, uint8 (1, H, W, 3) BGR, and the scale back to page pixels
    (the network normalises it itself: :class:`~ocrfleet_worker.model.ends.PageDetector`)."""

    pages: np.ndarray
    scale_x: float
    scale_y: float
    page_width: int
    page_height: int


@dataclass(frozen=True)
class DetectedBox:
    """A text line's quadrilateral in page pixels, clockwise from top-left, and its score."""

    quad: np.ndarray
    score: float


def normalise(image: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 → float32 3xHxW in [-1, 1] (PP-OCR's mean 0.5 / std 0.5), for the line
    networks; the detector takes the uint8 page and does the same inside."""
    return (image.astype(np.float32).transpose(2, 0, 1) * (2.0 / 255.0)) - 1.0


def network_size(height: int, width: int, settings: DetectorSettings) -> tuple[int, int]:
    """The (height, width), multiples of 32, at which the network sees a page."""
    ratio = 1.0
    if min(height, width) < settings.min_side:
        ratio = settings.min_side / min(height, width)
    if max(height, width) * ratio > settings.max_side:
        ratio = settings.max_side / max(height, width)
    return (max(32, int(round(height * ratio / 32)) * 32), max(32, int(round(width * ratio / 32)) * 32))


def prepare_page(image: np.ndarray, settings: DetectorSettings) -> DetectorInput:
    height, width = image.shape[:2]
    net_h, net_w = network_size(height, width, settings)
    resized = image if (net_h, net_w) == (height, width) else cv2.resize(image, (net_w, net_h))
    return DetectorInput(np.ascontiguousarray(resized, dtype=np.uint8)[None], width / net_w, height / net_h,
                         width, height)


def boxes_from_probability(probability: np.ndarray, prepared: DetectorInput,
                           settings: DetectorSettings) -> list[DetectedBox]:
    """DB post-processing of one page's (H, W) probability map, uint8: probability x 255."""
    probability = np.asarray(probability, dtype=np.uint8).reshape(probability.shape[-2:])
    mask = (probability > settings.binary_threshold * 255).astype(np.uint8)
    if settings.dilate:
        mask = cv2.dilate(mask, np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(mask * 255, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    boxes: list[DetectedBox] = []
    for contour in contours[: settings.max_candidates]:
        rect = cv2.minAreaRect(contour)
        if min(rect[1]) < settings.min_box_side:
            continue
        corners = cv2.boxPoints(rect)
        score = mean_inside(probability, corners)
        if score < settings.box_threshold:
            continue
        grown = unclip(corners, settings.unclip_ratio)
        if grown is None:
            continue
        rect = cv2.minAreaRect(grown)
        if min(rect[1]) < settings.min_box_side + 2:
            continue
        quad = cv2.boxPoints(rect)
        quad[:, 0] = np.clip(np.round(quad[:, 0] * prepared.scale_x), 0, prepared.page_width - 1)
        quad[:, 1] = np.clip(np.round(quad[:, 1] * prepared.scale_y), 0, prepared.page_height - 1)
        quad = order_clockwise(quad)
        if min(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[0] - quad[3])) <= 3:
            continue
        boxes.append(DetectedBox(quad.astype(np.float32), float(score)))
    return boxes


def mean_inside(probability: np.ndarray, corners: np.ndarray) -> float:
    """Mean probability (0-1) inside a polygon of the uint8 map, on its bounding window only."""
    h, w = probability.shape
    x0, y0 = np.clip(np.floor(corners.min(0)).astype(int), 0, [w - 1, h - 1])
    x1, y1 = np.clip(np.ceil(corners.max(0)).astype(int), 0, [w - 1, h - 1])
    window = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
    cv2.fillPoly(window, [(corners - [x0, y0]).astype(np.int32)], 1)
    return float(cv2.mean(probability[y0 : y1 + 1, x0 : x1 + 1], window)[0]) / 255.0


def unclip(corners: np.ndarray, ratio: float) -> np.ndarray | None:
    """Grow a polygon outwards by area x ratio / perimeter (round joins)."""
    area = abs(cv2.contourArea(corners.astype(np.float32)))
    perimeter = cv2.arcLength(corners.astype(np.float32), True)
    if perimeter <= 0:
        return None
    offset = pyclipper.PyclipperOffset()
    offset.AddPath([tuple(p) for p in corners.tolist()], pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    paths = offset.Execute(area * ratio / perimeter)
    if len(paths) != 1:
        return None
    return np.asarray(paths[0], dtype=np.float32).reshape(-1, 1, 2)


def order_clockwise(quad: np.ndarray) -> np.ndarray:
    """Corners as top-left, top-right, bottom-right, bottom-left (image y grows downwards)."""
    by_x = quad[np.argsort(quad[:, 0], kind="stable")]
    left, right = by_x[:2], by_x[2:]
    top_left, bottom_left = left[np.argsort(left[:, 1], kind="stable")]
    top_right, bottom_right = right[np.argsort(right[:, 1], kind="stable")]
    return np.array([top_left, top_right, bottom_right, bottom_left], dtype=np.float32)
