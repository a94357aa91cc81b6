"""The status writer: compare before write, throttle progress, write phase changes at once.

The Kubernetes API is replaced by a real fake at the transport (httpx.MockTransport) that
records each PATCH; nothing is monkeypatched.
"""

from __future__ import annotations

import json

import httpx
from ocrfleet_operator.kube import Kube
from ocrfleet_operator.status import StatusWriter


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def make_writer():
    patches = []

    def handle(request: httpx.Request) -> httpx.Response:
        patches.append((request.method, request.url.path, request.headers["content-type"], json.loads(request.content)))
        return httpx.Response(200, json={})

    kube = Kube(httpx.Client(transport=httpx.MockTransport(handle), base_url="https://api"))
    clock = Clock()
    return StatusWriter(kube, min_interval=3.0, clock=clock), patches, clock


def test_unchanged_status_is_not_written():
    writer, patches, _ = make_writer()
    current = {"phase": "Running", "counts": {"done": 3, "total": 9}, "extra": 1}
    assert not writer.write("OcrJob", "ns", "j", "u1", current, {"phase": "Running", "counts": {"done": 3}})
    assert patches == []
    assert writer.stats.unchanged == 1


def test_progress_is_throttled_and_urgent_changes_are_not():
    writer, patches, clock = make_writer()
    assert writer.write("OcrJob", "ns", "j", "u1", {}, {"phase": "Running", "counts": {"done": 1}})
    assert patches[0][:3] == ("PATCH", "/apis/ocrfleet.io/v1alpha1/namespaces/ns/ocrjobs/j/status",
                              "application/merge-patch+json")
    assert patches[0][3] == {"status": {"phase": "Running", "counts": {"done": 1}}}
    clock.now += 1
    assert not writer.write("OcrJob", "ns", "j", "u1", {}, {"phase": "Running", "counts": {"done": 2}})
    # the writer remembers what it wrote: a stale "current" does not cause a rewrite
    clock.now += 10
    assert not writer.write("OcrJob", "ns", "j", "u1", {}, {"phase": "Running", "counts": {"done": 1}})
    assert writer.write("OcrJob", "ns", "j", "u1", {}, {"phase": "Running", "counts": {"done": 5}})
    clock.now += 0.5
    assert writer.write("OcrJob", "ns", "j", "u1", {}, {"phase": "Succeeded", "counts": {"done": 9}}, urgent=True)
    assert len(patches) == 3
    assert writer.stats.throttled == 1


def test_many_progress_updates_cost_few_writes():
    writer, patches, clock = make_writer()
    for done in range(1, 1001):  # 1,000 pages over 30 s
        clock.now += 0.03
        writer.write("OcrJob", "ns", "j", "u1", {}, {"phase": "Running", "counts": {"done": done}})
    assert len(patches) <= 11


def test_known_prefers_what_the_writer_wrote_over_a_stale_body():
    writer, _patches, _clock = make_writer()
    assert writer.known("u1", {"phase": "Pending", "x": 1}) == {"phase": "Pending", "x": 1}
    writer.write("OcrJob", "ns", "j", "u1", {}, {"phase": "Running"}, urgent=True)
    assert writer.known("u1", {"phase": "Pending", "x": 1}) == {"phase": "Running", "x": 1}
