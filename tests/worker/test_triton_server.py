"""A real tritonserver (from the nvidia-pytriton wheel) serving the rendered repository on CPU,
both model versions side by side."""

from __future__ import annotations

import concurrent.futures
import shutil

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
from ocrfleet_dev.accuracy import normalise
from ocrfleet_dev.localproc import ServiceError
from ocrfleet_dev.triton import TritonServer, TritonServerOptions
from ocrfleet_worker.engine import LocalTorchEngine, TritonEngine, TritonNetworks
from ocrfleet_worker.model import classify, convert
from ocrfleet_worker.triton_repository import TritonModelSettings, render_repository

from tests.worker.model_pages import local_engine, sample_page, turned

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server():
    # a short queue delay keeps the test quick; batching still forms under concurrent load
    settings = TritonModelSettings(dynamic_batching=True, max_queue_delay_us=20_000, torch_threads=1,
                                   models="ppocr-v4,ppocr-v6-small")
    with TritonServer(TritonServerOptions(settings=settings)) as running:
        yield running


def test_server_is_ready_with_the_three_models_in_both_versions_and_their_configs(server):
    client = grpcclient.InferenceServerClient(server.grpc_url)
    assert client.is_server_ready()
    for name in ("ocr_det", "ocr_cls", "ocr_rec"):
        assert client.is_model_ready(name, "1") and client.is_model_ready(name, "2")
        assert not client.is_model_ready(name, "3")
    config = client.get_model_config("ocr_rec", as_json=True)["config"]
    assert int(config["max_batch_size"]) == 8
    assert int(config["dynamic_batching"]["max_queue_delay_microseconds"]) == 20_000
    assert server.startup_s is not None and server.startup_s < 120


@pytest.mark.parametrize("model", ["ppocr-v4", "ppocr-v6-small"])
def test_networks_through_triton_match_the_torchscript_modules(server, model):
    networks = TritonNetworks(server.grpc_url, model=model)
    files = convert.ensure_models("cpu", version=model)
    rng = np.random.default_rng(3)
    for role, method, batch in (("det", networks.detect, rng.integers(0, 256, (1, 256, 320, 3), dtype=np.uint8)),
                                ("cls", networks.classify, rng.uniform(-1, 1, (3, 3, 48, 192)).astype(np.float32)),
                                ("rec", networks.recognize, rng.uniform(-1, 1, (2, 3, 48, 416)).astype(np.float32))):
        with torch.inference_mode():
            local = torch.jit.load(str(files.module(role)))(torch.from_numpy(batch)).numpy()
        remote = method(batch)
        assert remote.shape == local.shape and remote.dtype == local.dtype
        np.testing.assert_allclose(remote.astype(np.float32), local.astype(np.float32), atol=1e-4 if role != "det" else 1)
    networks.close()


def test_a_page_read_through_triton_equals_the_in_process_read(server):
    page = turned(sample_page(seed=5, n_lines=5), 180)
    engine = TritonEngine(server.grpc_url)
    assert engine.pipeline.settings.recognizer.batch_size == 4  # the server said: CPU instances
    remote = engine.read_page(page.image)
    local = local_engine().read_page(page.image)
    assert remote.rotation == local.rotation == 180
    assert [line.text for line in remote.lines] == [line.text for line in local.lines]
    assert [normalise(line.text) for line in remote.lines] == [normalise(t) for t in page.lines]


def test_a_page_read_through_triton_by_v6_equals_v6_in_process_and_differs_from_v4(server):
    page = sample_page(seed=8, n_lines=5)
    v6 = TritonEngine(server.grpc_url, model="ppocr-v6-small")
    assert len(v6.pipeline.decoder.classes) == 18708 + 2  # decoded with the version's own dictionary
    remote = v6.read_page(page.image)
    local = LocalTorchEngine(model="ppocr-v6-small").read_page(page.image)
    assert [line.text for line in remote.lines] == [line.text for line in local.lines]
    assert [normalise(line.text) for line in remote.lines] == [normalise(t) for t in page.lines]
    v4_map = TritonNetworks(server.grpc_url).detect(page.image[None, :256, :256].copy())
    v6_map = v6.networks.detect(page.image[None, :256, :256].copy())
    assert not np.array_equal(v4_map, v6_map)  # two networks answered, not one twice


def test_concurrent_requests_are_batched_by_the_dynamic_batcher(server):
    before = server.model_statistics()["ocr_cls"]
    networks = TritonNetworks(server.grpc_url)
    strip = classify.prepare_batch([np.full((32, 200, 3), 200, np.uint8)])
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: networks.classify(strip), range(32)))
    networks.close()
    assert all(r.shape == (1, 2) for r in results)
    after = server.model_statistics()["ocr_cls"]
    requests = after["requests"] - before["requests"]
    executions = after["executions"] - before["executions"]
    assert requests == after["inferences"] - before["inferences"] == 32  # batch-1 requests
    assert executions < requests  # several requests shared one network run


def test_a_repository_that_cannot_load_fails_fast_with_the_log(tmp_path):
    repository = render_repository(tmp_path / "models", TritonModelSettings())
    for name in ("ocr_det", "ocr_rec"):  # one model is enough, and starts faster
        shutil.rmtree(repository / name)
    (repository / "ocr_cls" / "1" / "model.cpu.pt").unlink()  # its network is missing
    server = TritonServer(TritonServerOptions(repository=repository, startup_timeout_s=90), workdir=tmp_path / "run")
    with pytest.raises(ServiceError, match="model.cpu.pt is missing"):
        server.start()
    assert not server.process.running
