"""The real node runs pods, reaches Services by name, keeps its traffic on the machine, and leaves no trace.

Each lifecycle test here starts its own cluster with a real node, after a snapshot of the host
(processes, mounts, network namespaces, links, addresses, routes, rules, nftables/iptables
rules, cgroups, sysctls, host directories), and compares the snapshot after ``delete()``.
These tests run before any test that uses the session's ``real_cluster`` (one real node per
machine: its bridge and ranges are fixed), see ``conftest.py``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest
from ocrfleet_dev.localproc import ServiceError

from e2e import node as real
from e2e.cluster import build_tools, temporary_cluster
from e2e.operator_helpers import report

PROBE_IMAGE = "localhost/ocrfleet/probe:test"
NODE_PROGRAMS = ("containerd", "containerd-shim", "kubelet", "kube-proxy", "coredns", "pause", "probe")
# podman's own storage and runtime state: image builds may run beside these tests and mount there
PODMAN_PATHS = ("/var/lib/containers/", "/run/containers/", "/run/libpod/", "/var/tmp/")
HOST_DIRS = (*real.HOST_PATHS, "/opt/containerd", "/var/lib/containerd", "/var/lib/kubelet", "/etc/cni",
             "/opt/cni", "/var/log/pods", "/usr/libexec/kubernetes")


# -- what the host looks like ---------------------------------------------------------------------

def _out(*argv: str) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30).stdout


def _node_processes() -> set[tuple[int, str]]:
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if Path(argv[0]).name.startswith(NODE_PROGRAMS) or "e2e.node" in argv:
            found.add((int(pid), " ".join(argv)))
    return found


def host_snapshot() -> dict[str, object]:
    """Everything a real node's start could add to the machine, in comparable form."""
    no_counters = re.compile(r"\[\d+:\d+\]|counter packets \d+ bytes \d+")
    return {
        "processes": _node_processes(),
        "mounts": sorted(point for point in (line.split()[4] for line in Path("/proc/self/mountinfo").read_text()
                                             .splitlines()) if not point.startswith(PODMAN_PATHS)),
        "netns": sorted(_out("ip", "netns", "list").split()),
        "links": sorted(line.split(":")[1].strip().split("@")[0] for line in _out("ip", "-o", "link").splitlines()),
        "addresses": sorted(" ".join(line.split()[1:4]) for line in _out("ip", "-o", "addr").splitlines()),
        "routes": _out("ip", "route", "show", "table", "all"),
        "rules": _out("ip", "rule"),
        "nft": no_counters.sub("", _out("nft", "list", "ruleset")),
        "iptables": [line for t in ("iptables-save", "ip6tables-save") if shutil.which(t)
                     for line in no_counters.sub("", _out(t)).splitlines() if not line.startswith("#")],
        "cgroups": sorted(str(p) for p in Path("/sys/fs/cgroup").glob("*/*") if p.is_dir()),
        "sysctls": {name: real.read_sysctl(name) for name in (*real.SYSCTLS, "net/ipv4/conf/all/forwarding",
                                                               "net/ipv4/conf/eth0/forwarding")},
        "host dirs": {d: sorted(os.listdir(d)) if os.path.isdir(d) else None for d in HOST_DIRS},
    }


def assert_same_host(before: dict, after: dict) -> None:
    changed = {k: {"before": before[k], "after": after[k]} for k in before if before[k] != after[k]}
    assert not changed, "the real node left something behind:\n" + json.dumps(changed, indent=1, default=str)




# -- a workload ---------------------------------------------------------------------------------

def probe_archive(directory: Path) -> Path:
    """The probe program (e2e/tools/pause/probe) as a one-layer image archive."""
    archive = directory / "probe.tar"
    binary = build_tools() / "probe"
    archive.write_bytes(real.docker_archive({"probe": (binary.read_bytes(), 0o755)}, tag=PROBE_IMAGE,
                                            entrypoint=["/probe"]))
    return archive


