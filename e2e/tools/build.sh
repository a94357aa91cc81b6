#!/usr/bin/env bash
# Builds the local control plane's binaries from pinned Go modules, once per version set, and
# the real node's (e2e/node.py): kubelet, kube-proxy, CoreDNS, the pause and probe programs.
#
#   e2e/tools/build.sh            build what is missing, print the bin directory
#
# The cache lives in ${OCRFLEET_CACHE:-~/.cache/ocrfleet}/k8s/<versions>/bin and is never
# rebuilt while it is complete. A failed build prints the log tail and exits non-zero.
set -euo pipefail

K8S_VERSION=v1.37.2    # k8s.io/kubernetes; staging modules at v0.37.2 (see k8s/go.mod)
ETCD_VERSION=v3.6.16   # go.etcd.io/etcd/server/v3 (see etcd/go.mod)
KWOK_VERSION=v0.8.0    # sigs.k8s.io/kwok
HELM_VERSION=v3.22.0   # helm.sh/helm/v3
COREDNS_VERSION=v1.15.0  # github.com/coredns/coredns, the real node's cluster DNS (see coredns/go.mod)
SEAWEEDFS_VERSION=v0.0.0-20261109003541-7506e5f91cd6  # github.com/seaweedfs/seaweedfs 4.53, the object store
RECIPE=2               # bump when the build flags below change, so caches are rebuilt

here=$(cd "$(dirname "$0")" && pwd)
cache=${OCRFLEET_CACHE:-$HOME/.cache/ocrfleet}
bin="$cache/k8s/$K8S_VERSION-etcd$ETCD_VERSION-kwok$KWOK_VERSION-helm$HELM_VERSION-r$RECIPE/bin"
mkdir -p "$bin"
log="$bin/../build.log"
# one build at a time: a second caller (a test's fixture while `make deps` builds) waits for the
# first and then finds the cache complete, instead of compiling the same binaries beside it
exec 9>"$bin/../build.lock"
flock 9

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
source "$(dirname "${BASH_SOURCE[0]}")/heartbeat.sh"

run() {  # run a build step, keep its output, fail loudly with the tail
  local what=$1; shift
  echo "building $what ..." >&2
  local t0=$SECONDS
  if ! heartbeat_run "$what" "$log" "$@"; then
    echo "error: building $what failed; last lines of $log:" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
  echo "built $what in $((SECONDS - t0)) s" >&2
}

minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags="$ldflags -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
  ldflags="$ldflags -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done

if [ ! -x "$bin/kube-apiserver" ] || [ ! -x "$bin/kube-controller-manager" ] || [ ! -x "$bin/kube-scheduler" ] \
   || [ ! -x "$bin/kubectl" ]; then
  run "kube-apiserver, kube-controller-manager, kube-scheduler, kubectl $K8S_VERSION" \
    bash -c "cd '$here/k8s' && go build -trimpath -tags selinux,notest -ldflags '$ldflags' -o '$bin/' \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl"
fi
if [ ! -x "$bin/etcd" ]; then
  run "etcd $ETCD_VERSION" bash -c "cd '$here/etcd' && go build -trimpath -ldflags '-s -w' -o '$bin/etcd' ."
fi
if [ ! -x "$bin/kwok" ]; then
  run "kwok $KWOK_VERSION" env GOBIN="$bin" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
fi
# helm's default Kubernetes version (for `helm template` and lint), as its own release build sets it
helm_k8s="-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
helm_k8s="$helm_k8s -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
if [ ! -x "$bin/helm" ]; then
  run "helm $HELM_VERSION" env GOBIN="$bin" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION $helm_k8s" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi
# the real node: kubelet and kube-proxy from the same module and flags as the control plane
if [ ! -x "$bin/kubelet" ]; then
  run "kubelet $K8S_VERSION" bash -c "cd '$here/k8s' && go build -trimpath -tags selinux,notest \
    -ldflags '$ldflags' -o '$bin/kubelet' k8s.io/kubernetes/cmd/kubelet"
fi
if [ ! -x "$bin/kube-proxy" ]; then
  run "kube-proxy $K8S_VERSION" bash -c "cd '$here/k8s' && go build -trimpath -tags selinux,notest \
    -ldflags '$ldflags' -o '$bin/kube-proxy' k8s.io/kubernetes/cmd/kube-proxy"
fi
# CoreDNS with the plugins cluster DNS needs (coredns/main.go); rebuilt when its version changes
if [ ! -x "$bin/coredns" ] || [ "$(cat "$bin/coredns.version" 2>/dev/null)" != "$COREDNS_VERSION" ]; then
  run "coredns $COREDNS_VERSION" bash -c "cd '$here/coredns' && go build -trimpath \
    -ldflags '-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION' -o '$bin/coredns' ."
  echo "$COREDNS_VERSION" > "$bin/coredns.version"
fi
# SeaweedFS (`weed`), the S3-compatible object store of tests and of the local object-store image.
# Its go.mod has replace directives, so it builds as the main module from its own module source.
if [ ! -x "$bin/weed" ] || [ "$(cat "$bin/weed.version" 2>/dev/null)" != "$SEAWEEDFS_VERSION" ]; then
  run "seaweedfs $SEAWEEDFS_VERSION" bash -c "cd \"\$(go mod download -json github.com/seaweedfs/seaweedfs@$SEAWEEDFS_VERSION \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"Dir\"])')\" && go build -trimpath -ldflags '-s -w' \
    -o '$bin/weed' ./weed"
  echo "$SEAWEEDFS_VERSION" > "$bin/weed.version"
fi
# the pause (sandbox) and probe (test workload) programs: our own sources, rebuilt when they change
pause_src=$(cat "$here/pause/go.mod" "$here"/pause/*.go "$here"/pause/probe/*.go | sha256sum | cut -c1-16)
if [ ! -x "$bin/pause" ] || [ ! -x "$bin/probe" ] || [ "$(cat "$bin/pause.src" 2>/dev/null)" != "$pause_src" ]; then
  run "pause, probe" bash -c "cd '$here/pause' && go build -trimpath -ldflags '-s -w' -o '$bin/pause' . \
    && go build -trimpath -ldflags '-s -w' -o '$bin/probe' ./probe"
  echo "$pause_src" > "$bin/pause.src"
fi
# kwok's stage definitions (v0.8 needs them in its config) come from its module source.
if [ ! -f "$bin/../kwok-stages.yaml" ]; then
  src=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  for f in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
           pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
    cat "$src/kustomize/stage/$f.yaml"
    echo "---"
  done > "$bin/../kwok-stages.yaml.tmp"
  mv "$bin/../kwok-stages.yaml.tmp" "$bin/../kwok-stages.yaml"
fi
echo "$bin"
