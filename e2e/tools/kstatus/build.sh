#!/usr/bin/env bash
# Builds the kstatus harness (main.go: status.Compute of sigs.k8s.io/cli-utils, as Flux and kpt
# wait with) once per cli-utils version and source (e2e/tools/harness.sh), and prints its path:
#
#   e2e/tools/kstatus/build.sh                                  build if missing, print the binary
#   kubectl get ocrjobs -o json | "$(e2e/tools/kstatus/build.sh)"   one JSON line per object
exec "$(dirname "$0")/../harness.sh" kstatus sigs.k8s.io/cli-utils
