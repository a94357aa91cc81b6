"""The generated sample set through the worker's pipeline: fields match the generator's truth.

The replay engine answers with the truth's lines, so this tests decoding, classification and
extraction on the generator's layouts (every kind, clean and degraded) — not the model.
"""

from __future__ import annotations

import json

import pytest
from ocrfleet_dev import docgen
from ocrfleet_dev.replay_engine import ReplayEngine
from ocrfleet_worker.pipeline import DocumentPipeline


@pytest.fixture(scope="module")
def sample_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("samples")
    truths = docgen.generate(root, 12, seed=7, clean_fraction=0.3)
    return root, [json.loads(p.read_text()) for p in truths]


def test_generator_is_reproducible(tmp_path):
    a = [p.read_text() for p in docgen.generate(tmp_path / "a", 4, seed=3)]
    b = [p.read_text() for p in docgen.generate(tmp_path / "b", 4, seed=3)]
    assert a == b
    assert {json.loads(t)["kind"] for t in a} == set(docgen.KINDS)


def test_generated_id_numbers_are_valid():
    import random

    from ocrfleet_worker.fields.id_card import parse_id_number
    rng = random.Random(1)
    for _ in range(50):
        _page, truth = docgen.id_card_page(rng)
        info = parse_id_number(truth["id_number"])
        assert info.valid and info.birth_date.isoformat() == truth["birth_date"] and info.sex == truth["sex"]


def test_every_sample_reads_back_to_its_truth(sample_set):
    root, truths = sample_set
    pipeline = DocumentPipeline(ReplayEngine.from_sample_set(root))
    degraded = 0
    for truth in truths:
        done = pipeline.process((root / truth["file"]).read_bytes())
        assert done.document_type == truth["document_type"], truth["file"]
        assert len(done.pages) == len(truth["pages"])
        degraded += bool(truth["degradations"])
        for page, page_truth in zip(done.pages, truth["pages"], strict=True):
            assert page.document_type == page_truth["document_type"], truth["file"]
            got = {f.name: f.value for f in page.fields}
            for name, value in page_truth["fields"].items():
                assert got.get(name) == value, (truth["file"], name)
            if page.document_type == "id_card":
                assert all(c.passed for c in page.checks) and len(page.checks) == 3
            if page.document_type == "bank_statement":
                assert [(r["date"], r["description"], r["amount"], r["balance"]) for r in page.rows] == [
                    (r["date"], r["description"], r["amount"], r["balance"]) for r in truth["rows"]]
                assert page.checks[0].passed, page.checks[0].detail
    assert degraded >= 6
