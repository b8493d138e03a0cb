#!/usr/bin/env bash
# The demo: Flotilla on a local cluster, the way a studio uses it.
#
#   e2e/demo.sh        (./x demo)       build, start the cluster "demo" and the storage servers,
#                                        helm install Flotilla with the player, economy and
#                                        analytics services, apply the sample fleet and autoscaler, allocate
#                                        a session through the allocation API, sign bots in, let
#                                        them play a match (their rewards are granted through the
#                                        economy), spend what they earned, sell a potion to each
#                                        other on the market and at auction, then print the fleet's state,
#                                        the bots' wallets, the audit, the match events' KPIs and
#                                        where to look
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

# FerretDB, Redis and OpenSearch for the player and economy services, beside the cluster (its
# pods reach them on 127.0.0.1).
STORAGE=$FLOTILLA_CACHE/demo-storage

if [[ ${1:-} == down ]]; then
  e2e/storage/down.sh --dir "$STORAGE" > /dev/null 2>&1 || true
  e2e/cluster/down.sh --name "$CLUSTER_NAME"
  exit 0
fi
started=$(date +%s)
step() { printf '\n=== %s (%ss)\n' "$*" "$(($(date +%s) - started))" >&2; }

e2e/install-packages.sh demo

step "building the control plane, helm and Flotilla"
bin=$(e2e/cluster/build-binaries.sh)
cargo build --quiet -p flotilla-podrunner -p flotilla-operator -p flotilla-gameserver -p flotilla-testpod \
  -p flotilla-player -p flotilla-economy -p flotilla-analytics

step "starting the local cluster '$CLUSTER_NAME'"
e2e/cluster/down.sh --name "$CLUSTER_NAME" > /dev/null 2>&1 || true
FLOTILLA_SKIP_BUILD=1 e2e/cluster/up.sh --name "$CLUSTER_NAME" > /dev/null
source "$(cluster_dir "$CLUSTER_NAME")/env"

step "storage servers for the services (FerretDB, Redis, OpenSearch)"
e2e/storage/build.sh > /dev/null
e2e/storage/down.sh --dir "$STORAGE" > /dev/null 2>&1 || true
rm -rf "$STORAGE"
e2e/storage/up.sh --dir "$STORAGE" > /dev/null
storage_url() { sed -n "s/^$1=//p" "$STORAGE/env"; }

step "helm install flotilla (operator, allocation API, player service; RBAC, Services, TLS certificates)"
"$bin/helm" upgrade --install flotilla charts/flotilla --namespace flotilla-system --create-namespace \
  --set player.enabled=true --set player.replicas=1 \
  --set player.mongo.url="$(storage_url FLOTILLA_MONGO_URL)" --set player.redis.url="$(storage_url FLOTILLA_REDIS_URL)" \
  --set player.opensearch.url="$(storage_url FLOTILLA_OPENSEARCH_URL)" \
  --wait --timeout 180s > /dev/null
player_ip=$(kubectl -n flotilla-system get service flotilla-player -o jsonpath='{.spec.clusterIP}')

# The analytics log is the storage scripts' second Redis (its AOF fsynced on every write); the
# event store is an emptyDir here.
step "helm upgrade: the analytics service"
"$bin/helm" upgrade flotilla charts/flotilla --namespace flotilla-system --reuse-values \
  --set analytics.enabled=true --set analytics.playerUrl="http://$player_ip:80" \
  --set analytics.logRedis.url="$(storage_url FLOTILLA_ANALYTICS_LOG_REDIS_URL)" \
  --set analytics.persistence.enabled=false --set analytics.game=arena \
  --wait --timeout 180s > /dev/null
analytics_ip=$(kubectl -n flotilla-system get service flotilla-analytics -o jsonpath='{.spec.clusterIP}')

# The economy fetches the player service's public keys, and it and the player service send their
# events to analytics; without cluster DNS here, by ClusterIP.
step "helm upgrade: the economy service"
"$bin/helm" upgrade flotilla charts/flotilla --namespace flotilla-system --reuse-values \
  --set economy.enabled=true --set economy.replicas=1 --set economy.playerUrl="http://$player_ip:80" \
  --set analytics.url="http://$analytics_ip:80" \
  --wait --timeout 180s > /dev/null
economy_ip=$(kubectl -n flotilla-system get service flotilla-economy -o jsonpath='{.spec.clusterIP}')
kubectl -n flotilla-system get pods -o wide
service_key=$(kubectl -n flotilla-system get secret flotilla-player -o jsonpath='{.data.service-key}' | base64 -d)

