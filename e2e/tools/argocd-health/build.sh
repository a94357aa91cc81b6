#!/usr/bin/env bash
# Builds the Argo CD health-check harness (main.go, under gopher-lua as Argo CD embeds it) once
# per gopher-lua version and source (e2e/tools/harness.sh), and prints the binary's path:
#
#   e2e/tools/argocd-health/build.sh                    build if missing, print the binary
#   "$(e2e/tools/argocd-health/build.sh)" argocd        run every health_test.yaml under argocd/
exec "$(dirname "$0")/../harness.sh" argocd-health github.com/yuin/gopher-lua
