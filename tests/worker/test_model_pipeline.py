"""The page pipeline with the real networks, against rendered truth and the reference pipeline."""

from __future__ import annotations

import cv2
import pytest
from ocrfleet_dev.accuracy import cer, normalise

from tests.worker.model_pages import (
    local_engine,
    reference_ocr,
    sample_page,
    skewed,
    turned,
)

pytestmark = pytest.mark.slow


def _text(lines) -> str:
    return normalise("".join(lines))


@pytest.fixture(scope="module")
def engine():
    return local_engine()


def test_a_clean_page_reads_like_its_truth_and_like_the_reference(engine):
    page = sample_page(seed=3, n_lines=6)
    read = engine.read_page(page.image)
    assert read.rotation == 0
    assert [normalise(line.text) for line in read.lines] == [normalise(t) for t in page.lines]
    assert all(0.5 <= line.confidence <= 1.0 and len(line.box) == 4 for line in read.lines)
    reference, _ = reference_ocr()(cv2.cvtColor(page.image, cv2.COLOR_RGB2BGR))
    assert cer(_text(r[1] for r in reference), _text(line.text for line in read.lines)) <= 0.01


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_turned_pages_are_turned_back_at_page_level(engine, degrees):
    page = turned(sample_page(seed=degrees, n_lines=5), degrees)
    read = engine.read_page(page.image)
    assert read.rotation == degrees
    h, w = page.image.shape[:2]
    assert (read.width, read.height) == ((h, w) if degrees in (90, 270) else (w, h))
    assert cer(_text(page.lines), _text(line.text for line in read.lines)) <= 0.02


@pytest.mark.parametrize("skew", [-3.0, 3.0])
def test_skewed_pages_keep_their_reading_order(engine, skew):
    page = skewed(sample_page(seed=11, n_lines=6, width=1200), skew)
    read = engine.read_page(page.image)
    assert read.rotation == 0
    assert [normalise(line.text) for line in read.lines] == [normalise(t) for t in page.lines]


def test_a_blank_page_has_no_lines(engine):
    blank = sample_page(seed=1, n_lines=1).image.copy()
    blank[:] = 255
    read = engine.read_page(blank)
    assert read.lines == [] and read.rotation == 0
