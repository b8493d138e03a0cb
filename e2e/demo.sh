#!/usr/bin/env bash
# The demo: Flotilla on a local cluster, the way a studio uses it.
#
#   e2e/demo.sh        (./x demo)       build, start the cluster "demo", helm install Flotilla,
#                                        apply the sample fleet and autoscaler, allocate a session
#                                        through the allocation API, let bots play a match, and
#                                        print the fleet's state and where to look
#   e2e/demo.sh down   (./x demo down)  stop it all
#
# Re-runnable: a second run starts from a fresh cluster. Set DEMO_PLAYERS and DEMO_SECONDS to
# change the match.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/cluster/common.sh"
cd "$FLOTILLA_ROOT"
CLUSTER_NAME=demo
NS=demo
ALLOCATOR=flotilla-allocator.flotilla-system.svc
players=${DEMO_PLAYERS:-8}
seconds=${DEMO_SECONDS:-30}

if [[ ${1:-} == down ]]; then
  e2e/cluster/down.sh --name "$CLUSTER_NAME"
  exit 0
fi
started=$(date +%s)
step() { printf '\n=== %s (%ss)\n' "$*" "$(($(date +%s) - started))" >&2; }

e2e/install-packages.sh demo

step "building the control plane, helm and Flotilla"
bin=$(e2e/cluster/build-binaries.sh)
cargo build --quiet -p flotilla-podrunner -p flotilla-operator -p flotilla-gameserver -p flotilla-testpod \
  -p flotilla-player

step "starting the local cluster '$CLUSTER_NAME'"
e2e/cluster/down.sh --name "$CLUSTER_NAME" > /dev/null 2>&1 || true
FLOTILLA_SKIP_BUILD=1 e2e/cluster/up.sh --name "$CLUSTER_NAME" > /dev/null
source "$(cluster_dir "$CLUSTER_NAME")/env"

step "helm install flotilla (operator pods, RBAC, Services, TLS certificates)"
"$bin/helm" upgrade --install flotilla charts/flotilla --namespace flotilla-system --create-namespace \
  --wait --timeout 180s > /dev/null
kubectl -n flotilla-system get pods -o wide

step "the sample fleet and its autoscaler"
kubectl create namespace "$NS" > /dev/null
kubectl -n "$NS" apply -f manifests/examples/fleet.yaml -f manifests/examples/autoscaler.yaml
# The autoscaler sets the size (a buffer of 2 Ready servers); wait until all of them are Ready.
fleet_ready() {
  local ready wanted
  read -r ready wanted < <(kubectl -n "$NS" get gsf arena -o jsonpath='{.status.readyReplicas} {.spec.replicas}')
  [[ -n $ready && $ready -ge 1 && $ready -ge ${wanted:-1} ]]
}
for _ in $(seq 120); do fleet_ready && break; sleep 1; done
fleet_ready || { echo "the fleet did not become Ready in 120 s" >&2; kubectl -n "$NS" get gs; exit 1; }
kubectl -n "$NS" get gsf,gs,fas

step "allocating a session through the allocation API (mTLS with the chart's client certificate)"
creds=$(cluster_dir "$CLUSTER_NAME")/allocation-client
mkdir -p "$creds"
for key in ca.crt tls.crt tls.key; do
  kubectl -n flotilla-system get secret flotilla-allocation-client -o jsonpath="{.data.${key//./\\.}}" |
    base64 -d > "$creds/$key"
done
allocator_ip=$(kubectl -n flotilla-system get service flotilla-allocator -o jsonpath='{.spec.clusterIP}')
# No cluster DNS here: --resolve sends the Service's name to its ClusterIP, and the certificate
# is still checked against the name.
curl --silent --show-error --fail-with-body --resolve "$ALLOCATOR:443:$allocator_ip" \
  --cacert "$creds/ca.crt" --cert "$creds/tls.crt" --key "$creds/tls.key" \
  -H 'Content-Type: application/json' --data @manifests/examples/allocation.json \
  "https://$ALLOCATOR/allocation/v1/namespaces/$NS/allocations" |
  jq '{gameServer, address, ports, sessionId, players: (.tokens | keys)}'

step "$players bots allocate their own server and play a ${seconds}s match over QUIC"
"$CARGO_TARGET_DIR/debug/flotilla-bots" --allocation-url "https://$ALLOCATOR" \
  --connect-to "$allocator_ip:443" --ca-file "$creds/ca.crt" \
  --client-cert "$creds/tls.crt" --client-key "$creds/tls.key" \
  --namespace "$NS" --fleet arena --players "$players" --seconds "$seconds"

step "the fleet now"
kubectl -n "$NS" get gsf,gs,fas
leader=$(kubectl -n flotilla-system get pods -l flotilla.dev/leader=true -o jsonpath='{.items[0].status.podIP}')
cat <<DONE

Flotilla demo is up ($(($(date +%s) - started)) s).
  kubectl:        source $(cluster_dir "$CLUSTER_NAME")/env; kubectl get gsf,gs,fas -A
  console:        http://$leader:8080/console            (the leader operator; live fleet view)
  metrics:        curl http://$leader:8080/metrics
  prometheus sd:  curl http://$leader:8080/sd/gameservers
  allocate:       curl --resolve $ALLOCATOR:443:$allocator_ip --cacert $creds/ca.crt \\
                    --cert $creds/tls.crt --key $creds/tls.key \\
                    -d @manifests/examples/allocation.json https://$ALLOCATOR/allocation/v1/namespaces/$NS/allocations
  logs:           $(cluster_dir "$CLUSTER_NAME")/runner/pods/*/logs/
  stop:           ./x demo down
DONE
