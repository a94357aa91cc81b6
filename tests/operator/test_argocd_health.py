"""Argo CD health checks of OcrCluster and OcrJob (argocd/ocrfleet.io/<Kind>/health.lua).

* The objects they are tested on are the statuses the operator's code writes now: the
  committed testdata equal what ``python -m ocrfleet_dev.argocd_testdata`` generates, and they
  hold every phase and reason of a job, and a status behind its object's generation.
* Under gopher-lua, the Lua Argo CD embeds, run the way Argo CD runs them (the harness
  e2e/tools/argocd-health, built by its build.sh), every case of each health_test.yaml gives the
  expected status and message, with the libraries of an argocd-cm script and with all of them.
* The harness itself fails a wrong expectation.
"""

from __future__ import annotations

import copy
import functools
import shutil
import subprocess
from pathlib import Path

import yaml
from ocrfleet_dev import argocd_testdata
from ocrfleet_operator.phases import Phase, Reason

from .conftest import ROOT

ARGOCD = ROOT / "argocd" / "ocrfleet.io"
KINDS = ("OcrCluster", "OcrJob")
BUILD = ROOT / "e2e" / "tools" / "argocd-health" / "build.sh"
REGENERATE = ".venv/bin/python -m ocrfleet_dev.argocd_testdata"


@functools.cache
def harness() -> str:
    """The harness binary build.sh builds (or finds cached); fails with its build log when it cannot."""
    run = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, timeout=540)
    assert run.returncode == 0, f"building the Argo CD health harness failed:\n{run.stderr[-4000:]}"
    path = run.stdout.strip().splitlines()[-1]
    assert Path(path).is_file(), f"{BUILD} printed {path!r}, which is no file:\n{run.stderr}"
    return path


def check(*dirs: Path) -> subprocess.CompletedProcess:
    return subprocess.run([harness(), *map(str, dirs)], capture_output=True, text=True, timeout=120)


def expectations_of(kind: str) -> list[dict]:
    return yaml.safe_load((ARGOCD / kind / "health_test.yaml").read_text())["tests"]


def objects_of(kind: str) -> dict[str, dict]:
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted((ARGOCD / kind / "testdata").glob("*.yaml"))}


def test_the_committed_testdata_are_what_the_operator_writes_now(tmp_path):
    argocd_testdata.write(tmp_path)
    generated = {p.relative_to(tmp_path).as_posix(): p.read_text() for p in tmp_path.glob("*/testdata/*.yaml")}
    committed = {p.relative_to(ARGOCD).as_posix(): p.read_text() for p in ARGOCD.glob("*/testdata/*.yaml")}
    differ = sorted(k for k in generated.keys() & committed.keys() if generated[k] != committed[k])
    missing, stale = sorted(generated.keys() - committed.keys()), sorted(committed.keys() - generated.keys())
    assert not (differ or missing or stale), (
        "argocd/ocrfleet.io/*/testdata are not what the operator's status code writes now "
        f"(changed: {differ}, not committed: {missing}, no longer generated: {stale}); regenerate them with "
        f"`{REGENERATE}`, then check the expected health of each in argocd/ocrfleet.io/<Kind>/health_test.yaml")


def test_every_object_has_an_expected_health_and_every_case_an_object():
    for kind in KINDS:
        cases = [t["inputPath"] for t in expectations_of(kind)]
        assert len(cases) == len(set(cases)), f"{kind}: a testdata file is listed twice"
        assert sorted(cases) == [f"testdata/{name}" for name in objects_of(kind)], kind
        assert all(t["healthStatus"]["status"] and "message" in t["healthStatus"] for t in expectations_of(kind))


