#!/usr/bin/env bash
# Stops the storage servers up.sh started in DIR (FerretDB, redis-server, OpenSearch) and leaves
# no process behind. Does nothing for servers that are not running; the data and logs stay in DIR.
#
#   e2e/storage/down.sh --dir DIR
#
# Each server gets SIGTERM (OpenSearch closes its node cleanly in about 2 s); whatever is still
# alive after 20 s is killed.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/common.sh"

dir=
while [[ $# -gt 0 ]]; do
  case $1 in
    --dir) dir=$2; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
[[ -n $dir ]] || die "--dir is required (see --help)"
[[ -d $dir ]] || exit 0

pids=()
for name in "${SERVERS[@]}"; do
  pid=$(server_pid "$dir" "$name")
  if [[ -n $pid ]]; then
    kill -TERM "$pid" 2> /dev/null || true
    pids+=("$pid")
  fi
done
for _ in $(seq 100); do
  any=0
  for pid in "${pids[@]}"; do alive "$pid" && any=1; done
  (( any )) || break
  sleep 0.2
done
for pid in "${pids[@]}"; do
  if alive "$pid"; then
    log "pid $pid did not stop within 20s; killing it"
    kill -KILL "$pid" 2> /dev/null || true
  fi
done
for name in "${SERVERS[@]}"; do rm -f "$dir/$name.pid"; done
rm -f "$dir/env"
(( ${#pids[@]} )) && log "stopped ${#pids[@]} server(s) in $dir"
exit 0
