"""A real Kubernetes node on this machine, beside the kwok fakes: pods built from our images really run.

The node is upstream kubelet and kube-proxy (built by ``e2e/tools/build.sh`` from the same
pinned module as the control plane), Debian's containerd + runc + CNI plugins, and CoreDNS as
cluster DNS. It registers as ``real-0`` with the label ``ocrfleet.io/node=real`` and no GPU;
kwok manages only nodes annotated ``kwok.x-k8s.io/node=fake``, so it leaves this one alone.

The network is private to the machine and built so that nothing can leave it:

* a bridge ``ocrfleet0`` carries the node's own address (:data:`NODE_IP`, the pods' gateway)
  and the node's pod subnet; the kernel here has no dummy interfaces, so the bridge is the
  node's interface;
* pods get an address from :data:`POD_SUBNET` and only two routes (their subnet, and the
  Service range via the node): no default route;
* kube-proxy (nftables mode) turns Service IPs from :data:`SERVICE_RANGE` into pod addresses;
* ``unreachable`` routes cover the rest of the pod and Service ranges (and kwok's fake pod and
  node addresses, which kube-proxy would otherwise route out of the default route), packets
  that arrive on the bridge are routed by a table whose only other answer is ``unreachable``,
  and an nftables chain drops anything from or to these ranges that would leave by any
  interface but the bridge or loopback. There is no masquerade rule. ``ip_forward`` stays 0:
  forwarding is switched on for the bridge alone.

Cluster DNS is CoreDNS as a host process bound to the node address; a selector-less
``kube-dns`` Service in kube-system (ClusterIP :data:`DNS_SERVICE_IP`, the kubelet's
``clusterDNS``) points at it. It answers cluster names only and forwards nothing.

Pods reach the API server as in any cluster, through the ``kubernetes`` Service
(:data:`KUBERNETES_SERVICE_IP`, in the serving cert): the API server listens on loopback only,
so a small relay (``python -m e2e.node relay``) listens on the node address and its
EndpointSlice gives the Service that endpoint.

Tests reach pods and Services from the host directly: a pod IP (on the bridge) or a
ClusterIP (kube-proxy's output chain translates it) answers from this machine, see
:meth:`RealNode.service_url`. Images come in as archives (``podman save --format
docker-archive``) through :meth:`RealNode.load_image`; pods use ``imagePullPolicy: Never`` or
``IfNotPresent`` with ``localhost/...`` names. A pull that happens anyway goes to a loopback
proxy where nothing listens (:data:`PULL_PROXY`): it fails, and nothing leaves the machine.

:meth:`RealNode.stop` leaves nothing behind: pods are deleted through the API (the kubelet
unmounts their volumes and tears down their network), then every process is stopped and any
container, mount, network namespace, cgroup, link, route, rule, nftables table and sysctl that
the start created is removed or restored. It works from ``node.json`` alone, so ``python -m
e2e.cluster down`` in another process cleans up the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from ocrfleet_dev.localproc import LocalProcess, ServiceError, find_binary, free_port, process_alive

from e2e.certs import _leaf

NODE_NAME = "real-0"
NODE_LABELS = {"ocrfleet.io/node": "real"}

# -- addresses: nothing else on this machine uses them (eth0 is 192.0.2.2/24; kwok fakes 10.244/16, 10.255.0.1)
BRIDGE = "ocrfleet0"
POD_RANGE = "10.213.0.0/16"        # the cluster's pod range (kube-proxy's clusterCIDR), unreachable but its subnet
POD_SUBNET = "10.213.0.0/24"       # this node's pods, on the bridge
NODE_IP = "10.213.0.1"             # the node's InternalIP and the pods' gateway, on the bridge
SERVICE_RANGE = "10.214.0.0/24"    # kube-apiserver --service-cluster-ip-range
SERVICE_RESERVE = "10.214.0.0/16"  # unreachable around the Service range
KUBERNETES_SERVICE_IP = "10.214.0.1"
DNS_SERVICE_IP = "10.214.0.10"
KWOK_FAKE_RANGES = ("10.244.0.0/16", "10.255.0.1/32")  # kwok's made-up pod and node addresses
CONFINED_RANGES = (POD_RANGE, SERVICE_RESERVE, *KWOK_FAKE_RANGES)
ROUTE_TABLE = 213                  # routes for packets that arrive on the bridge
RULE_PRIORITY = 2130
NFT_TABLE = "ocrfleet-node"        # table ip ocrfleet-node: the confinement chain
KUBE_PROXY_TABLES = (("ip", "kube-proxy"), ("ip6", "kube-proxy"))
# with cgroupsPerQOS off the kubelet gives no cgroup parent and containerd puts each container in
# /<its namespace>/<id> under every hierarchy; the kubelet's cgroupRoot is not used then
CGROUP_PARENT = NAMESPACE = "k8s.io"

PAUSE_IMAGE = "localhost/ocrfleet/pause:1"
# containerd's pulls go to this proxy, where nothing listens: no DNS lookup, no connection leaves the machine
PULL_PROXY = "http://127.0.0.1:9"
CNI_BIN = Path("/usr/lib/cni")     # Debian's containernetworking-plugins
RUNC = "/usr/sbin/runc"

# sysctls that start may change (the kubelet sets the kernel tunables unless they already hold); restored at stop
SYSCTLS = ("vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
           "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes", "net/ipv4/ip_forward",
           "net/bridge/bridge-nf-call-iptables", "net/ipv4/conf/all/route_localnet")
# host paths outside our directories that the components create if they are missing (the kubelet's
# device-plugin manager uses /var/lib/kubelet/device-plugins whatever its --root-dir)
HOST_PATHS = ("/var/log/containers", "/var/lib/cni", "/run/containerd", "/var/run/netns", "/run/netns",
              "/var/lib/kubelet/device-plugins", "/var/lib/kubelet")


# -- configuration files (pure) -------------------------------------------------------------------

def containerd_config(*, root: Path, state: Path, socket: Path, cni_conf_dir: Path, registry_dir: Path) -> str:
    """containerd's TOML: private root/state/socket, CRI with runc (cgroupfs) and the local pause image."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{root}"
