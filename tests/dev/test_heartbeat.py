"""Long builds say they are still going (``make demo``'s first run is never minutes of silence)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from e2e.images import heartbeat

ROOT = Path(__file__).resolve().parents[2]


def run_with_heartbeat(tmp_path: Path, command: str) -> subprocess.CompletedProcess:
    script = f'source {ROOT}/e2e/tools/heartbeat.sh; heartbeat_run demo-step {tmp_path}/build.log {command}'
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "HEARTBEAT_EVERY": "1"})


def test_a_shell_build_step_reports_while_it_runs_and_keeps_its_exit_status(tmp_path):
    done = run_with_heartbeat(tmp_path, "bash -c 'echo compiling k8s.io/apiserver; sleep 3.5'")
    assert done.returncode == 0
    beats = [line for line in done.stderr.splitlines() if line.startswith("  ... still building demo-step: ")]
    assert len(beats) >= 2 and beats[-1].endswith("; compiling k8s.io/apiserver"), done.stderr
    assert (tmp_path / "build.log").read_text() == "compiling k8s.io/apiserver\n"
    failed = run_with_heartbeat(tmp_path, "bash -c 'exit 3'")
    assert failed.returncode == 3 and failed.stderr == ""


def test_an_image_build_reports_its_logs_last_line_until_it_ends(tmp_path):
    log = tmp_path / "build.log"
    log.write_text("STEP 1/9: FROM base\nSTEP 4/9: RUN pip install --no-index /wheels/*.whl\n")
    said: list[str] = []
    with heartbeat("building worker", said.append, log, every_s=0.2):
        time.sleep(0.7)
    count = len(said)
    time.sleep(0.4)
    assert count >= 2 and len(said) == count, "it stops with the build"
    assert said[0].startswith("  ... still building worker: ") and said[0].endswith(
        "; STEP 4/9: RUN pip install --no-index /wheels/*.whl")
