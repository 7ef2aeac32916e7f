#!/usr/bin/env bash
# Side-by-side crypto benchmark: spstack's stacks (plain, hop-encrypted,
# signed, both; PUSH -> PULL over tcp) and the primitives they use, beside
# ../shared/perf-anchors/cryptobench (chacha20poly1305 0.11 / ed25519-dalek 3,
# default build), all in one run.
#
# Usage: bash benches/run_crypto.sh [OUTDIR]
#   env: QUICK=1     smoke run
#        BEFORE=DIR  a second checkout (e.g. `git worktree add --detach DIR main`):
#                    its benches/crypto.rs runs in the same run, its RESULT lines
#                    relabelled lib=before:<lib>, for before/after ratios taken
#                    at the same moment; BEFORE_TARGET=its cargo target dir
#                    (default DIR/target; sharing this tree's saves a build)
#        BEFORE_EXE=PATH  the BEFORE tree's bench executable, already built (a
#                    previous run's OUTDIR/crypto-before); BEFORE then only labels it
#        ROUNDS=1    before and after alternate this many times (the summary
#                    takes the median of the rounds' medians): on a shared
#                    machine, load that changes between the two is averaged
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ANCHORS=${ANCHORS:-$(cd "$ROOT/../shared/perf-anchors" && pwd)}
OUT=${1:-/tmp/spbench-crypto/$(date +%Y%m%d-%H%M%S)}
ROUNDS=${ROUNDS:-1}
mkdir -p "$OUT"
RES=$OUT/results.txt
: >"$RES"

# the bench executable of the checkout in $1 (built first), copied into OUT
# so that a later build in a shared target dir cannot replace it
bench_exe() {
  local dir=$1 target=$2 name=$3 exe
  exe=$(cd "$dir" && CARGO_TARGET_DIR=$target cargo bench --quiet --bench crypto --no-run \
      --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    j = json.loads(line)
    if j.get("reason") == "compiler-artifact" and j.get("executable") and j["target"]["name"] == "crypto":
        print(j["executable"])' | tail -1)
  [ -n "$exe" ] || { echo "no bench executable in $dir" >&2; exit 1; }
  cp "$exe" "$OUT/$name"
  echo "$OUT/$name"
}

echo "== anchor: cryptobench (default build, runtime CPU detection)"
CB=/tmp/cryptobench-src
# the target dir outside the copied sources, so a second run rebuilds nothing
rm -rf "$CB"; mkdir -p "$CB"; cp -r "$ANCHORS/cryptobench/." "$CB/"
(cd "$CB" && cargo build --release --quiet --target-dir /tmp/cryptobench-target)
VARIANT=default-runtime-detect timeout 120 /tmp/cryptobench-target/release/cryptobench | tee -a "$RES"

echo "== building benches/crypto.rs (release)"
AFTER_EXE=$(bench_exe "$ROOT" "${CARGO_TARGET_DIR:-$ROOT/target}" crypto-after)
if [ -n "${BEFORE_EXE:-}" ]; then
  # an executable a previous run built (OUTDIR/crypto-before): no rebuild
  cp "$BEFORE_EXE" "$OUT/crypto-before.given"
  BEFORE_EXE=$OUT/crypto-before.given
  BEFORE=${BEFORE:-given}
  echo "before: executable ${BEFORE_EXE} (tree: $BEFORE)" | tee -a "$OUT/trees.txt"
elif [ -n "${BEFORE:-}" ]; then
  BEFORE_EXE=$(bench_exe "$BEFORE" "${BEFORE_TARGET:-$BEFORE/target}" crypto-before)
  echo "before: $BEFORE ($(git -C "$BEFORE" rev-parse --short HEAD))" | tee -a "$OUT/trees.txt"
fi
echo "after: $ROOT ($(git -C "$ROOT" rev-parse --short HEAD))" | tee -a "$OUT/trees.txt"

# the machine is shared: what else ran is part of the figures
uptime | tee -a "$OUT/load.txt"
for r in $(seq 1 "$ROUNDS"); do
  if [ -n "${BEFORE:-}" ]; then
    echo "== round $r: before"
    SPBENCH_QUICK=${QUICK:-0} timeout 900 "$BEFORE_EXE" 2>/dev/null \
      | sed -E "s/^RESULT lib=([^ ]+)/RESULT lib=before:\1 round=$r/" | tee -a "$RES"
  fi
  echo "== round $r: after"
  SPBENCH_QUICK=${QUICK:-0} timeout 900 "$AFTER_EXE" 2>/dev/null \
    | sed -E "s/^RESULT lib=([^ ]+)/RESULT lib=\1 round=$r/" | tee -a "$RES"
done

uptime | tee -a "$OUT/load.txt"
python3 "$HERE/summarize_crypto.py" "$RES" | tee "$OUT/summary.md"
echo "results: $RES"
