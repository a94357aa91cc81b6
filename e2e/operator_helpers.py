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
