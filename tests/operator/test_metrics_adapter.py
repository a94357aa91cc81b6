"""The external metrics adapter over TLS, reading queue depth from a real Redis."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from ocrfleet_operator.metrics_adapter import MetricsAdapter, parse_label_selector, tls_context

from ocrfleet.queue import Task, WorkQueue

BASE = "/apis/external.metrics.k8s.io/v1beta1"


@pytest.fixture
def adapter(redis_client):
    queues = {("ocr", "pool"): WorkQueue(redis_client, "pool")}
    loop = asyncio.new_event_loop()
    server = MetricsAdapter(
        lambda ns, name: q.depth() if (q := queues.get((ns, name))) else None,
        lambda ns: [name for (n, name) in queues if n == ns],
        host="127.0.0.1", port=0, ssl_context=tls_context())
    port = loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=False, timeout=5) as client:
        yield client, queues[("ocr", "pool")]
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_discovery_names_the_metric(adapter):
    client, _ = adapter
    body = client.get(BASE).json()
    assert body["kind"] == "APIResourceList"
    assert body["resources"][0]["name"] == "ocrfleet_queue_depth"
    assert body["resources"][0]["namespaced"] is True


def test_depth_counts_waiting_and_in_flight(adapter):
    client, queue = adapter
    queue.ensure_groups()
    for i in range(5):
        queue.enqueue(Task(document_id=f"d{i}", tenant="t", blob=f"sha256:{i:064x}", sha256=f"{i:064x}"))
    queue.read("worker-1", count=2)  # two in flight
    url = f"{BASE}/namespaces/ocr/ocrfleet_queue_depth"
    body = client.get(url, params={"labelSelector": "ocrfleet.io/cluster=pool"}).json()
    assert body["kind"] == "ExternalMetricValueList"
    [item] = body["items"]
    assert (item["metricName"], item["value"], item["metricLabels"]) == (
        "ocrfleet_queue_depth", "5", {"ocrfleet.io/cluster": "pool"})
    assert client.get(url).json()["items"][0]["value"] == "5"  # no selector: every cluster of the namespace


def test_unknown_cluster_and_metric_are_404_with_a_message(adapter):
    client, _ = adapter
    r = client.get(f"{BASE}/namespaces/ocr/ocrfleet_queue_depth", params={"labelSelector": "ocrfleet.io/cluster=nope"})
    assert r.status_code == 404 and "nope" in r.json()["message"]
    r = client.get(f"{BASE}/namespaces/ocr/cpu")
    assert r.status_code == 404 and "ocrfleet_queue_depth" in r.json()["message"]


def test_parse_label_selector():
    assert parse_label_selector("ocrfleet.io/cluster=a, x==b,y!=c,z in (d)") == {"ocrfleet.io/cluster": "a", "x": "b"}
