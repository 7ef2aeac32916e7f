#!/usr/bin/env bash
# The cost of sp-reliable's layers: PUSH -> PULL throughput (local_thr /
# remote_thr, two processes, tcp on 127.0.0.1) and REQ/REP round trips
# (local_lat / remote_lat), plain beside heartbeat/1, ack/1 (its default
# 10 ms acknowledgement delay, and 1 ms) and both, interleaved per
# repetition; prints medians (rate and CPU time per message) as a table.
#
# Usage: bash benches/run_reliable.sh [OUTDIR]
# env: REPS (3), THR64 (2000000), THR1K (500000), LAT_N (20000), SPAWN (0/1)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
OUT=${1:-/tmp/spbench-reliable/$(date +%Y%m%d-%H%M%S)}
REPS=${REPS:-3}
THR64=${THR64:-2000000}
THR1K=${THR1K:-500000}
LAT_N=${LAT_N:-20000}
mkdir -p "$OUT/bin"
RES=$OUT/results.txt
: >"$RES"

cd "$ROOT"
cargo build --release --bench local_thr --bench remote_thr --bench local_lat --bench remote_lat \
    --message-format=json 2>/dev/null |
    python3 -c '
import json, sys, shutil
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "bench" in m["target"]["kind"]:
        shutil.copy(m["executable"], sys.argv[1] + "/" + m["target"]["name"])
' "$OUT/bin"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# name -> environment
declare -A CFG=(
    [plain]=""
    [heartbeat]="SPBENCH_HEARTBEAT=1"
    [ack]="SPBENCH_ACK=1"
    [ack-1ms]="SPBENCH_ACK=1 SPBENCH_ACK_DELAY_MS=1"
    [heartbeat+ack]="SPBENCH_HEARTBEAT=1 SPBENCH_ACK=1"
)
ORDER="plain heartbeat ack ack-1ms heartbeat+ack"

run_pair() { # label env server client size n
    local label=$1 envs=$2 server=$3 client=$4 size=$5 n=$6
    local url="tcp://127.0.0.1:$(port)"
    local line cpu_s cpu_c
    cpu_s=$(mktemp) cpu_c=$(mktemp)
    # CPU time of both processes too: on a shared machine it moves far less
    # than the wall-clock rate does
    line=$( (env $envs SPBENCH_SPAWN=${SPAWN:-0} /usr/bin/time -f "%U %S" -o "$cpu_s" \
                 timeout 120 "$OUT/bin/$server" "$url" "$size" "$n" &
             sleep 0.3
             env $envs SPBENCH_SPAWN=${SPAWN:-0} /usr/bin/time -f "%U %S" -o "$cpu_c" \
                 timeout 120 "$OUT/bin/$client" "$url" "$size" "$n" 2>>"$OUT/stderr.log"
             wait) 2>>"$OUT/stderr.log" | grep '^RESULT' || echo "FAIL $label $server $size")
    local cpu
    cpu=$(cat "$cpu_s" "$cpu_c" | awk '{ t += $1 + $2 } END { printf "%.3f", t }')
    rm -f "$cpu_s" "$cpu_c"
    echo "layers=$label cpu_s=$cpu $line" | tee -a "$RES"
}

for rep in $(seq 1 "$REPS"); do
    echo "== repetition $rep of $REPS (load: $(cut -d' ' -f1-3 /proc/loadavg))"
    for c in $ORDER; do
        run_pair "$c" "${CFG[$c]}" local_thr remote_thr 64 "$THR64"
        run_pair "$c" "${CFG[$c]}" local_thr remote_thr 1024 "$THR1K"
        run_pair "$c" "${CFG[$c]}" local_lat remote_lat 64 "$LAT_N"
    done
done

python3 - "$RES" <<'PY' | tee "$OUT/summary.md"
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    if "RESULT" not in line:
        continue
    kv = dict(re.findall(r"(\w+)=(\S+)", line))
    key = (kv["test"], kv["size"], kv["layers"])
    rows.setdefault(key, []).append(kv)
order = ["plain", "heartbeat", "ack", "ack-1ms", "heartbeat+ack"]
print("| test | size | layers | runs | median [min–max] | ÷ plain | CPU µs per message (both processes), median | ÷ plain |")
print("|---|---|---|---|---|---|---|---|")
for test, size in [("thr", "64"), ("thr", "1024"), ("lat", "64")]:
    field = "msgps" if test == "thr" else "p50_us"
    base = cbase = None
    for l in order:
        rs = rows.get((test, size, l), [])
        if not rs:
            continue
        vals = sorted(float(r[field]) for r in rs)
        med = statistics.median(vals)
        # per message: thr counts messages, lat round trips (two messages)
        per = [float(r["cpu_s"]) * 1e6 / (int(r.get("msgs", 0)) or 2 * int(r["n"])) for r in rs]
        cpu = statistics.median(per)
        if l == "plain":
            base, cbase = med, cpu
        ratio = f"{med / base:.2f}×" if base else "–"
        cratio = f"{cpu / cbase:.2f}×" if cbase else "–"
        if test == "thr":
            cell = f"{med:,.0f} [{vals[0]:,.0f}–{vals[-1]:,.0f}] msgs/s"
        else:
            cell = f"{med:.1f} [{vals[0]:.1f}–{vals[-1]:.1f}] µs p50"
        print(f"| {test} | {size} B | {l} | {len(rs)} | {cell} | {ratio} | {cpu:.2f} | {cratio} |")
PY
echo "results: $RES"
