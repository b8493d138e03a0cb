#!/usr/bin/env bash
# Starts a local Kubernetes cluster on loopback: etcd, kube-apiserver (RBAC + Node authorizer),
# kube-controller-manager, kube-scheduler and the Flotilla pod runner as the nodes' kubelet.
#
#   e2e/cluster/up.sh [--name NAME] [--nodes N] [--image-map FILE]
#
# Every cluster gets random ports, its own data directory and its own pod network (127.B.0.0/16),
# so several can run side by side. Waits until /readyz is OK, every node is Ready and the
# default ServiceAccount exists; then prints the admin kubeconfig's path on stdout.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

CLUSTER_NAME=dev
nodes=3
image_map=
while [[ $# -gt 0 ]]; do
  case $1 in
    --name) CLUSTER_NAME=$2; shift 2 ;;
    --nodes) nodes=$2; shift 2 ;;
    --image-map) image_map=$(realpath "$2"); shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
[[ $CLUSTER_NAME =~ ^[a-z0-9][a-z0-9-]{0,30}$ ]] || die "name must be lowercase letters, digits and dashes"
[[ $nodes =~ ^[0-9]+$ ]] && (( nodes >= 1 && nodes <= 20 )) || die "--nodes must be 1-20"

dir=$(cluster_dir "$CLUSTER_NAME")
if [[ -f $dir/pids ]]; then
  while read -r _ pid; do
    alive "$pid" && die "cluster $CLUSTER_NAME is already running; stop it with e2e/cluster/down.sh --name $CLUSTER_NAME"
  done < "$dir/pids"
fi
started_at=$(date +%s.%N)
rm -rf "$dir"
mkdir -p "$dir"/{pki,etcd,logs,kubeconfig/nodes,runner}
# Anything that fails from here on tears down what was started.
up=0
on_exit() {
  (( up )) && return
  log "start-up failed; logs are kept in $dir/logs"
  "$FLOTILLA_ROOT/e2e/cluster/down.sh" --name "$CLUSTER_NAME" --keep-logs > /dev/null 2>&1 || true
}
trap on_exit EXIT

bin=$("$FLOTILLA_ROOT/e2e/cluster/build-binaries.sh")
# FLOTILLA_PROFILE=release runs the runner and the images' binaries from release builds.
profile=${FLOTILLA_PROFILE:-debug}
[[ $profile == debug || $profile == release ]] || die "FLOTILLA_PROFILE must be debug or release"
runner=$CARGO_TARGET_DIR/$profile/flotilla-podrunner
if [[ ${FLOTILLA_SKIP_BUILD:-} != 1 ]]; then
  release_flag=()
  [[ $profile == release ]] && release_flag=(--release)
  (cd "$FLOTILLA_ROOT" && cargo build --quiet "${release_flag[@]}" -p flotilla-podrunner -p flotilla-testpod \
    -p flotilla-gameserver --bin flotilla-gameserver)
fi
[[ -x $runner ]] || die "$runner is missing; build it with cargo build -p flotilla-podrunner"

# --- ports and pod network -------------------------------------------------------------
read -r etcd_port peer_port api_port cm_port sched_port < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
PY
)
# Reserve a free 127.B/16 for this cluster's pods; a reservation whose cluster is gone is stale.
mkdir -p "$POD_NETWORKS_DIR"
network=
for b in $(shuf -i 20-250); do
  slot=$POD_NETWORKS_DIR/$b
  if [[ -f $slot ]]; then
    owner=$(cat "$slot")
    [[ -f $owner/pids ]] && continue
    rm -f "$slot"
  fi
  if (set -o noclobber; echo "$dir" > "$slot") 2>/dev/null; then network=127.$b; break; fi
done
[[ -n $network ]] || die "no free pod network left in 127.20-250"
echo "$network" > "$dir/pod-network"

# --- certificates ------------------------------------------------------------------------
pki=$dir/pki
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$pki/$1.key" 2>/dev/null; }
cert() { # name subject extensions
  key "$1"
  openssl req -new -key "$pki/$1.key" -subj "$2" 2>/dev/null |
    openssl x509 -req -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial -days 365 \
      -extfile <(printf '%s\n' "$3") -out "$pki/$1.crt" 2>/dev/null
}
client_ext='basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth'
key ca
openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=flotilla-local-ca-$CLUSTER_NAME" -days 3650 \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign -out "$pki/ca.crt"
cert apiserver "/CN=kube-apiserver" 'basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:'"$network"'.240.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local'
cert admin "/O=system:masters/CN=flotilla-admin" "$client_ext"
cert controller-manager "/CN=system:kube-controller-manager" "$client_ext"
cert scheduler "/CN=system:kube-scheduler" "$client_ext"
cert kube-proxy "/CN=system:kube-proxy" "$client_ext"
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client_ext"
node_names=()
for ((i = 0; i < nodes; i++)); do
  node_names+=("node-$i")
  cert "node-$i" "/O=system:nodes/CN=system:node:node-$i" "$client_ext"
done
key sa
openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null

