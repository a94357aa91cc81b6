"""One version (pyproject.toml's) for the package, the chart, the images the operator defaults
pools to and every program; each image's program documents its settings with --help."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from ocrfleet_api.settings import ApiSettings
from ocrfleet_operator.settings import OperatorSettings
from ocrfleet_worker.settings import WorkerSettings

import ocrfleet

ROOT = Path(__file__).resolve().parent.parent
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_the_package_and_the_chart_carry_pyprojects_version():
    chart = yaml.safe_load((ROOT / "Chart.yaml").read_text())
    assert ocrfleet.__version__ == VERSION
    assert (chart["version"], chart["appVersion"]) == (VERSION, VERSION), "bump Chart.yaml with pyproject.toml"


def test_the_operator_defaults_pools_to_this_versions_images_and_nothing_pins_one():
    settings = OperatorSettings()
    assert (settings.api_image, settings.worker_image) == (f"ghcr.io/ocrfleet/api:{VERSION}",
                                                           f"ghcr.io/ocrfleet/worker:{VERSION}")
    texts = [p.read_text() for p in [*(ROOT / "crds").glob("*.yaml"), *(ROOT / "examples").glob("*.yaml")]]
    assert not [m for t in texts for m in re.findall(r"ghcr\.io/ocrfleet/[a-z]+:[\w.\-]+", t)], (
        "a CRD default or an example pins an ocrfleet image: pools would not move with the chart")


@pytest.mark.parametrize("module, settings", [
    ("ocrfleet_operator", OperatorSettings), ("ocrfleet_api", ApiSettings), ("ocrfleet_worker", WorkerSettings)])
def test_each_program_prints_its_version_and_every_setting(module, settings):
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=60)

    version = run("--version")
    assert version.returncode == 0 and version.stdout.strip().endswith(f"(ocrfleet {VERSION})"), version
    shown = run("--help")
    assert shown.returncode == 0, shown.stderr
    listed = set(re.findall(r"^  (OCRFLEET_[A-Z0-9_]+)=", shown.stdout, re.M))
    assert listed == {f"OCRFLEET_{name.upper()}" for name in settings.model_fields}
    assert "OCRFLEET_REDIS_URL=redis://127.0.0.1:6379/0\n      the queue and counters." in shown.stdout
    refused = run("--serve-forever")
    assert refused.returncode == 2 and "unrecognized arguments: --serve-forever" in refused.stderr


def test_the_ocrfleet_command_prints_its_version():
    out = subprocess.run([sys.executable, "-m", "ocrfleet_dev.cli", "--version"], capture_output=True, text=True,
                         timeout=60)
    assert (out.returncode, out.stdout.strip()) == (0, f"ocrfleet {VERSION}")
