"""A local Triton server: the ``tritonserver`` binary from the nvidia-pytriton wheel, as a child process.

In a cluster NVIDIA's tritonserver image serves the model repository on a GPU. Locally (tests,
benchmarks, ``ocrfleet process``) the same repository is served by the complete Triton build
the ``nvidia-pytriton`` wheel ships (``pytriton/tritonserver/``), started directly — pytriton's
own Python API is not used. What it takes, found on this kind of machine:

- a backend directory of our own, ``python/`` holding ``libtriton_python.so``,
  ``triton_python_backend_utils.py`` and the backend stub for the running Python version (the
  wheel keeps the stubs apart from the backend);
- ``LD_LIBRARY_PATH`` with the running interpreter's libpython directory first, then the
  wheel's bundled libraries (``nvidia_pytriton.libs``; the copied ``.so`` files lose their
  relative RPATH — without them the stub cannot load and the server *hangs* rather than exits,
  hence a readiness timeout that reports the log);
- the virtualenv's ``bin`` first on ``PATH``: the stub's embedded interpreter finds its prefix
  (and so torch and numpy) through the ``python3`` it finds there;
- loopback-only HTTP, gRPC and metrics ports, chosen free.

CUDA warnings at start-up on a machine without a GPU are expected and harmless.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ocrfleet.localproc import LocalProcess, ServiceError, free_port
from ocrfleet_worker.triton_repository import MODELS, TritonModelSettings, render_repository

#: glog's error lines: E, month and day, time ("E1123 09:39:24.349873 ...").
_GLOG_ERROR = re.compile(r"^E\d{4} \d\d:\d\d:\d\d")
#: Errors Triton logs on every machine without a GPU; they do not stop it.
_HARMLESS = ("CudaDriverHelper", "CUDA driver", "cuda driver", "Unable to get number of GPUs")


@dataclass(frozen=True)
class TritonPaths:
    """Where the wheel keeps the server, its backends and its libraries."""

    root: Path
    libs: Path

    @classmethod
    def find(cls) -> TritonPaths:
        spec = importlib.util.find_spec("pytriton")
        if spec is None or not spec.submodule_search_locations:
            raise ServiceError("nvidia-pytriton is not installed; it carries the local tritonserver (make venv)")
        package = Path(next(iter(spec.submodule_search_locations)))
        paths = cls(package / "tritonserver", package.parent / "nvidia_pytriton.libs")
        if not paths.binary.exists():
            raise ServiceError(f"no tritonserver binary at {paths.binary}")
        return paths

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "tritonserver"

    @property
    def stub(self) -> Path:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        return self.root / "python_backend_stubs" / version / "triton_python_backend_stub"


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

        ``requests / executions`` above 1 proves that the dynamic batcher merged requests.
        """
        response = httpx.get(f"{self.http_url}/v2/models/stats", timeout=5.0)
        response.raise_for_status()
        stats = {}
        for entry in response.json().get("model_stats", []):
            if entry["name"] in MODELS:
                success = entry.get("inference_stats", {}).get("success", {})
                stats[entry["name"]] = {"requests": int(success.get("count", 0)),
                                        "inferences": int(entry.get("inference_count", 0)),
                                        "executions": int(entry.get("execution_count", 0))}
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


def backend_directory(paths: TritonPaths, root: Path) -> Path:
    """``root/python/``: the wheel's python backend with the stub for this Python; returns ``root``."""
    python_backend = root / "python"
    python_backend.mkdir(parents=True, exist_ok=True)
    source = paths.root / "backends" / "python"
    for item in (source / "libtriton_python.so", source / "triton_python_backend_utils.py", paths.stub):
        if not item.exists():
            raise ServiceError(f"the Triton wheel lacks {item} (Python {sys.version_info[:2]} supported?)")
        target = python_backend / item.name
        if not target.exists():
            target.symlink_to(item)
    return root


def server_environment(paths: TritonPaths) -> dict[str, str]:
    """This environment, plus the library path and ``PATH`` the wheel's server and stub need."""
    env = dict(os.environ)
    libpython = sysconfig.get_config_var("LIBDIR") or ""
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (libpython, str(paths.libs), env.get("LD_LIBRARY_PATH", "")) if p)
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    # idle OpenMP threads of one model must not spin on the cores the next model needs
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def serve(argv: list[str]) -> None:
    """Become the wheel's ``tritonserver`` with ``argv``: the worker image's ``tritonserver`` command.

    It takes the command line NVIDIA's tritonserver image takes (the operator renders one for
    both) and adds what the wheel's build needs unless given: the backend directory
    (``$OCRFLEET_TRITON_BACKEND_DIR``, prepared at image build time), the cache directory, and
    on a node without a GPU no pinned memory and no GPU metrics.
    """
    paths = TritonPaths.find()
    given = {arg.split("=", 1)[0] for arg in argv}
    extra = []
    if "--backend-directory" not in given:
        root = Path(os.environ.get("OCRFLEET_TRITON_BACKEND_DIR") or tempfile.mkdtemp(prefix="ocrfleet-backends-"))
        extra.append(f"--backend-directory={backend_directory(paths, root)}")
    if "--cache-directory" not in given:
        extra.append(f"--cache-directory={paths.root / 'caches'}")
    if not _gpu_device_present():
        extra += [a for a in ("--pinned-memory-pool-byte-size=0", "--allow-gpu-metrics=false")
                  if a.split("=", 1)[0] not in given]
    os.execve(paths.binary, [str(paths.binary), *extra, *argv], server_environment(paths))


def _gpu_device_present() -> bool:
    """An NVIDIA device node in this container (the device plugin mounts one per GPU)."""
    return any(Path("/dev").glob("nvidia[0-9]*"))


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["serve"]:
        serve(args[1:])
    elif args[:1] == ["backends"] and len(args) == 2:
        print(backend_directory(TritonPaths.find(), Path(args[1])))
    else:
        sys.exit("usage: python -m ocrfleet_worker.triton_server serve [TRITONSERVER ARGS...]\n"
                 "       python -m ocrfleet_worker.triton_server backends DIR")


def _cuda_visible() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - no torch, or a broken CUDA install: no GPU for us
        return False


if __name__ == "__main__":
    main()
