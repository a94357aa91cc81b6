"""The three networks as TorchScript modules in this process.

Loads the modules :mod:`~ocrfleet_worker.model.convert` caches, on CUDA when a GPU is visible
and on the CPU otherwise, and runs them under ``torch.inference_mode``. Torch's intra-op
thread count is set explicitly: it must match the CPUs the process may use (a pod's CPU limit),
since two processes that each spin up a thread per core on the same cores run many times slower.

TorchScript's profiling executor re-specialises the graph for every new input shape (and pages
and line batches change shape all the time); the legacy executor does not, and is used here
and in the Triton python backend.

Idle OpenMP threads spin by default, waiting for the next parallel region; when the cores are
shared (other processes, Triton's other models) the spinning starves the threads that have
work, and a 2-thread model ran 3-5x slower here. ``OMP_WAIT_POLICY=PASSIVE`` is therefore the
default (set before torch loads its OpenMP runtime; the environment can override it).
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@dataclass(frozen=True)
class TorchSettings:
    device: str = "auto"
    """device: "cuda", "cpu", or "auto" (CUDA when available)."""
    threads: int = 2
    """threads: torch intra-op threads; set it to the CPU limit of the process."""


def pick_device(requested: str = "auto") -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def configure_torch(threads: int) -> None:
    """Thread count and executor, once per process (torch's settings are process-wide)."""
    import torch

    torch.set_num_threads(max(1, threads))
    torch._C._jit_set_profiling_executor(False)


class TorchNetworks:
    """Detection, direction and recognition TorchScript modules on one device; inputs and outputs
    as :class:`~ocrfleet_worker.model.reader.Networks` says (uint8 pages, float32 strips)."""

    def __init__(self, settings: TorchSettings | None = None, *, model: str | None = None) -> None:
        import torch

        from ocrfleet_worker.model.convert import ensure_models, model_version

        self.settings = settings or TorchSettings()
        self.model = model_version(model).name
        """The model version (:data:`~ocrfleet_worker.model.convert.VERSIONS`) these networks are."""
        self.device = pick_device(self.settings.device)
        configure_torch(self.settings.threads)
        self.files = ensure_models(self.device, version=self.model)
        self.dictionary = self.files.load_keys()
        with warnings.catch_warnings():  # TorchScript is deprecated in favour of torch.export, which
            warnings.simplefilter("ignore", FutureWarning)  # cannot export these graphs (see convert)
            self._modules = {role: torch.jit.load(str(self.files.module(role)), map_location=self.device).eval()
                             for role in ("det", "cls", "rec")}
        # CUDA work from several threads is fine; a CPU module is already parallel inside.
        self._lock = threading.Lock() if self.device == "cpu" else None

    def _run(self, role: str, batch: np.ndarray) -> np.ndarray:
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        if tensor.dtype == torch.float32:  # line strips: oneDNN's faster conv layout (pages come NHWC)
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            if self._lock is None:
                out = self._modules[role](tensor)
            else:
                with self._lock:
                    out = self._modules[role](tensor)
        return out.cpu().numpy()

    def detect(self, batch: np.ndarray) -> np.ndarray:
        return self._run("det", batch)

    def classify(self, batch: np.ndarray) -> np.ndarray:
        return self._run("cls", batch)

    def recognize(self, batch: np.ndarray) -> np.ndarray:
        return self._run("rec", batch)
