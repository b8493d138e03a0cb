#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo use, when a command they provide is
# missing (a fresh machine). Go, Rust and Python come with the machine image.
#
#   e2e/install-packages.sh          everything ./x test needs
#   e2e/install-packages.sh demo     only what ./x demo needs
set -euo pipefail
declare -A packages=([openssl]=openssl [curl]=curl [jq]=jq [setsid]=util-linux [shuf]=coreutils
                     [pgrep]=procps [python3]=python3)
if [[ ${1:-} != demo ]]; then
  # Match checkpoints and the services (redis), OpenSearch for the services (a JDK and Maven; the
  # machine image usually has them), the Prometheus and ops-console end-to-end tests.
  packages+=([redis-server]=redis-server [prometheus]=prometheus [chromium]=chromium
             [chromedriver]=chromium-driver [java]=openjdk-17-jdk-headless [mvn]=maven [ss]=iproute2)
fi
missing=()
for cmd in "${!packages[@]}"; do
  command -v "$cmd" > /dev/null || missing+=("${packages[$cmd]}")
done
if (( ${#missing[@]} )); then
  echo "installing: ${missing[*]}" >&2
  [[ $(id -u) == 0 ]] || { echo "run as root, or install them yourself" >&2; exit 1; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" > /dev/null
fi
