#!/usr/bin/env bash
# Starts the storage servers the player services' tests run against, on one loopback address:
# FerretDB (MongoDB wire protocol, SQLite handler), redis-server, a second redis-server with an
# AOF fsynced on every write (the analytics log's), and a single-node OpenSearch.
#
#   e2e/storage/up.sh --dir DIR [--host 127.0.0.1]
#
# Each server gets a free port in 20000-31999 and keeps its data and log in DIR (DIR/ferretdb/,
# DIR/redis/, DIR/opensearch/, DIR/<server>.log, DIR/<server>.pid). Data stays in DIR across
# down.sh/up.sh; remove DIR for a clean slate. Waits until every server answers (FerretDB a
# MongoDB ping, redis PING, OpenSearch cluster health yellow), then writes DIR/env and prints its
# path on stdout:
#
#   FLOTILLA_MONGO_URL=mongodb://HOST:PORT/
#   FLOTILLA_REDIS_URL=redis://HOST:PORT/
#   FLOTILLA_OPENSEARCH_URL=http://HOST:PORT
#   FLOTILLA_ANALYTICS_LOG_REDIS_URL=redis://HOST:PORT/   (appendonly yes, appendfsync always)
#   FLOTILLA_STORAGE_DIR=DIR       (the economy's crash test restarts FerretDB from its pid file)
#
# (use it with: set -a; source DIR/env; set +a). On a failure it prints the tail of the failing
# server's log, stops what it started and exits non-zero. Stop with e2e/storage/down.sh --dir DIR.
#
#   FLOTILLA_OPENSEARCH_HEAP       JVM heap of OpenSearch (default 512m)
#   FLOTILLA_OPENSEARCH_JAVA_OPTS  more JVM options for OpenSearch (split on spaces)
#   FLOTILLA_CACHE                 where build.sh keeps the servers (default ~/.cache/flotilla)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/common.sh"

dir=
host=127.0.0.1
while [[ $# -gt 0 ]]; do
  case $1 in
    --dir) dir=$2; shift 2 ;;
    --host) host=$2; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
[[ -n $dir ]] || die "--dir is required (see --help)"
[[ $host =~ ^127\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] &&
  (( BASH_REMATCH[1] <= 255 && BASH_REMATCH[2] <= 255 && BASH_REMATCH[3] <= 255 )) ||
  die "--host must be a loopback address 127.x.y.z"
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
[[ $dir != *[[:space:]]* ]] || die "--dir must not contain whitespace (FerretDB's SQLite URL)"
for name in "${SERVERS[@]}"; do
  pid=$(server_pid "$dir" "$name")
  [[ -n $pid ]] && die "$name is already running in $dir (pid $pid); stop it with e2e/storage/down.sh --dir $dir"
done
started_at=$(date +%s.%N)

bin=$("$here/build.sh")
command -v redis-server > /dev/null || die "redis-server is missing; run e2e/install-packages.sh"
command -v redis-cli > /dev/null || die "redis-cli is missing; run e2e/install-packages.sh"
command -v java > /dev/null || die "java is missing (JDK 17)"

# Anything that fails from here on stops what was started.
up=0
on_exit() {
  (( up )) && return
  log "start-up failed; logs are in $dir/*.log"
  "$here/down.sh" --dir "$dir" > /dev/null 2>&1 || true
}
trap on_exit EXIT
rm -f "$dir/env"

# --- ports ---------------------------------------------------------------------------------
# Below the kernel's ephemeral range (32768+), so an outgoing connection never holds one of them.
taken=" "
is_free() { # port: nobody listens on it (any address) and it can be bound on $host
  if command -v ss > /dev/null; then
    [[ -z $(ss -Htln "sport = :$1") ]] || return 1
  fi
  python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1], int(sys.argv[2])))' \
    "$host" "$1" 2> /dev/null
}
free_port() {
  local p
  for p in $(shuf -i 20000-31999 -n 200); do
    [[ $taken == *" $p "* ]] && continue
    if is_free "$p"; then echo "$p"; return 0; fi
  done
  die "no free port found in 20000-31999 on $host"
}
mongo_port=$(free_port); taken+="$mongo_port "
redis_port=$(free_port); taken+="$redis_port "
log_redis_port=$(free_port); taken+="$log_redis_port "
os_port=$(free_port); taken+="$os_port "
os_transport_port=$(free_port); taken+="$os_transport_port "

# --- processes -----------------------------------------------------------------------------
start() { # name command...
  local name=$1; shift
  setsid "$@" > "$dir/$name.log" 2>&1 < /dev/null &
  echo "$!" > "$dir/$name.pid"
}

mkdir -p "$dir/ferretdb/data"
# --debug-addr=- : no HTTP debug/metrics listener (its default 127.0.0.1:8088 would clash between
# instances). --state-dir keeps state.json (instance UUID) out of the working directory.
# The log level can be set with FERRETDB_LOG_LEVEL (DEBUG, INFO, WARN, ERROR).
start ferretdb "$bin/ferretdb" --handler=sqlite --sqlite-url="file:$dir/ferretdb/data/" \
  --state-dir="$dir/ferretdb" --listen-addr="$host:$mongo_port" --debug-addr=- --telemetry=disable

