"""The ONNX → TorchScript conversion: cached, and numerically the same networks as onnxruntime."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ocrfleet_worker.model import convert, fuse

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_files():
    return convert.ensure_models("cpu")


@pytest.mark.parametrize(("role", "shapes", "tolerance"), [
    ("det", [(1, 3, 320, 480), (2, 3, 256, 256)], 1e-5),
    ("cls", [(1, 3, 48, 192), (5, 3, 48, 192)], 1e-5),
    ("rec", [(1, 3, 48, 320), (3, 3, 48, 544)], 1e-4),
])
def test_torchscript_matches_onnxruntime_at_other_batch_sizes_and_widths(model_files, role, shapes, tolerance):
    """Each cached module against the bare ONNX network, through the module's served ends."""
    module = torch.jit.load(str(model_files.module(role)))
    rng = np.random.default_rng(7)
    for shape in shapes:  # none of them is the traced example shape
        if role == "det":  # uint8 NHWC pages in, the uint8 map (probability x 255) out
            pages = rng.integers(0, 256, (shape[0], shape[2], shape[3], 3), dtype=np.uint8)
            with torch.inference_mode():
                ours = module(torch.from_numpy(pages)).numpy()
            normalised = pages.transpose(0, 3, 1, 2).astype(np.float32) * (2 / 255) - 1
            reference = convert.reference_outputs(role, normalised)[:, 0]
            assert ours.dtype == np.uint8 and ours.shape == reference.shape
            assert np.abs(ours.astype(np.float32) - reference * 255).max() <= 0.5 + 255 * tolerance
            continue
        batch = rng.uniform(-1, 1, shape).astype(np.float32)
        with torch.inference_mode():
            ours = module(torch.from_numpy(batch)).numpy()
        reference = convert.reference_outputs(role, batch)
        if role == "rec":  # the best class per step and its probability, of all 6,625
            assert ours.shape == (*reference.shape[:2], 2)
            assert (ours[..., 0] == reference.argmax(-1)).all()
            np.testing.assert_allclose(ours[..., 1], reference.max(-1), atol=tolerance)
            continue
        assert ours.shape == reference.shape
        np.testing.assert_allclose(ours, reference, atol=tolerance)


def test_the_cache_is_reused_and_describes_its_source(model_files):
    before = {role: model_files.module(role).stat().st_mtime_ns for role in convert.ONNX_FILES}
    again = convert.ensure_models("cpu")
    assert again == model_files
    assert {role: again.module(role).stat().st_mtime_ns for role in convert.ONNX_FILES} == before
    manifest = json.loads((model_files.directory / "manifest.json").read_text())
    assert manifest["converter_version"] == convert.CONVERTER_VERSION
    assert set(manifest["onnx"]) == {"det", "cls", "rec"}
    assert model_files.directory.name == convert.cache_key()


def test_the_dictionary_comes_with_the_weights(model_files):
    keys = model_files.load_keys()
    assert len(keys) == 6623
    assert keys == convert.read_dictionary()
    assert {"中", "国", "A", "z", "0", "9"} <= set(keys)


@pytest.mark.parametrize("role", ["det", "rec"])
def test_the_backbones_are_fused(role):
    counts = fuse.fuse(convert.load_onnx(convert.onnx_dir() / convert.ONNX_FILES[role], fused=False))
    assert counts["conv_affine"] >= 20 and counts["hardswish"] >= 20
