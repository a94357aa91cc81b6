"""The ONNX → TorchScript conversion: cached, and numerically the same networks as onnxruntime."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ocrfleet_worker.model import convert, fuse

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=list(convert.VERSIONS))
def version(request):
    return request.param


@pytest.fixture(scope="module")
def model_files(version):
    return convert.ensure_models("cpu", version=version)


@pytest.mark.parametrize(("role", "shapes", "tolerance"), [
    ("det", [(1, 3, 320, 480), (2, 3, 256, 256)], 1e-5),
    ("cls", [(1, 3, 48, 192), (5, 3, 48, 192)], 1e-5),
    ("rec", [(1, 3, 48, 320), (3, 3, 48, 544)], 1e-4),
])
def test_torchscript_matches_onnxruntime_at_other_batch_sizes_and_widths(model_files, version, role, shapes,
                                                                         tolerance):
    """Each version's cached modules against the bare ONNX networks, through the modules' served ends."""
    module = torch.jit.load(str(model_files.module(role)))
    rng = np.random.default_rng(7)
    for shape in shapes:  # none of them is the traced example shape
        if role == "det":  # uint8 NHWC pages in, the uint8 map (probability x 255) out
            pages = rng.integers(0, 256, (shape[0], shape[2], shape[3], 3), dtype=np.uint8)
            with torch.inference_mode():
                ours = module(torch.from_numpy(pages)).numpy()
            normalised = pages.transpose(0, 3, 1, 2).astype(np.float32) * (2 / 255) - 1
            reference = convert.reference_outputs(role, normalised, version=version)[:, 0]
            assert ours.dtype == np.uint8 and ours.shape == reference.shape
            assert np.abs(ours.astype(np.float32) - reference * 255).max() <= 0.5 + 255 * tolerance
            continue
        batch = rng.uniform(-1, 1, shape).astype(np.float32)
        with torch.inference_mode():
            ours = module(torch.from_numpy(batch)).numpy()
        reference = convert.reference_outputs(role, batch, version=version)
        if role == "rec":  # the best class per step and its probability, of all 6,625 (18,710 in v6)
            assert ours.shape == (*reference.shape[:2], 2)
            assert (ours[..., 0] == reference.argmax(-1)).all()
            np.testing.assert_allclose(ours[..., 1], reference.max(-1), atol=tolerance)
            continue
        assert ours.shape == reference.shape
        np.testing.assert_allclose(ours, reference, atol=tolerance)


def test_the_cache_is_reused_and_describes_its_source(model_files, version):
    before = {role: model_files.module(role).stat().st_mtime_ns for role in convert.ROLES}
    again = convert.ensure_models("cpu", version=version)
    assert again == model_files
    assert {role: again.module(role).stat().st_mtime_ns for role in convert.ROLES} == before
    manifest = json.loads((model_files.directory / "manifest.json").read_text())
    assert manifest["converter_version"] == convert.CONVERTER_VERSION
    assert manifest["model_version"] == version
    assert set(manifest["onnx"]) == {"det", "cls", "rec"}
    assert model_files.directory.name == convert.cache_key(version=version)
    assert model_files.directory.name.startswith(f"{version}-")


def test_each_version_has_its_own_cache_and_the_default_is_v4():
    assert convert.cache_key() == convert.cache_key(version="ppocr-v4") != convert.cache_key(version="ppocr-v6-small")
    with pytest.raises(ValueError, match="unknown model version 'ppocr-v9'; known: ppocr-v4, ppocr-v6-small"):
        convert.ensure_models("cpu", version="ppocr-v9")


@pytest.mark.parametrize(("name", "size"), [("ppocr-v4", 6623), ("ppocr-v6-small", 18708)])
def test_the_dictionary_comes_with_the_weights(name, size):
    keys = convert.ensure_models("cpu", version=name).load_keys()
    assert len(keys) == size
    assert keys == convert.read_dictionary(version=name)
    assert {"中", "国", "A", "z", "0", "9", "汉"} <= set(keys)


@pytest.mark.parametrize(("name", "role", "expected"), [
    ("ppocr-v4", "det", ("conv_affine", "hardswish")), ("ppocr-v4", "rec", ("conv_affine", "hardswish")),
    ("ppocr-v6-small", "det", ("conv_bias", "gelu")), ("ppocr-v6-small", "rec", ("conv_bias", "gelu")),
])
def test_the_backbones_are_fused(name, role, expected):
    spec = convert.model_version(name)
    counts = fuse.fuse(convert.load_onnx(convert.onnx_dir(name) / spec.files[role], fused=False))
    assert all(counts[k] >= 10 for k in expected), counts


def test_the_catalog_names_exactly_the_versions_the_core_knows():
    from ocrfleet import models

    assert tuple(convert.VERSIONS) == models.KNOWN and convert.DEFAULT_VERSION == models.DEFAULT
    assert sorted(v.triton_version for v in convert.VERSIONS.values()) == list(range(1, len(models.KNOWN) + 1))