mkdir -p "$dir/redis"
start redis redis-server --bind "$host" --port "$redis_port" --save '' --appendonly no \
  --dir "$dir/redis" --daemonize no --logfile ''
# The analytics log: an acknowledged append must survive a crash, so every write is fsynced.
mkdir -p "$dir/log-redis"
start log-redis redis-server --bind "$host" --port "$log_redis_port" --save '' --appendonly yes \
  --appendfsync always --dir "$dir/log-redis" --daemonize no --logfile ''

heap=${FLOTILLA_OPENSEARCH_HEAP:-512m}
read -ra extra_java_opts <<< "${FLOTILLA_OPENSEARCH_JAVA_OPTS:-}"
mkdir -p "$dir/opensearch/tmp"
# Serial GC and the C1 compiler only: about 55 MB less memory and a quicker start than G1 with
# C2, and plenty for test loads. The -D options are the ones OpenSearch's own jvm.options sets.
start opensearch java -Xms"$heap" -Xmx"$heap" -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
  -Djava.awt.headless=true \
  -Djava.io.tmpdir="$dir/opensearch/tmp" -Dfile.encoding=UTF-8 \
  -Dlog4j.shutdownHookEnabled=false -Dlog4j2.disable.jmx=true -Dlog4j2.formatMsgNoLookups=true \
  -Dio.netty.noUnsafe=true -Dio.netty.noKeySetOptimization=true -Dio.netty.recycler.maxCapacityPerThread=0 \
  "${extra_java_opts[@]}" \
  -cp "$bin/opensearch/flotilla-opensearch.jar:$bin/opensearch/lib/*" dev.flotilla.opensearch.Main \
  --host "$host" --http-port "$os_port" --transport-port "$os_transport_port" \
  --dir "$dir/opensearch" --cluster-name flotilla

# --- readiness -----------------------------------------------------------------------------
wait_for() { # name timeout-seconds command...
  local name=$1 limit=$2; shift 2
  local deadline=$(( $(date +%s) + limit )) pid
  pid=$(cat "$dir/$name.pid")
  until "$@" > /dev/null 2>&1; do
    if ! alive "$pid"; then
      log "$name exited during start-up; the end of $dir/$name.log:"
      tail -n 30 "$dir/$name.log" >&2
      die "$name did not start"
    fi
    if (( $(date +%s) >= deadline )); then
      log "$name did not answer within ${limit}s; the end of $dir/$name.log:"
      tail -n 30 "$dir/$name.log" >&2
      die "$name did not start"
    fi
    sleep 0.2
  done
}
# A MongoDB OP_MSG {ping: 1} on the wire, answered with ok: 1. (`ferretdb ping` needs auth.)
mongo_ping() {
  python3 - "$host" "$mongo_port" <<'PY'
import socket, struct, sys
def cstr(s): return s.encode() + b"\0"
body = (b"\x10" + cstr("ping") + struct.pack("<i", 1)
        + b"\x02" + cstr("$db") + struct.pack("<i", 6) + cstr("admin"))
doc = struct.pack("<i", len(body) + 5) + body + b"\0"
msg = struct.pack("<I", 0) + b"\0" + doc  # flagBits, section kind 0, body
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
s.sendall(struct.pack("<iiii", 16 + len(msg), 1, 0, 2013) + msg)
buf = b""
while len(buf) < 4 or len(buf) < struct.unpack("<i", buf[:4])[0]:
    chunk = s.recv(65536)
    if not chunk:
        break
    buf += chunk
i = buf.find(b"\x01ok\x00")
sys.exit(0 if i >= 0 and struct.unpack("<d", buf[i + 4:i + 12])[0] == 1.0 else 1)
PY
}
redis_ping() { [[ $(redis-cli -h "$host" -p "$redis_port" ping) == PONG ]]; }
log_redis_ping() { [[ $(redis-cli -h "$host" -p "$log_redis_port" ping) == PONG ]]; }
# Main prints its ready line once it has also set the cluster's default of 0 replicas.
os_health() {
  curl -sf --max-time 5 "http://$host:$os_port/_cluster/health?wait_for_status=yellow&timeout=3s" |
    grep -q '"status":"\(yellow\|green\)"' && grep -q 'flotilla-opensearch ready' "$dir/opensearch.log"
}
wait_for ferretdb 30 mongo_ping
wait_for redis 15 redis_ping
wait_for log-redis 15 log_redis_ping
wait_for opensearch 180 os_health

cat > "$dir/env" <<ENV
FLOTILLA_MONGO_URL=mongodb://$host:$mongo_port/
FLOTILLA_REDIS_URL=redis://$host:$redis_port/
FLOTILLA_OPENSEARCH_URL=http://$host:$os_port
FLOTILLA_ANALYTICS_LOG_REDIS_URL=redis://$host:$log_redis_port/
FLOTILLA_STORAGE_DIR=$dir
ENV
up=1
log "up in $(python3 -c "print(f'{$(date +%s.%N) - $started_at:.1f}')")s: mongodb://$host:$mongo_port/ (FerretDB)," \
  "redis://$host:$redis_port/, http://$host:$os_port (OpenSearch)"
echo "$dir/env"
