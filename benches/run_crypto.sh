#!/usr/bin/env bash
# Side-by-side crypto benchmark: spstack's stacks (plain, hop-encrypted,
# signed, both; PUSH -> PULL over tcp) and the primitives they use, beside
# ../shared/perf-anchors/cryptobench (chacha20poly1305 0.11 / ed25519-dalek 3,
# default build), all in one run.
#
# Usage: bash benches/run_crypto.sh [OUTDIR]     env: QUICK=1 for a smoke run
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ANCHORS=${ANCHORS:-$(cd "$ROOT/../shared/perf-anchors" && pwd)}
OUT=${1:-/tmp/spbench-crypto/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
RES=$OUT/results.txt
: >"$RES"

echo "== anchor: cryptobench (default build, runtime CPU detection)"
CB=/tmp/cryptobench-src
rm -rf "$CB"; mkdir -p "$CB"; cp -r "$ANCHORS/cryptobench/." "$CB/"
(cd "$CB" && cargo build --release --quiet --target-dir "$CB/t-default")
VARIANT=default-runtime-detect timeout 120 "$CB/t-default/release/cryptobench" | tee -a "$RES"

echo "== spstack: benches/crypto.rs (release)"
cd "$ROOT"
SPBENCH_QUICK=${QUICK:-0} timeout 600 cargo bench --quiet --bench crypto 2>/dev/null | tee -a "$RES"

python3 "$HERE/summarize_crypto.py" "$RES" | tee "$OUT/summary.md"
echo "results: $RES"
