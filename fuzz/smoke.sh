#!/usr/bin/env bash
# A bounded fuzz smoke: every target for SECONDS (default 10) each, one at
# a time, starting from the committed corpus. New inputs go to a temporary
# directory (the committed corpus is not changed); a crash stops the script
# with libFuzzer's report and leaves the input in fuzz/artifacts/<target>/.
# Needs nightly and cargo-fuzz (see README.md). Not part of scripts/test.sh:
# the suite only replays the corpus (crates/sp-fuzz-targets/tests/corpus.rs).
#
#   bash fuzz/smoke.sh              # every target, 10 s each
#   SECONDS_EACH=60 bash fuzz/smoke.sh noise_record integrity
set -euo pipefail
cd "$(dirname "$0")"
each="${SECONDS_EACH:-10}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(ls fuzz_targets | sed 's/\.rs$//')
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cargo +nightly fuzz build
for t in "${targets[@]}"; do
  echo "== $t (${each} s)"
  mkdir -p "$work/$t"
  # no per-input leak check for the network-level targets: they keep a
  # runtime and sockets across inputs (see README.md)
  leaks=1
  case "$t" in socket_* | ws_upgrade) leaks=0 ;; esac
  if ! cargo +nightly fuzz run "$t" "$work/$t" "corpus/$t" -- \
    -max_total_time="$each" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 \
    -detect_leaks="$leaks" \
    >"$work/$t.log" 2>&1; then
    tail -n 60 "$work/$t.log"
    echo "== $t found a crash: see fuzz/artifacts/$t/"
    exit 1
  fi
  grep -E 'stat::number_of_executed_units' "$work/$t.log" || true
done
echo "== smoke passed: ${#targets[@]} targets, ${each} s each"