step "the sample fleet and its autoscaler"
kubectl create namespace "$NS" > /dev/null
# The game servers report results to the player service, grant rewards through the economy and
# send each player's match to analytics, with the service key (kept in a Secret of the fleet's namespace); a match lasts as long as the
# bots play.
kubectl -n "$NS" create secret generic flotilla-services --from-literal=service-key="$service_key" > /dev/null
# The environment goes into the fleet before it is created: a server made from the template
# without it would play a match of the default length and grant nothing.
kubectl -n "$NS" create --dry-run=client -o json -f manifests/examples/fleet.yaml |
  jq --arg player "http://$player_ip:80" --arg economy "http://$economy_ip:80" --arg seconds "$seconds" \
    --arg analytics "http://$analytics_ip:80" \
    '.spec.template.spec.template.spec.containers[0].env = [
      {name: "FLOTILLA_PLAYER_SERVICE_URL", value: $player}, {name: "FLOTILLA_ECONOMY_URL", value: $economy},
      {name: "FLOTILLA_ANALYTICS_URL", value: $analytics},
      {name: "FLOTILLA_MATCH_SECONDS", value: $seconds},
      {name: "FLOTILLA_PLAYER_SERVICE_KEY", valueFrom: {secretKeyRef: {name: "flotilla-services", key: "service-key"}}}]' |
  kubectl -n "$NS" apply -f - > /dev/null
kubectl -n "$NS" apply -f manifests/examples/autoscaler.yaml
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

step "$players bots sign in to the player service"
ids=() tokens=()
for i in $(seq "$players"); do
  signed_in=$(curl --silent --show-error --fail-with-body -H 'Content-Type: application/json' \
    --data "{\"id\": \"demo-bot-$i-$started\"}" "http://$player_ip/v1/auth/device")
  ids+=("$(jq -r .player.id <<< "$signed_in")")
  tokens+=("$(jq -r .accessToken <<< "$signed_in")")
done
echo "${ids[*]}"

step "the bots allocate their own server and play a ${seconds}s match over QUIC"
"$CARGO_TARGET_DIR/debug/flotilla-bots" --allocation-url "https://$ALLOCATOR" \
  --connect-to "$allocator_ip:443" --ca-file "$creds/ca.crt" \
  --client-cert "$creds/tls.crt" --client-key "$creds/tls.key" \
  --namespace "$NS" --fleet arena --player-ids "$(IFS=,; echo "${ids[*]}")" --seconds "$seconds"

step "the game server granted match rewards through the economy; each bot spends its gold on potions"
gold() { curl --silent --fail -H "Authorization: Bearer $1" "http://$economy_ip/v1/wallet" | jq '.currencies[] | select(.code == "gold") | .available'; }
for i in "${!ids[@]}"; do
  for _ in $(seq 60); do [[ $(gold "${tokens[$i]}") -gt 0 ]] && break; sleep 1; done
  earned=$(gold "${tokens[$i]}")
  bought=0
  while (( $(gold "${tokens[$i]}") >= 25 )); do
    curl --silent --show-error --fail-with-body -H "Authorization: Bearer ${tokens[$i]}" \
      -H 'Content-Type: application/json' -H "Idempotency-Key: demo-potion-$i-$bought" \
      --data '{"offer": "potion"}' "http://$economy_ip/v1/purchases" > /dev/null
    bought=$((bought + 1))
  done
  wallet=$(curl --silent --fail -H "Authorization: Bearer ${tokens[$i]}" "http://$economy_ip/v1/wallet")
  echo "${ids[$i]}: earned $earned gold, bought $bought potions; now $(jq -c '{gold: .currencies[0].available, items: ([.items[] | {(.id): .count}] | add // {})}' <<< "$wallet")"
done
step "the market: a bot lists a potion for 5 gold, another buys it (the seller gets 5 less the 5 % fee)"
potions() { curl --silent --fail -H "Authorization: Bearer $1" "http://$economy_ip/v1/wallet" | jq '[.items[] | select(.id == "potion") | .count] | add // 0'; }
seller=""; buyer=""
for i in "${!ids[@]}"; do
  if [[ -z $seller ]] && (( $(potions "${tokens[$i]}") > 0 && $(gold "${tokens[$i]}") >= 1 )); then seller=$i
  elif [[ -z $buyer ]] && (( $(gold "${tokens[$i]}") >= 5 )); then buyer=$i; fi
done
if [[ -n $seller && -n $buyer ]]; then
  listing=$(curl --silent --show-error --fail-with-body -H "Authorization: Bearer ${tokens[$seller]}" \
    -H 'Content-Type: application/json' -H "Idempotency-Key: demo-list" \
    --data '{"item": "potion", "amount": 1, "currency": "gold", "unitPrice": 5}' \
    "http://$economy_ip/v1/market/listings" | jq -r .listing.id)
  curl --silent --show-error --fail-with-body -H "Authorization: Bearer ${tokens[$buyer]}" \
    -H 'Content-Type: application/json' -H "Idempotency-Key: demo-buy" --data '{"amount": 1}' \
    "http://$economy_ip/v1/market/listings/$listing/purchases" > /dev/null
  curl --silent --fail -H "Authorization: Bearer ${tokens[$buyer]}" "http://$economy_ip/v1/market/listings/$listing" |
    jq -c '{listing: .id, seller, state, unitPrice}'
  echo "${ids[$buyer]} bought it; price history: $(curl --silent --fail -H "Authorization: Bearer ${tokens[$buyer]}" \
    "http://$economy_ip/v1/market/items/potion/prices" | jq -c .median)"
