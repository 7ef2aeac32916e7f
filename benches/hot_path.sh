#!/usr/bin/env bash
# Load-independent cost of one message: user-space instructions (callgrind),
# system calls and context switches (perf's software events and tracepoints),
# per message and per side, for the perf tools in BIN (default: build them and
# copy them to OUTDIR/bin, so a later build cannot change what is measured).
#
# Usage: bash benches/hot_path.sh [OUTDIR]
#   env: BIN=DIR          measure the tools already in DIR (local_thr remote_thr local_lat remote_lat)
#        MODES="thr:tcp:64 thr:ipc:64 thr:tcp:1024 thr:tcp:65536 thr:inproc:64 lat:tcp:64 lat:ipc:64"
#        RUNTIMES="block spawn"   where the tool's body runs (block_on or SPBENCH_SPAWN=1)
#        CG=1 SYS=1       callgrind / perf-stat halves on or off
#        N1, N2           message counts of the two runs whose difference is measured
#                         (startup and teardown cancel out); default per size below
# Output: one line per (mode, runtime, side) to stdout and OUTDIR/hot_path.txt:
#   HOT mode=thr:tcp:64 rt=block side=recv ir_per_msg=.. sys_per_msg=.. ctxsw_per_msg=.. (and syscalls by name)
# Instruction counts come from callgrind runs (valgrind serialises threads, so
# batching under it differs from a native run; the counts are repeatable on a
# busy machine, which is what they are for). System calls and context
# switches come from native runs under `perf stat` (software events; the
# syscall tracepoints), so they show the batching a real run gets.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
OUT=${1:-/tmp/hot_path/$(date +%Y%m%d-%H%M%S)}
MODES=${MODES:-"thr:tcp:64 thr:ipc:64 thr:tcp:1024 thr:tcp:65536 thr:inproc:64 lat:tcp:64 lat:ipc:64"}
RUNTIMES=${RUNTIMES:-"block spawn"}
CG=${CG:-1}
SYS=${SYS:-1}
mkdir -p "$OUT"
LOG=$OUT/hot_path.txt
: >"$LOG"
if [ -z "${BIN:-}" ]; then
  ARTS=$( cd "$ROOT" && cargo build --release --benches --message-format=json 2>>"$OUT/build.log" ) || { echo "build failed"; exit 1; }
  BIN=$OUT/bin; mkdir -p "$BIN"
  for t in local_thr remote_thr local_lat remote_lat; do
    b=$(printf '%s\n' "$ARTS" | python3 -c '
import sys, json
for l in sys.stdin:
    try: j = json.loads(l)
    except ValueError: continue
    if j.get("reason") == "compiler-artifact" and "bench" in j["target"]["kind"] and j["target"]["name"] == sys.argv[1] and j.get("executable"):
        print(j["executable"])' "$t" | tail -1)
    cp "$b" "$BIN/$t"
  done
fi
PORT=$((40000 + RANDOM % 10000))
IPC=/tmp/hot_path.$$.ipc
url() { case $1 in tcp) PORT=$((PORT + 1)); echo "tcp://127.0.0.1:$PORT";; ipc) rm -f "$IPC"; echo "ipc://$IPC";; inproc) echo "inproc://hot_path";; esac; }
counts() { # KIND SIZE -> N1 N2
  case $1:$2 in
    lat:*) echo "${N1:-2000} ${N2:-12000}";;
    thr:64|thr:1024) echo "${N1:-20000} ${N2:-220000}";;
    *) echo "${N1:-2000} ${N2:-12000}";;
  esac
}
# runs the pair (or the single inproc process) with WRAP_L / WRAP_R around each side
pair() { # KIND TRANSPORT SIZE N RT TAG
  local kind=$1 tr=$2 sz=$3 n=$4 rt=$5 tag=$6 u spawn=0 lpid
  [ "$rt" = spawn ] && spawn=1
  u=$(url "$tr")
  if [ "$tr" = inproc ]; then
    SPBENCH_SPAWN=$spawn timeout 600 $WRAP_L "$BIN/local_$kind" "$u" "$sz" "$n" >"$OUT/$tag.l.out" 2>>"$OUT/stderr.log"
    return
  fi
  SPBENCH_SPAWN=$spawn SPBENCH_LIMIT_S=600 timeout 600 $WRAP_L "$BIN/local_$kind" "$u" "$sz" "$n" >"$OUT/$tag.l.out" 2>>"$OUT/stderr.log" &
  lpid=$!
  SPBENCH_SPAWN=$spawn SPBENCH_LIMIT_S=600 timeout 600 $WRAP_R "$BIN/remote_$kind" "$u" "$sz" "$n" >"$OUT/$tag.r.out" 2>>"$OUT/stderr.log"
  wait $lpid
  rm -f "$IPC"
}
ir_of() { # callgrind out file -> total Ir
  callgrind_annotate "$1" 2>/dev/null | sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,
}
EV=raw_syscalls:sys_enter,context-switches,cpu-migrations,page-faults,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_read,syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex,syscalls:sys_enter_sched_yield
ev_of() { # perf stat -x, file, event -> count
  awk -F, -v e="$2" '$3 == e { gsub(/<not counted>/, "0", $1); print $1 }' "$1" | head -1
}
for mode in $MODES; do
  IFS=: read -r kind tr sz <<<"$mode"
  read -r n1 n2 <<<"$(counts "$kind" "$sz")"
  sides="recv send"; [ "$kind" = lat ] && sides="server client"
  [ "$tr" = inproc ] && sides="both"
  for rt in $RUNTIMES; do
    declare -A IR=() SY=() CS=() WR=() RD=() FX=() EP=()
    if [ "$CG" = 1 ]; then
      for n in $n1 $n2; do
        WRAP_L="valgrind --tool=callgrind --callgrind-out-file=$OUT/cg.$mode.$rt.$n.l" \
        WRAP_R="valgrind --tool=callgrind --callgrind-out-file=$OUT/cg.$mode.$rt.$n.r" \
          pair "$kind" "$tr" "$sz" "$n" "$rt" "cg.$n" 2>/dev/null
        IR[l$n]=$(ir_of "$OUT/cg.$mode.$rt.$n.l"); IR[r$n]=$(ir_of "$OUT/cg.$mode.$rt.$n.r" 2>/dev/null)
      done
    fi
    if [ "$SYS" = 1 ]; then
      for n in $n1 $n2; do
        WRAP_L="perf stat -x, -e $EV -o $OUT/ps.$mode.$rt.$n.l --" \
        WRAP_R="perf stat -x, -e $EV -o $OUT/ps.$mode.$rt.$n.r --" \
          pair "$kind" "$tr" "$sz" "$n" "$rt" "ps.$n"
      done
    fi
    i=0
    for side in $sides; do
      s=l; [ $i = 1 ] && s=r; i=$((i + 1))
      line="HOT mode=$mode rt=$rt side=$side n=$n1..$n2"
      if [ "$CG" = 1 ] && [ -n "${IR[$s$n2]:-}" ] && [ -n "${IR[$s$n1]:-}" ]; then
        line="$line ir_per_msg=$(( (IR[$s$n2] - IR[$s$n1]) / (n2 - n1) ))"
      fi
      if [ "$SYS" = 1 ] && [ -f "$OUT/ps.$mode.$rt.$n2.$s" ]; then
        for e in raw_syscalls:sys_enter context-switches page-faults syscalls:sys_enter_write syscalls:sys_enter_writev syscalls:sys_enter_read syscalls:sys_enter_recvfrom syscalls:sys_enter_futex syscalls:sys_enter_epoll_wait; do
          a=$(ev_of "$OUT/ps.$mode.$rt.$n1.$s" "$e"); b=$(ev_of "$OUT/ps.$mode.$rt.$n2.$s" "$e")
          name=${e#syscalls:sys_enter_}; name=${name#raw_syscalls:sys_enter}; [ -z "$name" ] && name=syscalls
          line="$line $name=$(python3 -c "print(f'{(${b:-0} - ${a:-0}) / ($n2 - $n1):.4f}')")"
        done
      fi
      echo "$line" | tee -a "$LOG"
    done
  done
done
