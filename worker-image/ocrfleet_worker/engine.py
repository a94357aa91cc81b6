"""The OCR engine: the one seam between the worker and the model.

The worker calls ``engine.read_page(image)`` with a page as **RGB** ``uint8`` (what
:mod:`ocrfleet_worker.documents` decodes) and gets a :class:`PageRead`: the text lines in
reading order, boxes in the upright page's pixels, and the rotation that made it upright.

Two implementations share the whole pre/post-processing (:class:`ModelReader`) and differ only
in who runs the three networks:

- :class:`TritonEngine` — Triton over gRPC (``tritonclient``): ``ocr_det``, ``ocr_cls`` and
  ``ocr_rec`` of the model repository, batched by Triton's dynamic batcher across every worker
  that shares the server. What a cluster runs.
- :class:`LocalTorchEngine` — the same TorchScript modules in this process; CUDA when a GPU is
  visible. For the embedded path and quick checks without a Triton server.

Triton being away (unreachable, restarting, its models loading) is a
:class:`~ocrfleet.errors.DependencyUnavailable` (the worker waits it out, holding the document);
any other failure to run a model is a :class:`~ocrfleet.errors.TemporaryError` (the document is
retried, spending an attempt); a page the model cannot take is a
:class:`~ocrfleet.errors.PermanentError`.
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from ocrfleet.errors import DependencyUnavailable, PermanentError, TemporaryError
from ocrfleet_worker import metrics
from ocrfleet_worker.model import recognize
from ocrfleet_worker.model.networks import TorchNetworks, TorchSettings
from ocrfleet_worker.model.reader import ModelReader, Networks, PageRead, PipelineSettings

__all__ = ["PageRead", "TritonEngine", "LocalTorchEngine", "TritonNetworks", "cpu_settings"]


def cpu_settings() -> PipelineSettings:
    """Small recognition batches with tight widths: on a CPU a batch of 4 costs per line what one
    line alone costs (batch 8 and padding to coarse widths cost more), measured on the fused networks."""
    return PipelineSettings(recognizer=recognize.RecognizerSettings(batch_size=4, width_step=32))


class _PipelineEngine:
    def __init__(self, networks: Networks, dictionary: list[str], settings: PipelineSettings) -> None:
        self.networks = networks
        self.pipeline = ModelReader(networks, dictionary, settings)

    @property
    def model(self) -> str:
        """The model version it reads with (recorded with each result)."""
        return self.networks.model

    def read_page(self, image: np.ndarray) -> PageRead:
        image = np.asarray(image)
        if image.ndim == 3 and image.shape[2] == 3:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        elif image.ndim == 3 and image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGR)
        try:
            return self.pipeline.read_page(image)
        except ValueError as exc:
            raise PermanentError(f"the page cannot be read: {exc}") from exc


class LocalTorchEngine(_PipelineEngine):
    """The networks as TorchScript in this process (GPU when available)."""

    def __init__(self, torch_settings: TorchSettings | None = None, settings: PipelineSettings | None = None, *,
                 model: str | None = None) -> None:
        networks = TorchNetworks(torch_settings, model=model)
        if settings is None:
            settings = cpu_settings() if networks.device == "cpu" else PipelineSettings()
        super().__init__(networks, networks.dictionary, settings)


class TritonNetworks:
    """The three networks behind a Triton server, reached with tritonclient's gRPC client."""

    MODEL_NAMES = {"detect": "ocr_det", "classify": "ocr_cls", "recognize": "ocr_rec"}

    def __init__(self, url: str, *, timeout_s: float = 60.0, max_batch_size: int = 8, model: str | None = None) -> None:
        import tritonclient.grpc as grpcclient

        from ocrfleet_worker.model.convert import model_version

        version = model_version(model)
        self.url = url
        self.model = version.name
        self.version = str(version.triton_version)
        """The version directory of each ``ocr_*`` model that serves :attr:`model`."""
        self.timeout_s = timeout_s
        self.max_batch_size = max_batch_size
        self._grpc = grpcclient
        self.client = grpcclient.InferenceServerClient(url=url)

    def ready(self) -> bool:
        from tritonclient.utils import InferenceServerException

        try:
            return bool(self.client.is_server_ready()) and all(
                self.client.is_model_ready(m, self.version) for m in self.MODEL_NAMES.values())
        except InferenceServerException:
            return False

    def recognizer_placement(self) -> tuple[bool, int]:
        """(runs on CPU, max batch size) of the server's ``ocr_rec``; a server that is away is temporary."""
        from tritonclient.utils import InferenceServerException

        try:
            config = self.client.get_model_config("ocr_rec", as_json=True)["config"]
        except InferenceServerException as exc:
            raise DependencyUnavailable(f"Triton at {self.url} is unavailable for ocr_rec: {exc.message()}") from exc
        kinds = {group.get("kind", "KIND_GPU") for group in config.get("instance_group", [])}
        return kinds == {"KIND_CPU"}, max(1, int(config.get("max_batch_size", 8)))

    def _infer(self, model: str, batch: np.ndarray) -> np.ndarray:
        from tritonclient.utils import InferenceServerException

        parts = []
        for start in range(0, len(batch), self.max_batch_size):
            chunk = np.ascontiguousarray(batch[start : start + self.max_batch_size])
            request = self._grpc.InferInput("x", list(chunk.shape), "UINT8" if chunk.dtype == np.uint8 else "FP32")
            if chunk.dtype != np.uint8:
                chunk = chunk.astype(np.float32, copy=False)
            request.set_data_from_numpy(chunk)
            sent = time.perf_counter()
            try:
                result = self.client.infer(model, [request], model_version=self.version,
                                           outputs=[self._grpc.InferRequestedOutput("y")], client_timeout=self.timeout_s)
            except InferenceServerException as exc:
                status = (exc.status() or "").upper()
                metrics.triton_request(model, time.perf_counter() - sent, _outcome(status))
                if "INVALID_ARG" in status:
                    raise PermanentError(f"Triton rejected the input for {model}: {exc.message()}") from exc
                if "UNAVAILABLE" in status or "NOT_FOUND" in status or not status:
                    # away, restarting, or its models still loading: an outage, not the document
                    raise DependencyUnavailable(f"Triton at {self.url} is unavailable for {model}: "
                                                f"{exc.message()}") from exc
                raise TemporaryError(f"Triton at {self.url} could not run {model}: {exc.message()}") from exc
            metrics.triton_request(model, time.perf_counter() - sent)
            parts.append(result.as_numpy("y"))
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def detect(self, batch: np.ndarray) -> np.ndarray:
        return self._infer("ocr_det", batch)

    def classify(self, batch: np.ndarray) -> np.ndarray:
        return self._infer("ocr_cls", batch)

    def recognize(self, batch: np.ndarray) -> np.ndarray:
        return self._infer("ocr_rec", batch)

    def close(self) -> None:
        self.client.close()


