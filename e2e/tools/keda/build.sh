#!/usr/bin/env bash
# Builds KEDA's own operator and metrics server (github.com/kedacore/keda/v2, cmd/operator and
# cmd/adapter) from its module source, once per KEDA and Go version, and prints the directory
# holding keda-operator and keda-adapter:
#
#   e2e/tools/keda/build.sh        build what is missing, print the bin directory
#
# KEDA's go.mod carries a replace directive, so it builds as the main module from its own
# module source (as SeaweedFS does in ../build.sh). The cache is
# ${OCRFLEET_CACHE:-~/.cache/ocrfleet}/keda/<version>-<go version>/. A failed build prints the
# log tail and exits non-zero.
set -euo pipefail

KEDA_VERSION=v2.21.0
cache=${OCRFLEET_CACHE:-$HOME/.cache/ocrfleet}
dir="$cache/keda/$KEDA_VERSION-$(go env GOVERSION)"
if [ -x "$dir/keda-operator" ] && [ -x "$dir/keda-adapter" ]; then
  echo "$dir"
  exit 0
fi
mkdir -p "$dir"
exec 9>"$dir/build.lock"
flock 9
log="$dir/build.log"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
source "$(dirname "${BASH_SOURCE[0]}")/../heartbeat.sh"
src=$(go mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
for cmd in operator adapter; do
  [ -x "$dir/keda-$cmd" ] && continue
  echo "building keda-$cmd $KEDA_VERSION (a large program: several minutes) ..." >&2
  t0=$SECONDS
  if ! (cd "$src" && heartbeat_run "keda-$cmd" "$log" go build -v -trimpath \
        -ldflags "-s -w -X github.com/kedacore/keda/v2/version.Version=$KEDA_VERSION" -o "$dir/keda-$cmd.tmp" "./cmd/$cmd"); then
    echo "error: building keda-$cmd failed; last lines of $log:" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
  mv -f "$dir/keda-$cmd.tmp" "$dir/keda-$cmd"
  echo "built keda-$cmd in $((SECONDS - t0)) s" >&2
done
echo "$dir"
