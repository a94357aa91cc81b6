"""A local Triton server for tests, benchmarks and ``ocrfleet process``: the worker image's
Triton build (:mod:`ocrfleet_worker.triton_server`) as a child process on free loopback HTTP,
gRPC and metrics ports, ready when every model is, with its log in the error when it is not.

CUDA warnings at start-up on a machine without a GPU are expected and harmless.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from ocrfleet_worker.triton_repository import MODELS, TritonModelSettings, render_repository
from ocrfleet_worker.triton_server import TritonPaths, backend_directory, server_environment

from ocrfleet.errors import ServiceError
from ocrfleet_dev.localproc import LocalProcess, free_port

#: glog's error lines: E, month and day, time ("E1123 09:39:24.349873 ...").
_GLOG_ERROR = re.compile(r"^E\d{4} \d\d:\d\d:\d\d")
#: Errors Triton logs on every machine without a GPU; they do not stop it.
_HARMLESS = ("CudaDriverHelper", "CUDA driver", "cuda driver", "Unable to get number of GPUs")


def local_settings() -> TritonModelSettings:
    """The settings a local server uses unless told otherwise.

    The cluster defaults (``OCRFLEET_TRITON_*`` or the class defaults), except that on a machine
    without a GPU dynamic batching is off unless ``OCRFLEET_TRITON_DYNAMIC_BATCHING`` says
    otherwise: on a CPU a batch costs more per item than it saves, and every request would wait
    out the queue delay (bench/model_bench.py measures both).
    """
    settings = TritonModelSettings()
    if not _cuda_visible() and "OCRFLEET_TRITON_DYNAMIC_BATCHING" not in os.environ:
        settings = settings.model_copy(update={"dynamic_batching": False})
    return settings


@dataclass
class TritonServerOptions:
    settings: TritonModelSettings = field(default_factory=local_settings)
    """settings: batching, instances and threads the repository is rendered with."""
    repository: Path | None = None
    """repository: serve this rendered repository as is instead of rendering one."""
    startup_timeout_s: float = 120.0
    """startup_timeout_s: how long loading the models may take before the start counts as failed."""
    log_verbose: int = 0


class TritonServer:
    """``with TritonServer() as server: server.grpc_url`` — models loaded and ready inside the block."""

    def __init__(self, options: TritonServerOptions | None = None, workdir: Path | None = None) -> None:
        self.options = options or TritonServerOptions()
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="ocrfleet-triton-"))
        self.http_port = self.grpc_port = self.metrics_port = 0
        self.process: LocalProcess | None = None
        self.startup_s: float | None = None

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "tritonserver.log"

    def start(self) -> TritonServer:
        paths = TritonPaths.find()
        repository = self.options.repository or render_repository(self.workdir / "models", self.options.settings)
        backends = backend_directory(paths, self.workdir / "backends")
        if not self.grpc_port:  # a restart keeps its ports, so clients reconnect where they were
            self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        argv = [
            str(paths.binary),
            f"--model-repository={repository}",
            f"--backend-directory={backends}",
            f"--cache-directory={paths.root / 'caches'}",
            "--allow-gpu-metrics=false",
            "--strict-readiness=true",
            "--exit-on-error=true",
            f"--log-verbose={self.options.log_verbose}",
            "--http-address=127.0.0.1", f"--http-port={self.http_port}",
            "--grpc-address=127.0.0.1", f"--grpc-port={self.grpc_port}",
            "--metrics-address=127.0.0.1", f"--metrics-port={self.metrics_port}",
        ]
        if not _cuda_visible():
            argv.append("--pinned-memory-pool-byte-size=0")
        started = time.monotonic()
        self.process = LocalProcess("tritonserver", argv, workdir=self.workdir, env=server_environment(paths))
        # settled: ready, or a model reported that it cannot load (the server would still wait
        # for the others, or hang on a stub that cannot start; neither is worth waiting for)
        self.process.start(lambda: self._failure_in_log() is not None or self._ready(),
                           timeout=self.options.startup_timeout_s)
        failure = self._failure_in_log()
        if failure is not None:
            tail = self.process.log_tail()
            self.process.stop()
            raise ServiceError(f"tritonserver could not load its models: {failure}\n{tail}")
        self.startup_s = time.monotonic() - started
        return self

    def _ready(self) -> bool:
        response = httpx.get(f"{self.http_url}/v2/health/ready", timeout=1.0)
        return response.status_code == 200

    def _failure_in_log(self) -> str | None:
        """The first error Triton logged (glog's ``E<date>`` lines), if any."""
        if self.process is None:
            return None
        with contextlib.suppress(FileNotFoundError):
            for line in self.process.log_path.read_text(errors="replace").splitlines():
                if _GLOG_ERROR.match(line) and not any(h in line for h in _HARMLESS):
                    return line.strip()
        return None

    def model_statistics(self) -> dict[str, dict[str, int]]:
        """Per model: ``requests`` answered, ``inferences`` (batch items) and ``executions`` (network runs).

        ``requests / executions`` above 1 proves that the dynamic batcher merged requests. Summed
        over the model versions served side by side.
        """
        response = httpx.get(f"{self.http_url}/v2/models/stats", timeout=5.0)
        response.raise_for_status()
        stats: dict[str, dict[str, int]] = {}
        for entry in response.json().get("model_stats", []):
            if entry["name"] in MODELS:
                success = entry.get("inference_stats", {}).get("success", {})
                total = stats.setdefault(entry["name"], {"requests": 0, "inferences": 0, "executions": 0})
                total["requests"] += int(success.get("count", 0))
                total["inferences"] += int(entry.get("inference_count", 0))
                total["executions"] += int(entry.get("execution_count", 0))
        return stats

    def stop(self) -> None:
        if self.process:
            self.process.stop(timeout=30)
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> TritonServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


def _cuda_visible() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - no torch, or a broken CUDA install: no GPU for us
        return False
