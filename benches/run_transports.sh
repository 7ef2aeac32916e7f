#!/usr/bin/env bash
# Side-by-side transport benchmark: PUSH -> PULL at 64 B and 64 KiB over
# tcp, tls+tcp, ws, wss and quic — spstack (benches/transports.rs) beside nng
# through pynng on the same transports and certificate, plus nng's C harness
# (../shared/perf-anchors bench_nng) for tcp and ws, all in one run.
#
# Usage: bash benches/run_transports.sh [OUTDIR]     env: QUICK=1 for a smoke run
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ANCHORS=${ANCHORS:-$(cd "$ROOT/../shared/perf-anchors" && pwd)}
ABIN=${ABIN:-/tmp/perf-anchors/bin}
OUT=${1:-/tmp/spbench-transports/$(date +%Y%m%d-%H%M%S)}
QUICK=${QUICK:-0}
SECS=2.5; [ "$QUICK" = 1 ] && SECS=0.5
mkdir -p "$OUT"
RES=$OUT/results.txt
: >"$RES"

[ -x "$ABIN/bench_nng" ] || make -s -C "$ANCHORS" BIN="$ABIN" >/dev/null
PORT=$((34000 + RANDOM % 20000))
echo "== nng C harness (bench_nng) over tcp and ws"
for url in tcp ws; do
  for size in 64 65536; do
    PORT=$((PORT + 1))
    case $url in tcp) u="tcp://127.0.0.1:$PORT";; ws) u="ws://127.0.0.1:$PORT/bench";; esac
    timeout 60 "$ABIN/bench_nng" thr "$u" "$size" "$SECS" 2>>"$OUT/stderr.log" | tee -a "$RES" || true
  done
done

echo "== spstack over tcp, tls+tcp, ws, wss, quic and pynng over all but quic (benches/transports.rs, release)"
cd "$ROOT"
SPBENCH_QUICK=$QUICK timeout 900 cargo bench --quiet --bench transports 2>>"$OUT/stderr.log" | tee -a "$RES"

python3 - "$RES" <<'PY' | tee "$OUT/summary.md"
import sys
rows = [dict(p.split("=", 1) for p in l.split()[1:] if "=" in p) for l in open(sys.argv[1]) if l.startswith("RESULT ")]
def scheme(r):
    u = r.get("url", "")
    return u.split("://")[0] if "://" in u else u
print("| transport | size | spstack msgs/s (MB/s) | nng via pynng | nng C harness |")
print("|---|---|---|---|---|")
for s in ["tcp", "tls+tcp", "ws", "wss", "quic"]:
    for size in ["64", "65536"]:
        def cell(lib):
            for r in rows:
                if r.get("lib") == lib and scheme(r) == s and r.get("size") == size:
                    return f"{float(r['msgps']):.0f} ({float(r['MBps']):.1f})"
            return "-"
        print(f"| {s} | {size} | {cell('spstack')} | {cell('nng-pynng')} | {cell('nng')} |")
PY
echo "results: $RES"