else
  echo "no bot has a potion to sell and another the gold to buy it (the match rewards were small)"
fi
step "the auction house: a bot auctions a potion (buyout 2 gold), another bids the buyout and wins at once"
seller=""; buyer=""
for i in "${!ids[@]}"; do
  if [[ -z $seller ]] && (( $(potions "${tokens[$i]}") > 0 && $(gold "${tokens[$i]}") >= 2 )); then seller=$i
  elif [[ -z $buyer ]] && (( $(gold "${tokens[$i]}") >= 2 )); then buyer=$i; fi
done
if [[ -n $seller && -n $buyer ]]; then
  # A bid in the last minute pushes the end back a minute (the chart's anti-sniping), so a short
  # demo settles by buyout rather than waiting for the end.
  auction=$(curl --silent --show-error --fail-with-body -H "Authorization: Bearer ${tokens[$seller]}" \
    -H 'Content-Type: application/json' -H "Idempotency-Key: demo-auction" \
    --data '{"item": "potion", "amount": 1, "currency": "gold", "startPrice": 1, "buyoutPrice": 2, "durationSeconds": 60}' \
    "http://$economy_ip/v1/auctions")
  id=$(jq -r .id <<< "$auction")
  curl --silent --show-error --fail-with-body -H "Authorization: Bearer ${tokens[$buyer]}" \
    -H 'Content-Type: application/json' --data "$(jq -c '{amount: .buyoutPrice, version}' <<< "$auction")" \
    "http://$economy_ip/v1/auctions/$id/bids" | jq -c '{auction: .id, seller, state, topBid}'
else
  echo "no bot has a potion and 2 gold to auction it, and another 2 gold to bid"
fi
admin_key=$(kubectl -n flotilla-system get secret flotilla-economy -o jsonpath='{.data.admin-key}' | base64 -d)
curl --silent --show-error --fail-with-body -X POST -H "Authorization: Bearer $admin_key" "http://$economy_ip/v1/admin/audit" |
  jq -c '{drift, unfinished, assets}'

step "analytics: sign-ins, matches and currency flows, counted once each, in the live counters and KPIs"
analytics_key=$(kubectl -n flotilla-system get secret flotilla-analytics -o jsonpath='{.data.admin-key}' | base64 -d)
analytics() {
  local path=$1
  shift
  curl --silent --show-error --fail-with-body -H "Authorization: Bearer $analytics_key" "$@" "http://$analytics_ip$path"
}
# The player service sends each sign-in, the economy each purchase's sink; the game servers each match.
arrived() {
  analytics /v1/admin/live |
    jq --argjson n "${#ids[@]}" -e '.totals.progression >= $n and .totals.session_start >= $n and .totals.resource > $n' > /dev/null
}
for _ in $(seq 30); do arrived && break; sleep 1; done
analytics /v1/admin/live | jq -c '{totals, concurrentPlayers, playersToday}'
today=$(date -u +%F)
analytics "/v1/admin/kpis?from=$today&to=$today" | jq -c '.days[0] | {date, dau, newPlayers}'
analytics "/v1/admin/kpis/sessions?from=$today&to=$today" | jq -c '.days[0] | {sessions, players}'
analytics "/v1/admin/kpis/funnel?steps=session_start,progression,resource&from=$today&to=$today" |
  jq -c '[.steps[] | {name, players}]'
# The dashboard draws the same reports, and follows this stream of the live counters.
curl --silent --fail "http://$analytics_ip/dashboard" | grep -q '<title>Flotilla analytics</title>'
analytics /v1/admin/live/stream --max-time 3 --no-buffer 2>/dev/null | grep -m1 '^event: live' || true

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
  player API:     http://$player_ip/v1/openapi.json
  economy API:    http://$economy_ip/v1/openapi.json      (audit: POST /v1/admin/audit with the admin key)
  analytics API:  http://$analytics_ip/v1/openapi.json    (KPIs: GET /v1/admin/kpis?from=$today&to=$today with the admin key)
  dashboard:      http://$analytics_ip/dashboard             (the admin key: kubectl -n flotilla-system get secret flotilla-analytics -o jsonpath='{.data.admin-key}' | base64 -d)
  logs:           $(cluster_dir "$CLUSTER_NAME")/runner/pods/*/logs/
  stop:           ./x demo down
DONE