kubeconfig() { # file cert-name
  cat > "$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: $CLUSTER_NAME
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority-data: $(base64 -w0 < "$pki/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 < "$pki/$2.crt")
    client-key-data: $(base64 -w0 < "$pki/$2.key")
contexts:
- name: $CLUSTER_NAME
  context: {cluster: $CLUSTER_NAME, user: $2}
current-context: $CLUSTER_NAME
KC
  chmod 600 "$1"
}
kubeconfig "$dir/admin.kubeconfig" admin
kubeconfig "$dir/kubeconfig/controller-manager.kubeconfig" controller-manager
kubeconfig "$dir/kubeconfig/scheduler.kubeconfig" scheduler
kubeconfig "$dir/kubeconfig/kube-proxy.kubeconfig" kube-proxy
for n in "${node_names[@]}"; do kubeconfig "$dir/kubeconfig/nodes/$n.kubeconfig" "$n"; done

if [[ -z $image_map ]]; then
  image_map=$dir/images.toml
  cat > "$image_map" <<TOML
# Image name -> local binary. The pod runner reads this file at every container start.
[images]
"flotilla/testpod" = "$CARGO_TARGET_DIR/$profile/flotilla-testpod"
"flotilla/gameserver" = "$CARGO_TARGET_DIR/$profile/flotilla-gameserver"
"flotilla/operator" = "$CARGO_TARGET_DIR/$profile/flotilla-operator"
"flotilla/player" = "$CARGO_TARGET_DIR/$profile/flotilla-player"
"flotilla/economy" = "$CARGO_TARGET_DIR/$profile/flotilla-economy"
"flotilla/analytics" = "$CARGO_TARGET_DIR/$profile/flotilla-analytics"
TOML
fi

# --- processes -----------------------------------------------------------------------------
start() { # name command...
  local name=$1; shift
  setsid "$@" > "$dir/logs/$name.log" 2>&1 < /dev/null &
  echo "$name $!" >> "$dir/pids"
}
start etcd "$bin/etcd" --name "$CLUSTER_NAME" --data-dir "$dir/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "$CLUSTER_NAME=http://127.0.0.1:$peer_port" \
  --unsafe-no-fsync --log-level warn
start kube-apiserver "$bin/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$etcd_port" \
  --bind-address 127.0.0.1 --secure-port "$api_port" --advertise-address 127.0.0.1 \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
  --service-cluster-ip-range "$network.240.0/20" --endpoint-reconciler-type none \
  --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
  --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
  --allow-privileged=true --profiling=false --cert-dir "$pki/generated"
kubectl=("$bin/kubectl" --kubeconfig "$dir/admin.kubeconfig")
wait_for() { # description timeout-seconds command...
  local what=$1 limit=$2; shift 2
  local deadline=$(( $(date +%s) + limit ))
  until "$@" > /dev/null 2>&1; do
    (( $(date +%s) < deadline )) || die "timed out after ${limit}s waiting for $what"
    sleep 0.2
  done
}
wait_for "kube-apiserver /readyz" 60 "${kubectl[@]}" get --raw /readyz
# The pod runner's service proxy (user system:kube-proxy) picks Services' ready pods itself:
# the API server refuses loopback pod addresses in EndpointSlices. Reading pods is all it adds
# to the bootstrap system:node-proxier role.
wait_for "RBAC for the service proxy" 30 "${kubectl[@]}" create clusterrole flotilla:service-proxy \
  --verb=get,list,watch --resource=pods,services
"${kubectl[@]}" create clusterrolebinding flotilla:service-proxy --clusterrole=flotilla:service-proxy \
  --user=system:kube-proxy > /dev/null
# The controller-manager and scheduler exit if the RBAC bootstrap roles they read at start-up
# are not there yet, so they start once the API server is ready (a kubelet would restart them).
start kube-controller-manager "$bin/kube-controller-manager" \
  --kubeconfig "$dir/kubeconfig/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$dir/kubeconfig/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$dir/kubeconfig/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$cm_port" --leader-elect=false \
  --use-service-account-credentials=true --service-account-private-key-file "$pki/sa.key" \
  --controllers '*,-endpoints-controller,-endpointslice-controller,-endpointslice-mirroring-controller' \
  --root-ca-file "$pki/ca.crt" \
  --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key"
start kube-scheduler "$bin/kube-scheduler" \
  --kubeconfig "$dir/kubeconfig/scheduler.kubeconfig" \
  --authentication-kubeconfig "$dir/kubeconfig/scheduler.kubeconfig" \
  --authorization-kubeconfig "$dir/kubeconfig/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$sched_port" --leader-elect=false


RUST_LOG=${RUST_LOG:-info,kube=warn} start podrunner "$runner" \
  --node "$(IFS=,; echo "${node_names[*]}")" --kubeconfig-dir "$dir/kubeconfig/nodes" \
  --pod-network "$network" --image-map "$image_map" --state-dir "$dir/runner" \
  --proxy-kubeconfig "$dir/kubeconfig/kube-proxy.kubeconfig"

nodes_ready() {
  [[ $("${kubectl[@]}" get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True) -eq $nodes ]]
}
wait_for "$nodes Ready nodes" 60 nodes_ready
wait_for "the default ServiceAccount" 60 "${kubectl[@]}" -n default get serviceaccount default

cat > "$dir/env" <<ENV
export KUBECONFIG=$dir/admin.kubeconfig
export PATH=$bin:\$PATH
FLOTILLA_CLUSTER_NAME=$CLUSTER_NAME
FLOTILLA_API_PORT=$api_port
FLOTILLA_POD_NETWORK=$network
FLOTILLA_IMAGE_MAP=$image_map
ENV
up=1
log "up in $(python3 -c "print(f'{$(date +%s.%N) - $started_at:.1f}')")s: $nodes nodes, api https://127.0.0.1:$api_port, pods on $network.0.0/16"
log "use it with: source $dir/env   (kubectl get nodes)"
echo "$dir/admin.kubeconfig"
