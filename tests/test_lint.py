"""ruff and import-linter over the whole tree: the layering in pyproject.toml holds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_ruff_finds_nothing():
    proc = subprocess.run([str(BIN / "ruff"), "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_import_contracts_hold():
    proc = subprocess.run([str(BIN / "lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_dependency_floors_are_at_least_the_versions_whose_protections_we_rely_on():
    """A fresh install may pick the floor: it must already have the fix we count on."""
    import re
    import tomllib

    from packaging.version import Version

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = [*project["dependencies"], *[d for deps in project["optional-dependencies"].values() for d in deps]]
    floors = {m[1].lower(): Version(m[2]) for s in specs if (m := re.match(r"([A-Za-z0-9_.-]+)(?:\[[^]]*\])?>=([\d.]+)", s))}
    relied_on = {"python-multipart": "0.0.18",  # CVE-2024-53981: CPU exhaustion by boundary whitespace
                 "redis": "5.2",                # socket timeouts in the asyncio client
                 "pydantic-settings": "2.7"}    # NoDecode, for list settings given as comma-separated values
    for name, minimum in relied_on.items():
        assert floors[name] >= Version(minimum), f"{name}>={floors[name]} is below {minimum}"
