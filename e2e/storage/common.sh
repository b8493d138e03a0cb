# Shared settings of the storage scripts; sourced, not run.
SERVERS=(ferretdb redis log-redis opensearch)

log() { printf '%s [storage] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Is the process with this pid alive and not a zombie?
alive() { [[ -d /proc/$1 ]] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

# Prints the pid in DIR/NAME.pid if that process is alive and still the server started there
# (a recycled pid belongs to some other program), else nothing.
server_pid() { # dir name
  local pid cmd
  pid=$(cat "$1/$2.pid" 2>/dev/null) || return 0
  [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 0
  cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null) || return 0
  case $2 in
    ferretdb) [[ $cmd == *ferretdb* ]] ;;
    redis) [[ $cmd == *redis-server* ]] ;;
    opensearch) [[ $cmd == *dev.flotilla.opensearch.Main* ]] ;;
  esac && echo "$pid"
  return 0
}
