#!/usr/bin/env bash
# Builds one of the small Go harnesses that run other projects' own code on our objects
# (e2e/tools/<name>/: main.go, go.mod, go.sum), once per pinned module version and source, and
# prints the binary's path:
#
#   e2e/tools/harness.sh NAME MODULE     e.g. kstatus sigs.k8s.io/cli-utils
#
# The cache is ${OCRFLEET_CACHE:-~/.cache/ocrfleet}/NAME/<module base>-<version>-<source>/, kept
# while go.mod, go.sum, main.go and the Go version are unchanged; a cached binary costs no build.
# A failed build prints the log tail and exits non-zero.
set -euo pipefail

name=$1 module=$2
here=$(cd "$(dirname "$0")/$name" && pwd)
cache=${OCRFLEET_CACHE:-$HOME/.cache/ocrfleet}
version=$(awk -v m="$module" '$1 == m {print $2}' "$here/go.mod")
src=$( { cat "$here/go.mod" "$here/go.sum" "$here/main.go"; go env GOVERSION; } | sha256sum | cut -c1-16)
dir="$cache/$name/${module##*/}-$version-$src"
bin="$dir/$name"
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi

mkdir -p "$dir"
log="$dir/build.log"
echo "building $name (${module##*/} $version) ..." >&2
t0=$SECONDS
tmp="$bin.tmp.$$"
if ! (cd "$here" && GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-buildvcs=false -mod=readonly" \
      go build -trimpath -ldflags "-s -w" -o "$tmp" .) >"$log" 2>&1; then
  rm -f "$tmp"
  echo "error: building $name failed; last lines of $log:" >&2
  tail -n 40 "$log" >&2
  exit 1
fi
mv -f "$tmp" "$bin"  # atomic: a concurrent build finds either no binary or a whole one
echo "built $name in $((SECONDS - t0)) s" >&2
echo "$bin"