def test_the_testdata_hold_every_job_phase_and_reason_and_statuses_behind_the_spec():
    add = "; add its case to dev/ocrfleet_dev/argocd_testdata.py and its expected health to health_test.yaml"
    jobs = [o["status"] for o in objects_of("OcrJob").values() if "status" in o]
    assert {s["phase"] for s in jobs} == {p.value for p in Phase}, "a job phase has no testdata" + add
    assert {s["reason"] for s in jobs} == {r.value for r in Reason}, "a job reason has no testdata" + add
    clusters = [o["status"] for o in objects_of("OcrCluster").values() if "status" in o]
    degraded = {c["reason"] for s in clusters for c in s["conditions"] if c["type"] == "Degraded" and c["status"] == "True"}
    assert degraded == {"ImagePullBackOff", "Unschedulable", "StartupDeadlineExceeded", "PolicyViolation"}
    ready = {c["reason"] for s in clusters for c in s["conditions"] if c["type"] == "Ready" and c["status"] == "True"}
    assert ready == {"AllReplicasReady", "ScaledToZero"}
    for kind in KINDS:
        objects = objects_of(kind).values()
        assert any("status" not in o for o in objects), f"{kind}: no object without a status"
        assert any("status" in o and o["status"]["observedGeneration"] < o["metadata"]["generation"]
                   for o in objects), f"{kind}: no status behind metadata.generation"


def test_the_health_checks_give_each_case_its_expected_health_under_gopher_lua():
    run = check(ARGOCD)
    assert run.returncode == 0, f"argocd-health {ARGOCD}:\n{run.stdout}{run.stderr}"
    for kind in KINDS:
        assert f"ok   ocrfleet.io/{kind}: {len(expectations_of(kind))} cases" in run.stdout, run.stdout
    assert "argocd-cm libraries, all standard libraries" in run.stdout


def test_a_wrong_expectation_fails_the_harness_with_a_diff(tmp_path):
    job = tmp_path / "ocrfleet.io" / "OcrJob"
    shutil.copytree(ARGOCD / "OcrJob", job)
    (job / "health_test.yaml").write_text(yaml.safe_dump({"tests": [
        {"healthStatus": {"status": "Healthy", "message": "all good"},
         "inputPath": "testdata/failed-too-many-failures.yaml"}]}))
    run = check(tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "FAIL ocrfleet.io/OcrJob testdata/failed-too-many-failures.yaml [argocd-cm libraries]" in run.stdout
    assert "status:  want Healthy\n             got  Degraded" in run.stdout
    assert 'got  "TooManyFailures: 9 of 40 documents failed;' in run.stdout
    assert "0 cases passed, 2 failed" in run.stdout


def test_a_script_that_needs_the_string_library_fails_as_an_argocd_cm_script(tmp_path):
    """A script in argocd-cm gets no string library; the harness must not hide that."""
    kind = tmp_path / "ocrfleet.io" / "OcrJob"
    shutil.copytree(ARGOCD / "OcrJob", kind)
    (kind / "health.lua").write_text('return {status = "Healthy", message = string.format("%d", 1)}\n')
    (kind / "health_test.yaml").write_text(yaml.safe_dump({"tests": [
        {"healthStatus": {"status": "Healthy", "message": "1"}, "inputPath": "testdata/succeeded.yaml"}]}))
    run = check(tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "[argocd-cm libraries]\n    want: Healthy \"1\"\n    got:  error:" in run.stdout
    assert "1 cases passed, 1 failed" in run.stdout  # with all standard libraries it works


def test_a_condition_computed_for_an_older_generation_reads_progressing(tmp_path):
    """The operator writes observedGeneration and its conditions together; a status whose conditions
    lag (another writer's, a hand edit) is not taken for the current spec's either."""
    ready = next(c.obj for c in argocd_testdata.cluster_cases() if c.name == "ready")
    lagging = copy.deepcopy(ready)
    lagging["metadata"]["generation"] = lagging["status"]["observedGeneration"] = 2
    cluster = tmp_path / "ocrfleet.io" / "OcrCluster"
    (cluster / "testdata").mkdir(parents=True)
    shutil.copy(ARGOCD / "OcrCluster" / "health.lua", cluster)
    (cluster / "testdata" / "lagging.yaml").write_text(yaml.safe_dump(lagging))
    (cluster / "health_test.yaml").write_text(yaml.safe_dump({"tests": [
        {"healthStatus": {"status": "Progressing", "message": "the ocrfleet operator has not observed the latest "
                          "spec yet (generation 2, condition Ready of generation 1)"},
         "inputPath": "testdata/lagging.yaml"}]}))
    run = check(tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