state = "{state}"
# no /opt/containerd, no snapshotters this machine lacks, no tracing
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  # the pause container's negative oom_score_adj needs CAP_SYS_RESOURCE, which this machine withholds
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        BinaryName = "{RUNC}"
        Root = "{state / 'runc'}"
        SystemdCgroup = false
  [{cri}.cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{cni_conf_dir}"
    max_conf_num = 1
  [{cri}.registry]
    # docker.io (the default registry) resolves to a closed loopback port; containerd 1.6 has no
    # _default hosts.toml, so every other registry goes through PULL_PROXY (containerd's environment)
    config_path = "{registry_dir}"
"""


def registry_hosts() -> str:
    """hosts.toml that sends a registry's pulls to a loopback port where nothing listens."""
    return 'server = "http://127.0.0.1:9"\n\n[host."http://127.0.0.1:9"]\n  capabilities = ["pull", "resolve"]\n'


def cni_config(ipam_dir: Path) -> dict:
    """bridge + host-local + portmap: pods on the bridge, their only routes the subnet and the Service range."""
    gateway = NODE_IP
    return {
        "cniVersion": "1.0.0", "name": "ocrfleet",
        "plugins": [
            {"type": "bridge", "bridge": BRIDGE, "isGateway": False, "isDefaultGateway": False,
             "ipMasq": False, "hairpinMode": True,
             "ipam": {"type": "host-local", "dataDir": str(ipam_dir),
                      "ranges": [[{"subnet": POD_SUBNET, "rangeStart": _nth(POD_SUBNET, 10),
                                   "rangeEnd": _nth(POD_SUBNET, 250), "gateway": gateway}]],
                      "routes": [{"dst": SERVICE_RANGE, "gw": gateway}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": False},
        ],
    }


def kubelet_config(*, port: int, healthz_port: int, socket: Path, pki: Path, node_pki: Path,
                   pod_logs: Path, plugins: Path) -> dict:
    """KubeletConfiguration for a node in a Firecracker VM with hybrid cgroups and no CAP_SYS_RESOURCE."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "address": NODE_IP, "port": port, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": healthz_port,
        "tlsCertFile": str(node_pki / "kubelet.crt"), "tlsPrivateKeyFile": str(node_pki / "kubelet.key"),
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True, "cacheTTL": "30s"},
                           "x509": {"clientCAFile": str(pki / "ca.crt")}},
        "authorization": {"mode": "Webhook", "webhook": {"cacheAuthorizedTTL": "30s",
                                                         "cacheUnauthorizedTTL": "5s"}},
        "containerRuntimeEndpoint": f"unix://{socket}", "imageServiceEndpoint": f"unix://{socket}",
        "failCgroupV1": False, "cgroupDriver": "cgroupfs", "cgroupsPerQOS": False, "enforceNodeAllocatable": [],
        "failSwapOn": False, "evictionHard": {}, "localStorageCapacityIsolation": False,
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "oomScoreAdj": 0, "protectKernelDefaults": False,
        "clusterDNS": [DNS_SERVICE_IP], "clusterDomain": "cluster.local", "resolvConf": "",
        "podLogsDir": str(pod_logs), "volumePluginDir": str(plugins),
        "maxPods": 110, "serializeImagePulls": False,
        "nodeStatusUpdateFrequency": "5s", "syncFrequency": "10s",
    }


def kube_proxy_config(*, kubeconfig: Path, healthz_port: int, metrics_port: int) -> dict:
    """KubeProxyConfiguration: nftables mode, NodePorts on the node address only, conntrack left as it is."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "mode": "nftables", "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE_NAME, "bindAddress": NODE_IP,
        "healthzBindAddress": f"127.0.0.1:{healthz_port}", "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "clusterCIDR": POD_RANGE, "detectLocalMode": "ClusterCIDR",
        "nodePortAddresses": [f"{NODE_IP}/32"], "oomScoreAdj": 0,
        # zero means "leave the kernel's value": kube-proxy changes no conntrack sysctl
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s",
                      "udpTimeout": "0s", "udpStreamTimeout": "0s"},
        "nftables": {"syncPeriod": "30s", "minSyncPeriod": "0s"},
    }


def corefile(*, kubeconfig: Path, context: str, health_port: int, ready_port: int) -> str:
    """Cluster names from the API server; every other name is refused, never forwarded."""
    return f"""cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {{
    bind {NODE_IP}
    errors
    health 127.0.0.1:{health_port}
    ready 127.0.0.1:{ready_port}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} {context}
        pods insecure
        ttl 5
    }}
    cache 5
}}
.:53 {{
    bind {NODE_IP}
    errors
}}
"""


def confinement_ruleset() -> str:
    """nft script: drop whatever comes from or goes to the node's ranges unless it leaves by the bridge or lo."""
    ranges = ", ".join(CONFINED_RANGES)
    return f"""table ip {NFT_TABLE} {{
  chain confine {{
    type filter hook postrouting priority -150; policy accept;
    oifname {{ "lo", "{BRIDGE}" }} accept
    ip saddr {{ {ranges} }} counter drop
    ip daddr {{ {ranges} }} counter drop
    ct original ip saddr {{ {ranges} }} counter drop
    ct original ip daddr {{ {ranges} }} counter drop
  }}
}}
"""


def dns_service_manifests() -> dict:
    """kube-dns: a Service without selector and the EndpointSlice that points it at CoreDNS on the node."""
    ports = [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]
    return {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
         "spec": {"clusterIP": DNS_SERVICE_IP, "ports": [p | {"targetPort": 53} for p in ports]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "kube-dns-node", "namespace": "kube-system",
                      "labels": {"kubernetes.io/service-name": "kube-dns",
                                 "endpointslice.kubernetes.io/managed-by": "ocrfleet.io-real-node"}},
         "addressType": "IPv4",
         "endpoints": [{"addresses": [NODE_IP], "conditions": {"ready": True}, "nodeName": NODE_NAME}],
         "ports": ports},
    ]}


