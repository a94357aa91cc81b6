"""The model repository: committed defaults, per-cluster rendering, the shared python model."""

from __future__ import annotations

import pytest
from ocrfleet_worker import triton_repository as repo


def test_committed_configs_are_what_the_defaults_render(monkeypatch):
    for key in list(repo.TritonModelSettings.model_fields):
        monkeypatch.delenv(f"OCRFLEET_TRITON_{key.upper()}", raising=False)
    defaults = repo.TritonModelSettings()
    assert (defaults.max_batch_size, defaults.max_queue_delay_us, defaults.kind) == (8, 100_000, "cpu")
    for name in repo.MODELS:
        assert (repo.SOURCE / name / "config.pbtxt").read_text() == repo.render_config(name, defaults)
        model = repo.SOURCE / name / "1" / "model.py"
        assert model.resolve() == (repo.SOURCE / repo.MODEL_FILE).resolve()


def test_cluster_settings_reach_the_config():
    settings = repo.TritonModelSettings(max_batch_size=16, max_queue_delay_us=2000, instance_count=2,
                                        kind="gpu", torch_threads=4)
    config = repo.render_config("ocr_rec", settings)
    assert "max_batch_size: 16" in config
    assert "max_queue_delay_microseconds: 2000" in config
    assert "count: 2, kind: KIND_GPU" in config
    assert 'key: "torch_threads", value: { string_value: "4" }' in config
    unbatched = repo.render_config("ocr_det", repo.TritonModelSettings(dynamic_batching=False))
    assert "dynamic_batching" not in unbatched


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("OCRFLEET_TRITON_MAX_BATCH_SIZE", "4")
    monkeypatch.setenv("OCRFLEET_TRITON_KIND", "gpu")
    settings = repo.TritonModelSettings()
    assert (settings.max_batch_size, settings.device) == (4, "cuda")
    monkeypatch.setenv("OCRFLEET_TRITON_KIND", "tpu")
    with pytest.raises(ValueError, match="kind"):
        repo.TritonModelSettings()


def test_served_versions_are_listed_in_the_version_policy_and_rendered_side_by_side(tmp_path):
    settings = repo.TritonModelSettings(models="ppocr-v6-small, ppocr-v4")
    assert [v.name for v in settings.versions] == ["ppocr-v4", "ppocr-v6-small"]
    assert "version_policy: { specific: { versions: [ 1, 2 ] } }" in repo.render_config("ocr_det", settings)
    out = repo.render_repository(tmp_path / "models", settings)
    for name in repo.MODELS:
        assert sorted(p.name for p in (out / name).iterdir()) == ["1", "2", "config.pbtxt"]
        first, second = ((out / name / v / "model.cpu.pt").resolve() for v in ("1", "2"))
        assert first.parent.name.startswith("ppocr-v4-") and second.parent.name.startswith("ppocr-v6-small-")
    only_v6 = repo.TritonModelSettings(models="ppocr-v6-small")
    assert "versions: [ 2 ]" in repo.render_config("ocr_rec", only_v6)


def test_an_unknown_model_version_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown model version 'ppocr-v5'; known: ppocr-v4, ppocr-v6-small"):
        repo.TritonModelSettings(models="ppocr-v4,ppocr-v5")
    with pytest.raises(ValueError, match="serve at least one"):
        repo.TritonModelSettings(models=" , ")
