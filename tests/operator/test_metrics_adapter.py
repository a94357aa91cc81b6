"""The external metrics adapter over TLS, reading queue depth from a real Redis."""

from __future__ import annotations

import asyncio
import ssl
import threading
from types import SimpleNamespace

import httpx
import pytest
from ocrfleet_operator.metrics_adapter import ClientAuth, MetricsAdapter, parse_label_selector, tls_context

from e2e.certs import make_client_cert, make_serving_cert
from ocrfleet.queue import Task, WorkQueue

BASE = "/apis/external.metrics.k8s.io/v1beta1"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """The serving cert, the aggregator's client cert (of the request-header CA) and an intruder's."""
    d = tmp_path_factory.mktemp("pki")
    serving_ca, cert, key = make_serving_cert(d / "serving")
    header_ca, aggregator, aggregator_key = make_client_cert(d / "header", "front-proxy-client", "front-proxy-client")
    _, intruder, intruder_key = make_client_cert(d / "intruder", "intruder", "front-proxy-client")
    return SimpleNamespace(cert=str(cert), key=str(key), header_ca=header_ca.read_text(),
                           anonymous=_client(serving_ca), aggregator=_client(serving_ca, aggregator, aggregator_key),
                           intruder=_client(serving_ca, intruder, intruder_key))


def _client(serving_ca, cert=None, key=None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(serving_ca))
    if cert:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


@pytest.fixture
def server(redis_client, pki):
    queues = {("ocr", "pool"): WorkQueue(redis_client, "pool")}
    auth = ClientAuth(pki.header_ca, ("front-proxy-client",))
    loop = asyncio.new_event_loop()
    server = MetricsAdapter(
        lambda ns, name: q.depth() if (q := queues.get((ns, name))) else None,
        lambda ns: [name for (n, name) in queues if n == ns],
        host="127.0.0.1", port=0, ssl_context=tls_context(pki.cert, pki.key, auth), auth=auth)
    port = loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{port}", queues[("ocr", "pool")]
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


@pytest.fixture
def adapter(server, pki):
    """A client as the aggregator is: the serving CA trusted, its request-header client cert."""
    url, queue = server
    with httpx.Client(base_url=url, verify=pki.aggregator, timeout=5) as client:
        yield client, queue


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


def test_only_the_aggregator_is_answered_and_names_cannot_steer_a_path(server, pki):
    """Without a client certificate, or with one of another CA, metrics are refused; probes
    still answer; a ``../`` in a label value is a 400, never a lookup."""
    url, _ = server
    metric = f"{BASE}/namespaces/ocr/ocrfleet_queue_depth"
    with httpx.Client(base_url=url, verify=pki.anonymous, timeout=5) as anonymous:
        refused = anonymous.get(metric, params={"labelSelector": "ocrfleet.io/cluster=pool"})
        assert refused.status_code == 401 and "aggregator" in refused.json()["message"]
        assert anonymous.get(BASE).status_code == 401
        assert anonymous.get("/healthz").status_code == 200
    with (pytest.raises((httpx.TransportError, ssl.SSLError)),  # a cert of another CA fails the handshake
          httpx.Client(base_url=url, verify=pki.intruder, timeout=5) as intruder):
        intruder.get(metric)
    with httpx.Client(base_url=url, verify=pki.aggregator, timeout=5) as aggregator:
        for selector in ("ocrfleet.io/cluster=../../secrets/operator-token", "ocrfleet.io/cluster=a%2Fb"):
            r = aggregator.get(metric, params={"labelSelector": selector})
            assert r.status_code == 400 and "not a Kubernetes name" in r.json()["message"], r.text
        assert aggregator.get(f"{BASE}/namespaces/..%2Fkube-system/ocrfleet_queue_depth").status_code in (400, 404)
