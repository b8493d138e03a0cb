#!/usr/bin/env bash
# Renders manifests/install.yaml, the plain `kubectl apply -f` install, from the Helm chart, so
# the two never differ. `./x test` fails when the committed file is not what this writes.
#
# The plain install takes the allocation API's certificate from a Secret you create
# (flotilla-allocation-tls: tls.crt, tls.key, ca.crt; see docs/installation.md): a chart
# rendered offline cannot keep generated keys across re-renders, and keys do not belong in git.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$root/e2e/cluster/versions.env"
helm=$("$root/e2e/cluster/build-binaries.sh")/helm
{
  cat <<'HEAD'
# Flotilla, installed with `kubectl apply --server-side -f manifests/install.yaml`.
# Generated from charts/flotilla by manifests/generate.sh; do not edit.
---
apiVersion: v1
kind: Namespace
metadata:
  name: flotilla-system
  labels:
    app.kubernetes.io/part-of: flotilla
HEAD
  "$helm" template flotilla "$root/charts/flotilla" --namespace flotilla-system --include-crds \
    --kube-version "${K8S_VERSION#v}" --set allocation.tls.existingSecret=flotilla-allocation-tls
} > "$root/manifests/install.yaml"