def kubernetes_endpoints(port: int) -> dict:
    """The ``kubernetes`` Service's endpoint (the API server has none: --endpoint-reconciler-type=none)."""
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes-node", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "kubernetes",
                                    "endpointslice.kubernetes.io/managed-by": "ocrfleet.io-real-node"}},
            "addressType": "IPv4", "endpoints": [{"addresses": [NODE_IP], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}


def _nth(cidr: str, n: int) -> str:
    return str(ipaddress.ip_network(cidr)[n])


# -- images (pure) ---------------------------------------------------------------------------------

def docker_archive(files: dict[str, tuple[bytes, int]], *, tag: str, entrypoint: list[str]) -> bytes:
    """A one-layer image as ``docker save`` writes it, byte-for-byte reproducible (same input, same id)."""
    layer = _tar({name: (data, mode) for name, (data, mode) in files.items()})
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": entrypoint, "Env": ["PATH=/"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "e2e/node.py docker_archive"}],
    }, sort_keys=True).encode()
    config_hex = hashlib.sha256(config).hexdigest()
    layer_path = f"{diff_id[7:]}/layer.tar"
    manifest = json.dumps([{"Config": f"{config_hex}.json", "RepoTags": [tag], "Layers": [layer_path]}]).encode()
    return _tar({f"{config_hex}.json": (config, 0o644), layer_path: (layer, 0o644), "manifest.json": (manifest, 0o644)})


