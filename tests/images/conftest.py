"""The three images, built (or found by their input hash) once per test session, and containers
run from them with podman: the host's network namespace (every port on 127.0.0.1), the image's
own user, a read-only root filesystem and a tmpfs /tmp, as the operator's pods run them."""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from e2e.images import build_all, podman


@pytest.fixture(scope="session")
def images():
    """name -> Built; the first build on a machine takes minutes, an unchanged tree none."""
    built = build_all(log=lambda m: print(m, flush=True))
    for name, b in built.items():
        state = f"built in {b.seconds:.0f} s" if b.rebuilt else "unchanged"
        print(f"MEASURED image {name} {b.size_bytes() / 1e6:.0f} MB {state}")
    return built


class Container:
    """``podman run -d`` of one image; ``logs()`` for failure messages; removed on ``stop()``."""

    def __init__(self, tag: str, command: list[str], *, env: dict[str, str] | None = None,
                 volumes: dict[Path, str] | None = None, name: str = "ocrfleet") -> None:
        self.name = f"{name}-{uuid.uuid4().hex[:8]}"
        argv = ["run", "-d", "--name", self.name, "--network", "host", "--read-only", "--tmpfs", "/tmp",
                "--security-opt", "no-new-privileges", "--cap-drop", "ALL"]
        for key, value in (env or {}).items():
            argv += ["--env", f"{key}={value}"]
        for host, inside in (volumes or {}).items():
            argv += ["--volume", f"{host}:{inside}"]
        podman(*argv, tag, *command)

    def logs(self) -> str:
        proc = podman("logs", self.name, check=False)
        return (proc.stdout + proc.stderr)[-6000:]

    def running(self) -> bool:
        proc = podman("inspect", "--format", "{{.State.Running}}", self.name, check=False)
        return proc.stdout.strip() == "true"

    def wait_for(self, condition: Callable[[], object], timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise AssertionError(f"{self.name} exited while waiting for {what}:\n{self.logs()}")
            with contextlib.suppress(Exception):
                result = condition()
                if result:
                    return result
            time.sleep(0.5)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; {self.name} log:\n{self.logs()}")

    def stop(self) -> None:
        podman("rm", "--force", "--time", "10", self.name, check=False)

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def shared_dir(path: Path) -> Path:
    """A host folder the images' user (10001) can write, mounted into several containers."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path


def ran(tag: str, *command: str, env: dict[str, str] | None = None,
        volumes: dict[Path, str] | None = None) -> subprocess.CompletedProcess:
    """``podman run --rm``: the finished container's exit status and output."""
    argv = ["run", "--rm", "--network", "host", "--read-only", "--tmpfs", "/tmp"]
    for key, value in (env or {}).items():
        argv += ["--env", f"{key}={value}"]
    for host, inside in (volumes or {}).items():
        argv += ["--volume", f"{host}:{inside}"]
    return podman(*argv, tag, *command, check=False)