def client_pod(namespace: str, name: str, url: str, image: str = PROBE_IMAGE) -> str:
    """A pod on the real node that GETs ``url`` once it resolves (``probe get``)."""
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
                       "spec": {"nodeSelector": {"ocrfleet.io/node": "real"}, "restartPolicy": "Never",
                                "terminationGracePeriodSeconds": 1, "containers": [{
                                    "name": name, "image": image, "imagePullPolicy": "Never",
                                    "args": ["get", url]}]}})


def web_manifests(namespace: str, image: str = PROBE_IMAGE) -> tuple[str, str]:
    on_real_node = {"nodeSelector": {"ocrfleet.io/node": "real"}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": namespace,
                                                            "labels": {"app": "web"}},
           "spec": on_real_node | {"terminationGracePeriodSeconds": 1, "containers": [{
               "name": "web", "image": image, "imagePullPolicy": "Never", "args": ["serve", ":8080"],
               "ports": [{"containerPort": 8080}],
               "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1}}]}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": namespace},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}
    return (json.dumps({"apiVersion": "v1", "kind": "List", "items": [pod, service]}),
            client_pod(namespace, "client", "http://web/", image))


def _get(url: str, timeout: float = 3) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read().decode()


def _get_eventually(url: str, within: float = 20) -> str:
    """GET a Service: kube-proxy programs its endpoints a moment after the pod is Ready (refused until then)."""
    deadline = time.monotonic() + within
    while True:
        try:
            return _get(url)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _wait_phase(cluster, namespace: str, pod: str, phase: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = cluster.kubectl("get", "pod", pod, "-n", namespace, "-o", "jsonpath={.status.phase}", check=False)
        if now == phase:
            return
        if now == "Failed":
            break
        time.sleep(0.5)
    raise AssertionError(f"pod {pod} is {now}, not {phase}:\n" + cluster.kubectl(
        "describe", "pod", pod, "-n", namespace, check=False) + cluster.kubectl(
        "logs", pod, "-n", namespace, check=False))


# -- tests --------------------------------------------------------------------------------------

@pytest.mark.owns_real_node
def test_a_pod_on_the_real_node_serves_reaches_a_service_by_name_and_nothing_is_left(tmp_path, request):
    before = host_snapshot()
    cluster = temporary_cluster("real-node", real_node=True)
    try:
        cluster.create()
        node = cluster.node
        report(request, f"cluster with a real node started in {cluster.started_in:.1f} s (real node: "
               + ", ".join(f"{k} {v:.1f} s" for k, v in node.timings.items()) + ")")

        info = json.loads(cluster.kubectl("get", "node", real.NODE_NAME, "-o", "json"))
        assert info["metadata"]["labels"]["ocrfleet.io/node"] == "real"
        assert "kwok.x-k8s.io/node" not in info["metadata"].get("annotations", {})
        assert "nvidia.com/gpu" not in info["status"]["capacity"]
        assert info["status"]["nodeInfo"]["kubeletVersion"] == "v1.37.2"
        assert {"type": "InternalIP", "address": real.NODE_IP} in info["status"]["addresses"]

        archive = probe_archive(tmp_path)
        t0 = time.monotonic()
        cluster.load_docker_image(archive, PROBE_IMAGE)
        report(request, f"probe image loaded in {time.monotonic() - t0:.2f} s")
        assert cluster.load_docker_image(archive, PROBE_IMAGE) is False  # same id: skipped

        cluster.kubectl("create", "namespace", "probe")
        web, client = web_manifests("probe")
        cluster.kubectl("apply", "-f", "-", input=web)
        cluster.kubectl("wait", "--for=condition=Ready", "pod/web", "-n", "probe", "--timeout=90s", timeout=100)
        pod_ip = cluster.kubectl("get", "pod", "web", "-n", "probe", "-o", "jsonpath={.status.podIP}")
        assert ipaddress.ip_address(pod_ip) in ipaddress.ip_network(real.POD_SUBNET)

        # from the host: the pod on the bridge, and the Service's ClusterIP (kube-proxy)
        assert _get(f"http://{pod_ip}:8080/") == "hello from web\n"
        cluster_ip = cluster.kubectl("get", "service", "web", "-n", "probe", "-o", "jsonpath={.spec.clusterIP}")
        assert ipaddress.ip_address(cluster_ip) in ipaddress.ip_network(real.SERVICE_RANGE)
        assert _get_eventually(node.service_url(cluster_ip, 80)) == "hello from web\n"

        # from a pod: "web" resolves through cluster DNS, kube-proxy takes it to the pod; logs come via the kubelet
        cluster.kubectl("apply", "-f", "-", input=client)
        _wait_phase(cluster, "probe", "client", "Succeeded")
        assert cluster.kubectl("logs", "client", "-n", "probe") == "hello from web\n"

        # the API server from a pod, as an in-cluster client: the kubernetes Service, CA and token
        cluster.kubectl("apply", "-f", "-", input=client_pod("probe", "api", "https://kubernetes.default.svc/version"))
        _wait_phase(cluster, "probe", "api", "Succeeded")
        assert json.loads(cluster.kubectl("logs", "api", "-n", "probe"))["gitVersion"] == "v1.37.2"

        assert_confined(pod_ip, node.directory)
        assert_pulls_stay_on_the_machine(cluster)
    finally:
        cluster.delete()
    assert_same_host(before, host_snapshot())


def pod_network_namespaces(node_dir: Path) -> list[str]:
    """The pods' network namespaces: containerd's nsfs bind mounts under the node's state directory."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[fields.index("-") + 1] == "nsfs" and fields[4].startswith(f"{node_dir}/"):
            found.append(fields[4])
    return found


def assert_confined(pod_ip: str, node_dir: Path) -> None:
    """Routes end at the bridge, unreachable covers the rest, nothing from the ranges leaves by eth0."""
    # inside each pod: its subnet and the Service range via the node, no default route
    namespaces = pod_network_namespaces(node_dir)
    assert namespaces
    for netns in namespaces:
        routes = sorted(r.split(" proto ")[0].split(" src ")[0].strip()
                        for r in _out("nsenter", f"--net={netns}", "ip", "route").splitlines())
        assert routes == [f"{real.POD_SUBNET} dev eth0", f"{real.SERVICE_RANGE} via {real.NODE_IP} dev eth0"], routes
        lookup = subprocess.run(["nsenter", f"--net={netns}", "ip", "route", "get", "192.0.2.1"],
                                capture_output=True, text=True)
        assert "Network is unreachable" in lookup.stderr, lookup.stdout
    # on the host, for what arrives on the bridge
    routes = _out("ip", "route", "show")
    assert re.search(rf"^{re.escape(real.POD_SUBNET)} dev {real.BRIDGE} ", routes, re.M), routes
    assert re.search(rf"^{re.escape(real.SERVICE_RANGE)} dev {real.BRIDGE} ", routes, re.M), routes
    for cidr in real.CONFINED_RANGES:
        assert re.search(rf"^unreachable {re.escape(cidr.removesuffix('/32'))}\s*$", routes, re.M), routes
    # what a pod sends anywhere but the bridge has no route (a lookup: nothing is sent)
    for outside in ("192.0.2.1", "192.0.2.3", "1.1.1.1", "10.0.0.1"):
        lookup = subprocess.run(["ip", "route", "get", outside, "from", pod_ip, "iif", real.BRIDGE],
                                capture_output=True, text=True)
        assert lookup.returncode != 0 and "No route to host" in lookup.stderr, (outside, lookup.stdout)
    for inside in ("10.213.9.9", "10.214.7.7", "10.244.0.5"):
        assert subprocess.run(["ip", "route", "get", inside], capture_output=True).returncode != 0, inside
    assert real.read_sysctl("net/ipv4/ip_forward") == "0"
    # no masquerade towards eth0, and the confinement chain drops the ranges on any other way out
    ruleset = _out("nft", "list", "ruleset")
    for line in ruleset.splitlines():
        assert not ("masquerade" in line and "eth0" in line), line
    assert "MASQUERADE" not in "".join(_out(t) for t in ("iptables-save", "ip6tables-save") if shutil.which(t))
    chain = _out("nft", "list", "chain", "ip", real.NFT_TABLE, "confine")
    assert "hook postrouting priority mangle" in chain and f'oifname {{ "lo", "{real.BRIDGE}" }} accept' in chain
    assert chain.count(" drop") == 4


def assert_pulls_stay_on_the_machine(cluster) -> None:
    """A missing image makes containerd pull: the request reaches the loopback proxy and nothing else.

    The registry's address is one of the bridge's that no pod gets, so even a pull that ignored
    the proxy would stay on the machine.
    """
    registry = f"{real._nth(real.POD_SUBNET, 251)}:5000"
    proxy = real.PULL_PROXY.removeprefix("http://").split(":")
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((proxy[0], int(proxy[1])))
        server.listen()
        server.settimeout(60)
        cluster.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pull", "namespace": "probe"},
            "spec": {"nodeSelector": {"ocrfleet.io/node": "real"}, "containers": [{
                "name": "pull", "image": f"{registry}/nothing:1", "imagePullPolicy": "Always"}]}}))
        conn, _ = server.accept()
        with conn:
            conn.settimeout(5)
            request = conn.recv(4096).split(b"\r\n")[0].decode()
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    assert request == f"CONNECT {registry} HTTP/1.1"


@pytest.mark.owns_real_node
def test_a_node_component_that_cannot_start_fails_with_its_log_and_leaves_nothing():
    before = host_snapshot()
    cluster = temporary_cluster("real-node-broken", real_node=True, extra_args={"kubelet": ["--no-such-flag=1"]})
    with pytest.raises(ServiceError) as excinfo:
        cluster.create()
    message = str(excinfo.value)
    assert "kubelet exited" in message and "unknown flag: --no-such-flag" in message
    assert not cluster.directory.exists()
    assert_same_host(before, host_snapshot())


def test_the_real_cluster_takes_a_podman_archive(real_cluster, tmp_path):
    """What ``make images`` hands over: ``podman save --format docker-archive`` of a local image."""
    archive = probe_archive(tmp_path)
    rootfs = tmp_path / "rootfs.tar"
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))[0]
        rootfs.write_bytes(outer.extractfile(manifest["Layers"][0]).read())
    name = "localhost/ocrfleet/probe:podman"
    subprocess.run(["podman", "import", "--change", 'ENTRYPOINT ["/probe"]', str(rootfs), name],
                   check=True, capture_output=True, timeout=120)
    try:
        saved = tmp_path / "saved.tar"
        subprocess.run(["podman", "save", "--format", "docker-archive", "-o", str(saved), name],
                       check=True, capture_output=True, timeout=120)
    finally:
        subprocess.run(["podman", "rmi", "-f", name], capture_output=True, timeout=60)
    real_cluster.load_docker_image(saved, name)
    assert real_cluster.node.image_id(name) == real.archive_image_id(saved)
    assert real_cluster.load_docker_image(saved, name) is False
    real_cluster.kubectl("create", "namespace", "podman-image")
    web, _ = web_manifests("podman-image", image=name)
    real_cluster.kubectl("apply", "-f", "-", input=web)
    real_cluster.kubectl("wait", "--for=condition=Ready", "pod/web", "-n", "podman-image", "--timeout=90s",
                         timeout=100)
    with real_cluster.port_forward("pod/web", 8080, "-n", "podman-image") as port:  # API server -> kubelet -> pod
        assert _get(f"http://127.0.0.1:{port}/") == "hello from web\n"
    real_cluster.kubectl("delete", "namespace", "podman-image", "--wait=false")