def _tar(files: dict[str, tuple[bytes, int]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, (data, mode) in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def archive_image_id(archive: Path) -> str:
    """The image id (config digest) of a docker-archive or OCI archive, read from the archive itself."""
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        if "manifest.json" in names:
            config = json.load(tar.extractfile("manifest.json"))[0]["Config"]
            if config.startswith("blobs/sha256/"):
                return "sha256:" + config.rsplit("/", 1)[1]
            return "sha256:" + config.removesuffix(".json")
        if "index.json" in names:
            manifest = json.load(tar.extractfile("index.json"))["manifests"][0]["digest"]
            blob = json.load(tar.extractfile(f"blobs/sha256/{manifest.split(':', 1)[1]}"))
            if "manifests" in blob:  # an index in the index
                inner = blob["manifests"][0]["digest"].split(":", 1)[1]
                blob = json.load(tar.extractfile(f"blobs/sha256/{inner}"))
            return blob["config"]["digest"]
    raise ServiceError(f"{archive} is neither a docker-archive nor an OCI archive")


# -- the host: commands, sysctls, mounts, processes ----------------------------------------------

def sh(*argv: str, check: bool = True, input: str | None = None, timeout: float = 60) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, input=input, timeout=timeout)
    if check and proc.returncode != 0:
        raise ServiceError(f"{' '.join(argv)} failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


def read_sysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys", name).read_text().strip()
    except OSError:
        return None


def write_sysctl(name: str, value: str) -> None:
    Path("/proc/sys", name).write_text(value + "\n")


def mounts_under(*roots: Path) -> list[str]:
    """Mount points at or below any of ``roots``, deepest first (so they unmount in order)."""
    prefixes = [str(r.resolve()) for r in roots if r]
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == p or point.startswith(p + "/") for p in prefixes):
            found.append(point)
    return sorted(set(found), key=lambda p: -p.count("/"))


def pids_mentioning(needle: str) -> list[int]:
    """Processes whose command line contains ``needle`` (our socket or directory path)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                found.append(int(entry))
    return found


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def cgroup_children() -> dict[str, list[str] | None]:
    """The containers' cgroup parent in every mounted hierarchy: its children, or None where it is absent."""
    root = Path("/sys/fs/cgroup")
    found: dict[str, list[str] | None] = {}
    for hierarchy in sorted(root.iterdir()) if root.is_dir() else []:
        parent = hierarchy / CGROUP_PARENT
        found[str(parent)] = sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else None
    return found


def remove_new_cgroups(before: dict[str, list[str] | None]) -> None:
    """Remove the container cgroups that appeared since ``before``, and the parent if start made it."""
    for parent, children in cgroup_children().items():
        if children is None:
            continue
        existed = before.get(parent)
        for child in children:
            if existed is None or child not in existed:
                remove_cgroup_tree(Path(parent) / child)
        if existed is None:
            remove_cgroup_tree(Path(parent))


def remove_cgroup_tree(top: Path) -> None:
    """rmdir a cgroup tree bottom-up (cgroup directories cannot be removed with their files)."""
    for path in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            path.rmdir()
    with contextlib.suppress(OSError):
        top.rmdir()


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def bridge_ports(bridge: str) -> list[str]:
    brif = Path("/sys/class/net", bridge, "brif")
    return sorted(p.name for p in brif.iterdir()) if brif.is_dir() else []


# -- the node ---------------------------------------------------------------------------------------

class RealNode:
    """kubelet + containerd + kube-proxy + CoreDNS on the bridge network, for one LocalCluster.

    ``directory`` holds everything of this node (configs, logs, kubelet root, containerd
    state, ``node.json``); containerd's root (images, snapshots) lives in ``image_store`` so
    imported images survive from one cluster to the next.
    """

    def __init__(self, directory: Path, *, bin_dir: Path, pki: Path, kubeconfig: Path, context: str,
                 kubectl: Callable[..., str], image_store: Path,
                 extra_args: dict[str, list[str]] | None = None) -> None:
        self.directory = Path(directory)
        self.bin = Path(bin_dir)
        self.pki = Path(pki)
        self.kubeconfig = Path(kubeconfig)
        self.context = context
        self.kubectl = kubectl
        self.image_store = Path(image_store)
        self.extra_args = extra_args or {}
        self.socket = self.directory / "containerd" / "containerd.sock"
        self.processes: dict[str, LocalProcess] = {}
        self.ports: dict[str, int] = {}
        self.timings: dict[str, float] = {}

    # -- what tests use ------------------------------------------------------------------------

    def ctr(self, *args: str, timeout: float = 300) -> str:
        return sh(find_binary("ctr", "/usr/bin/ctr"), f"--address={self.socket}", "-n", NAMESPACE, *args,
                  timeout=timeout)

    def image_id(self, name: str) -> str | None:
        """The config digest of image ``name`` in the node's containerd, or None."""
        for line in self.ctr("images", "ls").splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == name:
                manifest = json.loads(self.ctr("content", "get", fields[2]))
                if "manifests" in manifest:  # an index: the first (only) platform
                    manifest = json.loads(self.ctr("content", "get", manifest["manifests"][0]["digest"]))
                return manifest["config"]["digest"]
        return None

    def load_image(self, archive: Path, name: str | None = None) -> bool:
        """Import an image archive (``podman save --format docker-archive``) unless the same image is there.

        ``name`` is the reference pods use (``localhost/ocrfleet-api:dev``); without it, the
        archive's own tag. Returns whether it imported.
        """
        archive = Path(archive)
        wanted = archive_image_id(archive)
        tags = _archive_tags(archive)
        name = name or (tags[0] if tags else None)
        if not name:
            raise ServiceError(f"{archive} has no tag; pass the name pods will use")
        if self.image_id(name) == wanted:
            return False
        self.ctr("images", "import", str(archive), timeout=900)
        if name not in tags:
            source = next((t for t in tags if self.image_id(t) == wanted), None)
            if source is None:
                raise ServiceError(f"imported {archive} but found no image with id {wanted} under {tags}")
            self.ctr("images", "tag", "--force", source, name)
        if self.image_id(name) != wanted:
            raise ServiceError(f"{name} in the node's containerd is not {wanted} after importing {archive}")
        return True

    @staticmethod
    def service_url(cluster_ip: str, port: int, path: str = "/") -> str:
        """How a test on the host reaches a Service: its ClusterIP answers here (kube-proxy's output chain)."""
        return f"http://{cluster_ip}:{port}{path}"

    # -- start ---------------------------------------------------------------------------------

    @staticmethod
    def apiserver_flags(pki: Path) -> list[str]:
        """What kube-apiserver needs to talk to this kubelet: a client cert and the CA of its serving cert."""
        return [f"--kubelet-client-certificate={pki / 'admin.crt'}", f"--kubelet-client-key={pki / 'admin.key'}",
                f"--kubelet-certificate-authority={pki / 'ca.crt'}", "--kubelet-preferred-address-types=InternalIP"]

    def start(self, timeout: float = 120) -> RealNode:
        """Network, containerd, pause image, kubelet, CoreDNS, kube-proxy; returns once the node is Ready."""
        t0 = time.monotonic()
        self._preflight()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._record_host()
        self._phase("network", self._network_up)
        self._write_configs()
        self._phase("containerd", self._start_containerd)
        self._phase("pause image", self._load_pause)
        self.kubectl("apply", "-f", "-", input=json.dumps(dns_service_manifests()))
        api_port = self._apiserver_port()
        relay = self._spawn("api-relay", [sys.executable, "-m", "e2e.node", "relay", f"{NODE_IP}:{api_port}",
                                          f"127.0.0.1:{api_port}"])
        self.kubectl("apply", "-f", "-", input=json.dumps(kubernetes_endpoints(api_port)))
        kubelet = self._spawn("kubelet", [
            str(self.bin / "kubelet"), f"--config={self.directory / 'kubelet.json'}",
            f"--kubeconfig={self.directory / 'kubelet.kubeconfig'}", f"--root-dir={self.directory / 'kubelet'}",
            f"--cert-dir={self.directory / 'kubelet' / 'pki'}", f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_IP}", "--node-labels=" + ",".join(f"{k}={v}" for k, v in NODE_LABELS.items()),
            "--v=1",
        ])
        dns = self._spawn("coredns", [str(self.bin / "coredns"), "-conf", str(self.directory / "Corefile")])
        proxy = self._spawn("kube-proxy", [str(self.bin / "kube-proxy"),
                                           f"--config={self.directory / 'kube-proxy.json'}", "--v=1"])
        # kube-proxy is healthy only once its Node exists: the kubelet first
        self._phase("kubelet", lambda: self._wait_ready(kubelet, self._node_ready, timeout))
        self._phase("coredns", lambda: self._wait_ready(dns, self._http_ok(self.ports["coredns-ready"], "/ready")))
        self._phase("kube-proxy", lambda: self._wait_ready(proxy, self._services_programmed))
        self._wait_ready(relay, lambda: _connects(NODE_IP, api_port), timeout=10)
        self.timings["total"] = time.monotonic() - t0
        return self

    def _wait_ready(self, proc: LocalProcess, ready: Callable[[], bool], timeout: float = 60) -> None:
        """Poll ``ready()``; any node process that exits meanwhile fails the start with its own log tail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for other in self.processes.values():
                if other.proc is not None and other.proc.poll() is not None:
                    raise ServiceError(f"{other.name} exited with {other.proc.returncode}:\n{other.log_tail()}")
            with contextlib.suppress(Exception):
                if ready():
                    return
            time.sleep(0.1)
        raise ServiceError(f"{proc.name} did not become ready in {timeout:.0f} s:\n{proc.log_tail()}")

    def _preflight(self) -> None:
        if os.geteuid() != 0:
            raise ServiceError("the real node needs root (network, mounts, cgroups)")
        for name in ("kubelet", "kube-proxy", "coredns", "pause"):
            if not os.access(self.bin / name, os.X_OK):
                raise ServiceError(f"{self.bin / name} is missing; run e2e/tools/build.sh")
        for binary in ("containerd", "containerd-shim-runc-v2", "ctr", "nft", "ip"):
            find_binary(binary, f"/usr/bin/{binary}", f"/usr/sbin/{binary}")
        for plugin in ("bridge", "host-local", "portmap", "loopback"):
            if not os.access(CNI_BIN / plugin, os.X_OK):
                raise ServiceError(f"CNI plugin {CNI_BIN / plugin} is missing: apt-get install containernetworking-plugins")
        if not os.access(RUNC, os.X_OK):
            raise ServiceError(f"{RUNC} is missing: apt-get install runc")
        if link_exists(BRIDGE):
            owners = sorted({arg.split("=", 1)[1].removesuffix("/node/kubelet") for pid in pids_mentioning(
                f"--hostname-override={NODE_NAME}") for arg in _cmdline(pid) if arg.startswith("--root-dir=")})
            raise ServiceError(f"{BRIDGE} exists: a real node runs here ({', '.join(owners) or 'no kubelet left'}), "
                               "one per machine; `python -m e2e.cluster cleanup` stops every cluster that has one")

    def _phase(self, name: str, step: Callable[[], object]) -> None:
        t0 = time.monotonic()
        step()
        self.timings[name] = time.monotonic() - t0

    def _record_host(self) -> None:
        """Note what is there before start, so that stop restores exactly that (written before any change)."""
        state = {"sysctls": {name: read_sysctl(name) for name in SYSCTLS},
                 "host_paths": [p for p in HOST_PATHS if os.path.lexists(p)],
                 "nft_tables": _nft_tables(), "cgroups": cgroup_children(), "pids": {}, "image_store": str(self.image_store),
                 "socket": str(self.socket)}
        self._save(state)

    def _save(self, state: dict) -> None:
        tmp = self.directory / "node.json.tmp"
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.directory / "node.json")

    def _state(self) -> dict:
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            return json.loads((self.directory / "node.json").read_text())
        return {}

    def _network_up(self) -> None:
        ip = find_binary("ip", "/usr/sbin/ip")
        sh(ip, "link", "add", BRIDGE, "type", "bridge")
        write_sysctl(f"net/ipv6/conf/{BRIDGE}/disable_ipv6", "1")
        sh(ip, "addr", "add", f"{NODE_IP}/{ipaddress.ip_network(POD_SUBNET).prefixlen}", "dev", BRIDGE)
        sh(ip, "link", "set", BRIDGE, "up")
        sh(ip, "route", "add", SERVICE_RANGE, "dev", BRIDGE, "src", NODE_IP)
        for cidr in CONFINED_RANGES:
            sh(ip, "route", "add", "unreachable", cidr)
        # packets that arrive on the bridge: to the bridge again, or nowhere
        sh(ip, "route", "add", POD_SUBNET, "dev", BRIDGE, "src", NODE_IP, "table", str(ROUTE_TABLE))
        sh(ip, "route", "add", SERVICE_RANGE, "dev", BRIDGE, "src", NODE_IP, "table", str(ROUTE_TABLE))
        sh(ip, "route", "add", "unreachable", "default", "table", str(ROUTE_TABLE))
        sh(ip, "rule", "add", "iif", BRIDGE, "lookup", str(ROUTE_TABLE), "priority", str(RULE_PRIORITY))
        sh(find_binary("nft", "/usr/sbin/nft"), "-f", "-", input=confinement_ruleset())
        # pod -> Service -> pod on the same bridge is routed (DNAT), so the bridge forwards; ip_forward stays 0
        write_sysctl(f"net/ipv4/conf/{BRIDGE}/forwarding", "1")
        # replies between pods on the bridge must pass conntrack to be un-DNATed (br_netfilter)
        write_sysctl("net/bridge/bridge-nf-call-iptables", "1")

    def _write_configs(self) -> None:
        d = self.directory
        for sub in ("containerd", "cni/net.d", "cni/ipam", "registry/docker.io", "pki",
                    "pod-logs", "volume-plugins", "path", "kubelet"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        self.image_store.mkdir(parents=True, exist_ok=True)
        (d / "containerd.toml").write_text(containerd_config(
            root=self.image_store, state=d / "containerd" / "state", socket=self.socket,
            cni_conf_dir=d / "cni" / "net.d", registry_dir=d / "registry"))
        (d / "registry" / "docker.io" / "hosts.toml").write_text(registry_hosts())
        (d / "cni" / "net.d" / "10-ocrfleet.conflist").write_text(json.dumps(cni_config(d / "cni" / "ipam"), indent=2))
        self._node_certs()
        self.ports = {k: free_port() for k in ("kubelet", "kubelet-healthz", "kube-proxy-healthz",
                                               "kube-proxy-metrics", "coredns-health", "coredns-ready")}
        (d / "kubelet.json").write_text(json.dumps(kubelet_config(
            port=self.ports["kubelet"], healthz_port=self.ports["kubelet-healthz"], socket=self.socket,
            pki=self.pki, node_pki=d / "pki", pod_logs=d / "pod-logs", plugins=d / "volume-plugins"), indent=2))
        (d / "kube-proxy.json").write_text(json.dumps(kube_proxy_config(
            kubeconfig=self.kubeconfig, healthz_port=self.ports["kube-proxy-healthz"],
            metrics_port=self.ports["kube-proxy-metrics"]), indent=2))
        (d / "Corefile").write_text(corefile(kubeconfig=self.kubeconfig, context=self.context,
                                             health_port=self.ports["coredns-health"],
                                             ready_port=self.ports["coredns-ready"]))
        # the components' PATH: /usr/bin and /bin, plus nft (kube-proxy). No iptables: an nftables-only node
        for tool in ("nft", "conntrack"):
            link = d / "path" / tool
            if not link.exists() and shutil.which(tool):
                link.symlink_to(shutil.which(tool))

    def _node_certs(self) -> None:
        """The kubelet's client cert (system:node:real-0) and serving cert (the node address), from the cluster CA."""
        ca_key = serialization.load_pem_private_key((self.pki / "ca.key").read_bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate((self.pki / "ca.crt").read_bytes())
        node_pki = self.directory / "pki"
        _leaf(node_pki, "kubelet-client", (ca_key, ca_cert), cn=f"system:node:{NODE_NAME}", org="system:nodes",
              client=True)
        _leaf(node_pki, "kubelet", (ca_key, ca_cert), cn=NODE_NAME, server=True, ips=(NODE_IP,), dns=(NODE_NAME,))
        server = json.loads(self.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
        (self.directory / "kubelet.kubeconfig").write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "node",
            "clusters": [{"name": "local", "cluster": {"server": server,
                                                       "certificate-authority": str(self.pki / "ca.crt")}}],
            "users": [{"name": "node", "user": {"client-certificate": str(node_pki / "kubelet-client.crt"),
                                                "client-key": str(node_pki / "kubelet-client.key")}}],
            "contexts": [{"name": "node", "context": {"cluster": "local", "user": "node"}}],
        }, indent=2))

    def _apiserver_port(self) -> int:
        return int(json.loads(self.kubeconfig.read_text())["clusters"][0]["cluster"]["server"].rsplit(":", 1)[1])

    def _env(self) -> dict:
        return {"PATH": f"{self.directory / 'path'}:/usr/local/bin:/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8",
                "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}

    def _spawn(self, name: str, argv: list[str], env: dict | None = None) -> LocalProcess:
        proc = LocalProcess(name, argv + self.extra_args.get(name, []), workdir=self.directory,
                            env=self._env() | (env or {}))
        self.processes[name] = proc
        proc.spawn()
        state = self._state()
        state.setdefault("pids", {})[name] = proc.proc.pid
        self._save(state)
        return proc

    def _start_containerd(self) -> None:
        pulls = {k: PULL_PROXY for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}
        proc = self._spawn("containerd", [find_binary("containerd", "/usr/bin/containerd"),
                                          f"--config={self.directory / 'containerd.toml'}"], env=pulls)
        proc.wait_ready(lambda: self.socket.exists() and bool(self.ctr("version", timeout=5)), timeout=30)
        cri = [line.split() for line in self.ctr("plugins", "ls", timeout=10).splitlines() if " cri " in line]
        if not cri or cri[0][-1] != "ok":
            raise ServiceError(f"containerd's CRI plugin did not load:\n{proc.log_tail()}")

    def _load_pause(self) -> None:
        archive = self.directory / "pause.tar"
        archive.write_bytes(docker_archive({"pause": ((self.bin / "pause").read_bytes(), 0o755)},
                                           tag=PAUSE_IMAGE, entrypoint=["/pause"]))
        self.load_image(archive, PAUSE_IMAGE)

    def _http_ok(self, port: int, path: str) -> Callable[[], bool]:
        return lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1).status == 200

    def _services_programmed(self) -> bool:
        """kube-proxy answers /healthz before its first sync; ready once kube-dns's ClusterIP is in its rules."""
        healthy = self._http_ok(self.ports["kube-proxy-healthz"], "/healthz")()
        cluster_ips = sh(shutil.which("nft") or "/usr/sbin/nft", "list", "set", "ip", "kube-proxy", "cluster-ips",
                         check=False, timeout=10)
        return healthy and DNS_SERVICE_IP in cluster_ips

    def _node_ready(self) -> bool:
        out = self.kubectl("get", "node", NODE_NAME, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                           check=False, timeout=10)
        return out.strip() == "True"

    # -- stop ------------------------------------------------------------------------------------

    def stop(self, *, api_alive: bool = True) -> None:
        """Remove the node and everything its start created; safe to call twice or after a failed start."""
        state = self._state()
        if not state:
            return
        if api_alive:
            self._drain(kubelet_alive=process_alive(state.get("pids", {}).get("kubelet") or 0))
        pids = state.get("pids", {})
        for name in ("kube-proxy", "coredns", "api-relay", "kubelet"):
            self._stop_process(name, pids.get(name))
        self._remove_containers()
        self._stop_process("containerd", pids.get("containerd"))
        socket = state.get("socket", str(self.socket))
        self._kill_leftovers([socket, str(self.directory)])
        for point in mounts_under(self.directory, Path(state.get("image_store", self.image_store))):
            subprocess.run(["umount", "-l", point], capture_output=True)
        remove_new_cgroups(state.get("cgroups", {}))
        self._network_down(state)
        self._restore_host(state)
        (self.directory / "node.json").unlink(missing_ok=True)

    def _drain(self, kubelet_alive: bool) -> None:
        """Delete the node's pods through the API and wait for the kubelet to finish them (bounded)."""
        with contextlib.suppress(Exception):
            self.kubectl("delete", "pods", "--all-namespaces", f"--field-selector=spec.nodeName={NODE_NAME}",
                         "--grace-period=1", "--wait=false", check=False, timeout=30)
            deadline = time.monotonic() + (60 if kubelet_alive else 0)
            while time.monotonic() < deadline:
                left = self.kubectl("get", "pods", "--all-namespaces", f"--field-selector=spec.nodeName={NODE_NAME}",
                                    "-o", "name", check=False, timeout=10)
                if not left.strip():
                    break
                time.sleep(0.5)
            self.kubectl("delete", "node", NODE_NAME, "--wait=false", check=False, timeout=30)
            manifests = dns_service_manifests()
            manifests["items"].append(kubernetes_endpoints(0))
            self.kubectl("delete", "-f", "-", "--ignore-not-found", "--wait=false", check=False, timeout=30,
                         input=json.dumps(manifests))

    def _stop_process(self, name: str, pid: int | None) -> None:
        proc = self.processes.pop(name, None)
        if proc is not None:
            proc.stop(timeout=15)
            return
        if pid:
            _stop_group(pid)

    def _remove_containers(self) -> None:
        """Whatever the kubelet left in containerd (a failed start, a killed kubelet): kill and remove it."""
        if not self.socket.exists():
            return
        with contextlib.suppress(ServiceError, subprocess.TimeoutExpired):
            for task in self.ctr("tasks", "ls", "-q", timeout=20).split():
                self.ctr("tasks", "kill", "-s", "SIGKILL", task, timeout=20)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and self.ctr("tasks", "ls", "-q", timeout=20).split():
                for task in self.ctr("tasks", "ls", "-q", timeout=20).split():
                    sh(find_binary("ctr", "/usr/bin/ctr"), f"--address={self.socket}", "-n", NAMESPACE,
                       "tasks", "delete", "-f", task, check=False, timeout=20)
                time.sleep(0.2)
            containers = self.ctr("containers", "ls", "-q", timeout=20).split()
            if containers:
                self.ctr("containers", "rm", *containers, timeout=60)

    def _kill_leftovers(self, needles: list[str]) -> None:
        """Shims and container processes that outlived containerd (they run in their own sessions)."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = sorted({p for n in needles for p in pids_mentioning(n)})
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and any(process_alive(p) for p in pids):
                time.sleep(0.1)

    def _network_down(self, state: dict) -> None:
        ip = shutil.which("ip") or "/usr/sbin/ip"
        for port in bridge_ports(BRIDGE):  # pods' host-side veths whose namespace outlived their pod
            subprocess.run([ip, "link", "del", port], capture_output=True)
        subprocess.run([ip, "link", "del", BRIDGE], capture_output=True)
        for _ in range(8):  # one rule per start; a few in case an earlier stop was interrupted
            if subprocess.run([ip, "rule", "del", "priority", str(RULE_PRIORITY)], capture_output=True).returncode:
                break
        subprocess.run([ip, "route", "flush", "table", str(ROUTE_TABLE)], capture_output=True)
        for cidr in CONFINED_RANGES:
            subprocess.run([ip, "route", "del", "unreachable", cidr], capture_output=True)
        nft = shutil.which("nft") or "/usr/sbin/nft"
        before = {tuple(t) for t in state.get("nft_tables", [])}
        for family, table in (("ip", NFT_TABLE), *KUBE_PROXY_TABLES):
            if (family, table) not in before:
                subprocess.run([nft, "delete", "table", family, table], capture_output=True)

    def _restore_host(self, state: dict) -> None:
        for name, value in state.get("sysctls", {}).items():
            if value is not None and read_sysctl(name) != value:
                with contextlib.suppress(OSError):
                    write_sysctl(name, value)
        logs = Path("/var/log/containers")
        if logs.is_dir():  # the kubelet's symlinks into our pod logs
            for link in logs.iterdir():
                if link.is_symlink() and str(self.directory) in os.readlink(link):
                    link.unlink()
        existed = set(state.get("host_paths", []))
        for path in HOST_PATHS:
            if path not in existed:
                _remove_created(Path(path))


def _archive_tags(archive: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        if "manifest.json" in names:
            return list(json.load(tar.extractfile("manifest.json"))[0].get("RepoTags") or [])
        if "index.json" in names:
            index = json.load(tar.extractfile("index.json"))
            return [m["annotations"]["io.containerd.image.name"] for m in index["manifests"]
                    if "io.containerd.image.name" in m.get("annotations", {})]
    return []


def _nft_tables() -> list[list[str]]:
    out = sh(shutil.which("nft") or "/usr/sbin/nft", "list", "tables", check=False)
    return [line.split()[1:3] for line in out.splitlines() if line.startswith("table ")]


def _remove_created(path: Path) -> None:
    """Remove a host directory the node created, and only what is in it that the node could have put there."""
    if not path.exists() or path.is_symlink():
        return
    with contextlib.suppress(OSError):
        for sub in sorted(path.rglob("*"), key=lambda p: -len(p.parts)):
            if sub.is_socket():  # a stopped component's socket (the kubelet's device-plugin socket)
                sub.unlink()
            elif sub.is_dir() and not sub.is_symlink():
                sub.rmdir()  # only empty directories: a file left inside stops the removal (and the test sees it)
        path.rmdir()


def _stop_group(pid: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and process_alive(pid):
            time.sleep(0.1)
        if not process_alive(pid):
            return




def _connects(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=1):
        return True


# -- the API relay: pods reach the loopback-only API server through the node address ------------------

async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def relay(listen: tuple[str, int], target: tuple[str, int]) -> None:
    """Copy bytes both ways between each connection to ``listen`` and a fresh one to ``target`` (TLS stays end to end)."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(handle, *listen)
    async with server:
        await server.serve_forever()


def _address(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] != "relay":
        print("usage: python -m e2e.node relay LISTEN_ADDR:PORT TARGET_ADDR:PORT", file=sys.stderr)
        return 2
    target = _address(args[2])
    if not ipaddress.ip_address(target[0]).is_loopback:
        print("the relay only forwards to loopback", file=sys.stderr)
        return 2
    asyncio.run(relay(_address(args[1]), target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