def _outcome(status: str) -> str:
    """A failed request's outcome label: the gRPC status (a handful of values), ``error`` without one."""
    status = status.removeprefix("STATUSCODE.")
    return status.lower() if status.isidentifier() else "error"


class TritonEngine(_PipelineEngine):
    """Pre/post-processing here, the networks on a Triton server at ``url`` (gRPC, ``host:port``).

    Without explicit ``settings`` the engine asks the server where ``ocr_rec`` runs: on CPU
    instances lines go one per request (:func:`cpu_settings`), on GPU instances in batches up to
    the model's ``max_batch_size``. Requests larger than ``max_batch_size`` are split.
    """

    def __init__(self, url: str = "127.0.0.1:8001", settings: PipelineSettings | None = None, *,
                 dictionary: list[str] | None = None, timeout_s: float = 60.0, max_batch_size: int | None = None,
                 model: str | None = None) -> None:
        from ocrfleet_worker.model.convert import read_dictionary

        networks = TritonNetworks(url, timeout_s=timeout_s, max_batch_size=max_batch_size or 8, model=model)
        if settings is None or max_batch_size is None:
            on_cpu, server_batch = networks.recognizer_placement()
            networks.max_batch_size = max_batch_size or server_batch
            if settings is None:
                settings = cpu_settings() if on_cpu else PipelineSettings()
        super().__init__(networks, dictionary or read_dictionary(version=networks.model), settings)

    def ready(self) -> bool:
        return self.networks.ready()

    def close(self) -> None:
        self.networks.close()
