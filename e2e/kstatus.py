"""kstatus of real objects: what Flux, kpt and cli-utils' waiters decide from an object's status.

``kstatus(cluster, kind, namespace, name)`` reads the object with the cluster's ``kubectl get
-o json`` and runs it through status.Compute of ``sigs.k8s.io/cli-utils`` (the harness in
e2e/tools/kstatus, built once per version and source by its build.sh and cached in
~/.cache/ocrfleet/kstatus). It returns ``{kind, namespace, name, status, message}``; status is
InProgress, Current, Failed or Terminating.
"""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path

BUILD = Path(__file__).resolve().parent / "tools" / "kstatus" / "build.sh"


@functools.cache
def harness() -> str:
    """The harness binary (built, or found cached); fails with the build's log when it cannot be built."""
    run = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, timeout=540)
    assert run.returncode == 0, f"building the kstatus harness ({BUILD}) failed:\n{run.stderr[-4000:]}"
    path = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    assert Path(path).is_file(), f"{BUILD} printed {path!r}, which is no file:\n{run.stderr[-4000:]}"
    return path


def compute(objects_json: str) -> list[dict]:
    """kstatus of each object in ``kubectl get -o json`` output (one object or a List)."""
    run = subprocess.run([harness()], input=objects_json, capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, f"kstatus exited with {run.returncode}:\n{run.stderr}\non:\n{objects_json[:4000]}"
    return [json.loads(line) for line in run.stdout.splitlines() if line.strip()]


def kstatus(cluster, kind: str, namespace: str, name: str) -> dict:
    """The kstatus of one object as it is in the cluster now."""
    [result] = compute(cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json"))
    return result
