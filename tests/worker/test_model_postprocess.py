"""The model's pre/post-processing on constructed inputs: no network, milliseconds each."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from ocrfleet_worker.model import classify, crops, detect, order, recognize
from ocrfleet_worker.model.reader import as_bgr, sideways_rotation

# --- detection ------------------------------------------------------------------------------


def _prepared(h: int, w: int) -> detect.DetectorInput:
    return detect.DetectorInput(np.zeros((1, h, w, 3), np.uint8), 1.0, 1.0, w, h)


def _served(probability: np.ndarray) -> np.ndarray:
    """A probability map as the detector serves it: uint8, probability x 255."""
    return np.rint(probability * 255).astype(np.uint8)


def test_network_size_is_a_multiple_of_32_and_respects_both_limits():
    settings = detect.DetectorSettings(min_side=736, max_side=2000)
    assert detect.network_size(540, 856, settings) == (736, 1152)  # short side scaled up to 736
    h, w = detect.network_size(1754, 1240, settings)
    assert (h % 32, w % 32) == (0, 0) and (h, w) == (1760, 1248)
    assert max(detect.network_size(400, 4000, settings)) <= 2000  # long side capped first


def test_boxes_from_probability_finds_a_rotated_line_and_grows_it_back():
    prob = np.zeros((320, 640), np.float32)
    shrunk = cv2.boxPoints(((320, 160), (300, 20), 5.0)).astype(np.int32)  # a line 5° askew
    cv2.fillPoly(prob, [shrunk], 0.9)
    boxes = detect.boxes_from_probability(_served(prob), _prepared(320, 640), detect.DetectorSettings())
    assert len(boxes) == 1
    quad = boxes[0].quad
    width = np.linalg.norm(quad[0] - quad[1])
    height = np.linalg.norm(quad[0] - quad[3])
    assert width > 300 and 20 < height < 60  # unclipped: larger than the shrunk region
    angle = math.degrees(math.atan2(quad[1][1] - quad[0][1], quad[1][0] - quad[0][0]))
    assert angle == pytest.approx(5.0, abs=1.0)
    assert 0.75 < boxes[0].score <= 0.9  # the dilated border counts in the mean


def test_faint_regions_and_specks_are_dropped():
    prob = np.zeros((200, 200), np.float32)
    cv2.rectangle(prob, (10, 10), (150, 30), 0.35, -1)  # above binary, below box threshold
    prob[100:102, 100:102] = 0.99  # a speck
    assert detect.boxes_from_probability(_served(prob), _prepared(200, 200), detect.DetectorSettings()) == []


def test_boxes_scale_back_to_page_pixels():
    prob = np.zeros((64, 128), np.float32)
    cv2.rectangle(prob, (20, 20), (100, 40), 1.0, -1)
    prepared = detect.DetectorInput(np.zeros((1, 64, 128, 3), np.uint8), 2.0, 3.0, 256, 192)
    quad = detect.boxes_from_probability(_served(prob), prepared, detect.DetectorSettings())[0].quad
    assert quad[:, 0].max() > 128 and quad[:, 1].max() > 64
    assert quad[:, 0].max() <= 255 and quad[:, 1].max() <= 191


def test_order_clockwise_starts_top_left():
    quad = np.array([[10, 50], [10, 10], [100, 50], [100, 10]], np.float32)
    assert detect.order_clockwise(quad).tolist() == [[10, 10], [100, 10], [100, 50], [10, 50]]


# --- crops and rotation ---------------------------------------------------------------------


@pytest.mark.parametrize("degrees", [0, 90, 180, 270])
def test_rotate_points_follows_the_pixels(degrees):
    page = np.zeros((30, 50, 3), np.uint8)
    page[7, 11] = 255  # (x=11, y=7)
    turned = crops.rotate_page(page, degrees)
    (x, y), = crops.rotate_points(np.array([[11, 7]]), degrees, 50, 30)
    assert turned[int(y), int(x)].tolist() == [255, 255, 255]


def test_crop_line_unwarps_a_tilted_line():
    page = np.full((200, 400, 3), 255, np.uint8)
    quad = cv2.boxPoints(((200, 100), (300, 40), 10.0))
    cv2.fillPoly(page, [quad.astype(np.int32)], (0, 0, 0))
    strip = crops.crop_line(page, detect.order_clockwise(quad))
    assert strip.shape[1] > strip.shape[0] * 5
    assert strip[5:-5, 5:-5].mean() < 30  # the dark band fills the crop


def test_tall_crops_are_turned_to_lie_horizontally():
    page = np.zeros((300, 100, 3), np.uint8)
    strip = crops.crop_line(page, np.array([[10, 10], [40, 10], [40, 250], [10, 250]], np.float32))
    assert strip.shape[1] > strip.shape[0]


def test_sideways_pages_are_recognised_by_their_vertical_lines():
    vertical = [np.array([[0, 0], [30, 0], [30, 400], [0, 400]], np.float32)] * 3
    horizontal = [np.array([[0, 0], [400, 0], [400, 30], [0, 30]], np.float32)]
    assert sideways_rotation(vertical + horizontal) == 90
    assert sideways_rotation(horizontal) == 0
    assert sideways_rotation([]) == 0


def test_as_bgr_accepts_grey_and_bgra_and_rejects_floats():
    assert as_bgr(np.zeros((4, 5), np.uint8)).shape == (4, 5, 3)
    assert as_bgr(np.zeros((4, 5, 4), np.uint8)).shape == (4, 5, 3)
    with pytest.raises(ValueError, match="uint8"):
        as_bgr(np.zeros((4, 5, 3), np.float32))


# --- direction ------------------------------------------------------------------------------


def test_page_vote_is_weighted_by_line_length():
    settings = classify.ClassifierSettings(page_vote_share=0.6)
    up, down = classify.LineDirection(False, 0.99), classify.LineDirection(True, 0.99)
    assert classify.page_upside_down([down, down, up], [500, 500, 100], settings)
    assert not classify.page_upside_down([down, down, up], [50, 50, 900], settings)  # a short-line majority loses
    assert not classify.page_upside_down([], [], settings)


def test_directions_read_the_two_class_output():
    found = classify.directions(np.array([[0.9, 0.1], [0.2, 0.8]]))
    assert [d.upside_down for d in found] == [False, True]
    assert found[1].confidence == pytest.approx(0.8)


# --- recognition ----------------------------------------------------------------------------


def _best(ids: list[int], p: float = 0.9) -> np.ndarray:
    """What the recogniser serves per step: the best class and its probability."""
    return np.stack([np.array(ids, np.float32), np.full(len(ids), p, np.float32)], axis=1)


def test_ctc_merges_repeats_drops_blanks_and_keeps_doubled_letters():
    decoder = recognize.CtcDecoder(["a", "b", "l"])  # classes: blank, a, b, l, space
    # "b a l l" needs a blank between the two l's; the last class is the space
    ids = [0, 2, 2, 0, 1, 3, 3, 0, 3, 4, 1, 0]
    (reading,) = decoder.decode(_best(ids)[None])
    assert reading.text == "ball a"
    assert reading.confidence == pytest.approx(0.9, abs=1e-6)
    (empty,) = decoder.decode(_best([0, 0, 0])[None])
    assert empty.text == "" and empty.confidence == 0.0


def test_ctc_rejects_a_dictionary_that_does_not_match_the_network():
    with pytest.raises(ValueError, match="dictionary"):
        recognize.CtcDecoder(["a"]).decode(_best([5])[None])


def test_batches_group_similar_widths_and_round_them_up():
    settings = recognize.RecognizerSettings(batch_size=2, width_step=64, min_width=320)
    strips = [np.zeros((48, w, 3), np.uint8) for w in (900, 100, 1000, 120, 2000)]
    batches = recognize.plan_batches(strips, settings)
    assert [b.indices for b in batches] == [(1, 3), (0, 2), (4,)]
    assert [b.width for b in batches] == [320, 1024, 2048]
    tensor = recognize.prepare_batch(strips, batches[1], settings)
    assert tensor.shape == (2, 3, 48, 1024) and tensor.dtype == np.float32
    assert tensor[0, :, :, 900:].max() == 0  # zero padding right of the shorter crop


def test_strips_are_normalised_to_minus_one_to_one():
    white = np.full((24, 100, 3), 255, np.uint8)
    strip = recognize.prepare_strip(white, 320, 48)
    assert strip[:, :, :200].min() == pytest.approx(1.0) and strip[:, :, 200:].max() == 0.0


# --- reading order --------------------------------------------------------------------------


def _box(x: float, y: float, w: float, h: float, skew_deg: float = 0.0, cx: float = 0, cy: float = 0) -> np.ndarray:
    t = math.radians(skew_deg)
    pts = np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float64) - [cx, cy]
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return (pts @ rot.T + [cx, cy]).astype(np.float32)


def test_rows_read_left_to_right_then_top_to_bottom():
    boxes = [_box(500, 100, 300, 30), _box(50, 100, 300, 30), _box(50, 160, 300, 30), _box(500, 162, 200, 30)]
    assert order.reading_order(boxes) == [1, 0, 2, 3]


@pytest.mark.parametrize("skew", [-4.0, -2.0, 2.0, 4.0])
def test_skewed_tables_keep_their_rows(skew):
    # two columns 1,350 px apart, rows 40 px apart: a 2° skew moves one column by 47 px against the other
    straight = [(50 + 1350 * column, 100 + 40 * row) for row in range(6) for column in range(2)]
    tilted = [_box(x, y, 250, 28, skew, cx=800, cy=200) for x, y in straight]
    assert order.skew_degrees(tilted) == pytest.approx(skew, abs=0.5)
    assert order.reading_order(tilted) == list(range(12))
    naive = sorted(range(12), key=lambda i: (float(tilted[i][0][1]), float(tilted[i][0][0])))
    assert naive != list(range(12))  # sorting by the top-left corner really is fooled at this skew
