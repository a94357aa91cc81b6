"""The repository root is a Helm chart that lints, renders and installs into a real API server."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def helm(cluster, *args: str) -> str:
    proc = subprocess.run([str(cluster.helm), f"--kubeconfig={cluster.kubeconfig_path}", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_chart_lints_and_renders(kind_cluster):
    out = helm(kind_cluster, "lint", str(ROOT), "--strict")
    assert "0 chart(s) failed" in out
    rendered = [d for d in yaml.safe_load_all(helm(kind_cluster, "template", "ocrfleet", str(ROOT),
                                                   "--namespace", "ocrfleet-system", "--include-crds")) if d]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in rendered}
    assert ("CustomResourceDefinition", "ocrclusters.ocrfleet.io") in kinds
    assert ("CustomResourceDefinition", "ocrjobs.ocrfleet.io") in kinds
    assert any(k == "Deployment" for k, _ in kinds)
    # the package holds the chart, not the Python sources next to it
    package = subprocess.run([str(kind_cluster.helm), "package", str(ROOT), "-d", "/tmp"],
                             capture_output=True, text=True, check=True).stdout.split(":")[-1].strip()
    listing = subprocess.run(["tar", "tzf", package], capture_output=True, text=True, check=True).stdout
    Path(package).unlink()
    assert "ocrfleet/Chart.yaml" in listing and "ocrfleet/crds/" in listing
    assert not any(part in listing for part in ("/operator/", "/tests/", "/api-image/", ".py\n"))
    assert [line for line in listing.splitlines() if "/." in line] == []  # no caches or dotfiles


def test_chart_installs_into_the_cluster(kind_cluster):
    helm(kind_cluster, "install", "ocrfleet", str(ROOT), "--namespace", "ocrfleet-system", "--create-namespace",
         "--wait", "--timeout", "120s")
    try:
        crds = json.loads(kind_cluster.kubectl("get", "crd", "-o", "json"))["items"]
        names = {c["metadata"]["name"] for c in crds}
        assert {"ocrclusters.ocrfleet.io", "ocrjobs.ocrfleet.io"} <= names
        status = json.loads(helm(kind_cluster, "status", "ocrfleet", "-n", "ocrfleet-system", "-o", "json"))
        assert status["info"]["status"] == "deployed"
    finally:
        helm(kind_cluster, "uninstall", "ocrfleet", "-n", "ocrfleet-system", "--wait")
