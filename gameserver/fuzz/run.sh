#!/usr/bin/env bash
# Fuzzes the game server's decoders and state machines with cargo-fuzz (libFuzzer); see
# docs/fuzzing.md. Installs cargo-fuzz if missing, builds every target once, runs each for
# SECONDS (default 30), and fails if any target finds a crash.
#
#   gameserver/fuzz/run.sh [SECONDS]
#
# Environment:
#   FUZZ_TARGETS     targets to run, space-separated (default: all)
#   FUZZ_SANITIZER   address (default when the toolchain ships its runtime) or none
#   FLOTILLA_CACHE   where build output, the working corpora (grown by every run, and the
#                    start of the next one) and crash artifacts go (default ~/.cache/flotilla)
set -euo pipefail

fuzz_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${FLOTILLA_CACHE:-$HOME/.cache/flotilla}
work=$cache/fuzz
seconds=${1:-30}
[[ $seconds =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [SECONDS]" >&2; exit 2; }

# Largest input per target: a bit over each format's own limit, so the limits are exercised.
declare -A max_len=(
  [wire_datagram]=1200       # MAX_DATAGRAM is 1150
  [wire_control]=4200        # one frame of MAX_CONTROL (4096) and its prefix
  [game_session]=1024        # about 100 operations; ticks are capped per input anyway
  [checkpoint_restore]=4096  # room for hundreds of orbs and dozens of players
  [connection_token]=2100    # MAX_TOKEN_LEN is 2048, raw or once signed
)
targets=${FUZZ_TARGETS:-wire_datagram wire_control game_session checkpoint_restore connection_token}
for target in $targets; do
  [[ -n ${max_len[$target]:-} ]] || { echo "unknown fuzz target $target" >&2; exit 2; }
done

# cargo-fuzz is pinned so every machine builds the same way; cargo caches it in ~/.cargo/bin.
cargo_fuzz_version=0.13.2
export PATH=$HOME/.cargo/bin:$PATH
if [[ $(cargo fuzz --version 2> /dev/null) != "cargo-fuzz $cargo_fuzz_version" ]]; then
  echo "installing cargo-fuzz $cargo_fuzz_version" >&2
  start=$(date +%s)
  cargo install --quiet --locked cargo-fuzz --version "$cargo_fuzz_version"
  echo "cargo-fuzz installed in $(( $(date +%s) - start )) s" >&2
fi

# Only stable Rust is installed. cargo-fuzz asks rustc for -Zsanitizer=address, which stable
# accepts under RUSTC_BOOTSTRAP=1; the stable toolchain ships the ASan runtime. Without it,
# the targets still run, with coverage feedback and overflow checks but no AddressSanitizer.
sysroot=$(rustc --print sysroot)
host=$(rustc -vV | sed -n 's/^host: //p')
if [[ -z ${FUZZ_SANITIZER:-} ]]; then
  if [[ -f $sysroot/lib/rustlib/$host/lib/librustc-stable_rt.asan.a ]]; then
    FUZZ_SANITIZER=address
  else
    echo "this toolchain has no ASan runtime: fuzzing without a sanitizer" >&2
    FUZZ_SANITIZER=none
  fi
fi
export RUSTC_BOOTSTRAP=1
fuzz=(cargo fuzz)
flags=(--fuzz-dir "$fuzz_dir" --sanitizer "$FUZZ_SANITIZER" --target-dir "$cache/fuzz-target")

mkdir -p "$work/logs"
start=$(date +%s)
if ! "${fuzz[@]}" build "${flags[@]}" > "$work/logs/build.log" 2>&1; then
  tail -40 "$work/logs/build.log" >&2
  echo "building the fuzz targets failed; log: $work/logs/build.log" >&2
  exit 1
fi
echo "built the fuzz targets (sanitizer: $FUZZ_SANITIZER) in $(( $(date +%s) - start )) s" >&2

passed=0 failed=0
for target in $targets; do
  corpus=$work/corpus/$target artifacts=$work/artifacts/$target log=$work/logs/$target.log
  mkdir -p "$corpus" "$artifacts"
  # The first corpus directory is where libFuzzer adds what it finds; the committed seeds are
  # only read. A hang of 10 s on one input counts as a crash.
  rc=0
  "${fuzz[@]}" run "${flags[@]}" "$target" "$corpus" "$fuzz_dir/corpus/$target" -- \
    -max_total_time="$seconds" -max_len="${max_len[$target]}" -timeout=10 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 > "$log" 2>&1 || rc=$?
  if (( rc == 0 )); then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    echo "$target: ${runs:-?} runs in $seconds s (${rate:-?}/s), corpus $(ls "$corpus" | wc -l) inputs"
    passed=$((passed + 1))
  else
    echo "$target: FAILED (exit $rc); log: $log" >&2
    grep -E -A3 "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer" "$log" | head -20 >&2 || true
    grep -E "^artifact_prefix|Test unit written to" "$log" >&2 || true
    failed=$((failed + 1))
  fi
done
echo "fuzz: $passed passed, $failed failed"
(( failed == 0 ))
