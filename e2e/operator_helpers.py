"""Small helpers of the e2e tests: poll with a deadline, read objects as JSON, report a time."""

from __future__ import annotations

import json
import subprocess
import time


def poll(condition, timeout: float, what: str, interval: float = 0.25):
    """Call ``condition`` until it returns something truthy; fail with the last value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except subprocess.CalledProcessError as exc:
            last = exc.stderr
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last value: {last!r}")


def get_json(cluster, *args, check: bool = True):
    out = cluster.kubectl("get", *args, "-o", "json", check=check)
    return json.loads(out) if out.strip() else None


def report(request, line: str) -> None:
    """A line on the terminal even while pytest captures output (the times ``make test`` prints)."""
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is None or capture is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(f"\n{line}")


def with_redis(manifest, url: str) -> str:
    """An OcrCluster manifest (YAML/JSON text or a dict) on this Redis, as JSON.

    The operator under test runs outside the cluster (a host process, or a container beside
    the kwok nodes), where a pool's managed Redis Service does not resolve; its pools name the
    test Redis instead.
    """
    import copy

    import yaml

    doc = yaml.safe_load(manifest) if isinstance(manifest, str) else copy.deepcopy(manifest)
    doc.setdefault("spec", {})["redis"] = {"url": url}
    return json.dumps(doc)
