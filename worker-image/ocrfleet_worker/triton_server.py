"""The worker image's ``tritonserver``: the binary from the nvidia-pytriton wheel, made runnable.

In a cluster NVIDIA's tritonserver image can serve the model repository; the worker image
serves it with the complete Triton build the ``nvidia-pytriton`` wheel ships
(``pytriton/tritonserver/``), started directly — pytriton's own Python API is not used. What
that build needs, found on this kind of machine:

- a backend directory of our own, ``python/`` holding ``libtriton_python.so``,
  ``triton_python_backend_utils.py`` and the backend stub for the running Python version (the
  wheel keeps the stubs apart from the backend);
- ``LD_LIBRARY_PATH`` with the running interpreter's libpython directory first, then the
  wheel's bundled libraries (``nvidia_pytriton.libs``; the copied ``.so`` files lose their
  relative RPATH — without them the stub cannot load and the server *hangs* rather than exits);
- the virtualenv's ``bin`` first on ``PATH``: the stub's embedded interpreter finds its prefix
  (and so torch and numpy) through the ``python3`` it finds there.

The local server of tests, benchmarks and ``ocrfleet process`` (free loopback ports, readiness
with the log on failure) is :mod:`ocrfleet_dev.triton`, built on these pieces.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ocrfleet.errors import ServiceError


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


if __name__ == "__main__":
    main()
