#!/usr/bin/env bash
# Side-by-side benchmark: spstack's perf tools (benches/{local,remote}_{thr,lat}.rs)
# against the nng / nanomsg / libzmq anchors of ../shared/perf-anchors, same machine, same run.
#
# Usage: bash benches/run_side_by_side.sh [OUTDIR]
#   env: REPS=3          repetitions of everything (median [min–max] is reported)
#        QUICK=1         smoke run: 1 rep, small counts, short anchor runs
#        THR_SECS=2.5    anchors' throughput duration (their `thr URL SIZE SECS`)
#        LAT_N=100000    timed round trips per latency run (both sides)
#        TRANSPORTS="tcp ipc"  LIBS="spstack spstack-spawn nng nn zmq"  SECTIONS="thr lat diag" (also: pubsub survey)
#          TRANSPORTS may add inproc: thr only (spstack's local_thr runs its sender in-process, the anchors a thread)
#        PS_SECS=$THR_SECS  NSUBS="1 4 16"   pubsub: PUB sends 64 B for PS_SECS s to N SUB processes (anchors: `pubsub URL 64 SECS N`)
#          LIBS may add spstack-lossless / spstack-lossless-spawn (pubsub only: the opt-in lossless PUB/SUB)
#        SURVEY_N=20000  NRESP="1 4 16"      survey: timed surveys per run, respondents (spstack only; the anchors have no survey mode)
#        NPIPES=10000  PIPES_CURVE=1,10,100,1000,10000  SECTIONS+=pipes: one PULL with NPIPES pipes (tcp: from a child;
#                        inproc when in TRANSPORTS): memory per idle pipe, then 64 B throughput per PIPES_CURVE count (spstack only)
#          spstack: the tools' body runs in #[tokio::main]'s block_on (main thread, not a runtime worker);
#          spstack-spawn: the same binaries with SPBENCH_SPAWN=1, body in tokio::spawn (on a worker)
#        ANCHORS=../shared/perf-anchors (source dir)   ABIN=/tmp/perf-anchors/bin
#        BEFORE=DIR      a second spstack checkout (e.g. `git worktree add DIR <rev>`): its tools run
#                        in the same run as lib=spstack-before / spstack-before-spawn, for before/after
#                        ratios taken at the same moment (add them to LIBS)
# Output: OUTDIR/results.txt (RESULT lines), OUTDIR/diag.txt (/usr/bin/time per side), OUTDIR/stderr.log, OUTDIR/summary.md (printed at the end).
# Every command runs under `timeout`; spstack's tools also stop themselves (SPBENCH_LIMIT_S, default 60 s).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ANCHORS=${ANCHORS:-$(cd "$ROOT/../shared/perf-anchors" 2>/dev/null && pwd)}
ABIN=${ABIN:-/tmp/perf-anchors/bin}
OUT=${1:-/tmp/spbench/$(date +%Y%m%d-%H%M%S)}
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  REPS=${REPS:-1}; THR_SECS=${THR_SECS:-0.5}; LAT_N=${LAT_N:-5000}; DIV=20; SURVEY_N=${SURVEY_N:-1000}
else
  REPS=${REPS:-3}; THR_SECS=${THR_SECS:-2.5}; LAT_N=${LAT_N:-100000}; DIV=1; SURVEY_N=${SURVEY_N:-20000}
fi
PS_SECS=${PS_SECS:-$THR_SECS}
NSUBS=${NSUBS:-"1 4 16"}
NRESP=${NRESP:-"1 4 16"}
TRANSPORTS=${TRANSPORTS:-"tcp ipc"}
LIBS=${LIBS:-"spstack spstack-spawn nng nn zmq"}
SECTIONS=${SECTIONS:-"thr lat diag"}
SIZES_THR="64 1024 65536 1048576"
SIZES_LAT="64 1024"
# spstack's thr tools take a message count: about 2 s each at the rates seen on the reference machine
count_for() { case $1 in 64) echo $((2000000 / DIV));; 1024) echo $((500000 / DIV));;
  65536) echo $((40000 / DIV));; 1048576) echo $((3000 / DIV));; *) echo $((100000 / DIV));; esac; }
T_CMD=${T_CMD:-120}   # outer timeout of every command, seconds

mkdir -p "$OUT"
RES=$OUT/results.txt
ERR=$OUT/stderr.log
DIAGF=$OUT/diag.txt
: >"$RES"; : >"$ERR"; : >"$DIAGF"
PORT=$((32000 + RANDOM % 20000))
IPC=/tmp/spbench.$$.ipc
trap 'rm -f "$IPC"' EXIT

# ---------------------------------------------------------------- build
need_pkgs="libnng-dev libnanomsg-dev libzmq3-dev pkg-config time"
if ! dpkg -s $need_pkgs >/dev/null 2>&1; then
  echo "installing $need_pkgs"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need_pkgs
fi
echo "building anchors -> $ABIN"
make -s -C "$ANCHORS" BIN="$ABIN" >/dev/null || { echo "anchor build failed"; exit 1; }
echo "building spstack perf tools (release)"
ARTS=$( cd "$ROOT" && cargo build --release --benches --message-format=json 2>>"$ERR" ) \
  || { echo "cargo build failed, see $ERR"; tail -20 "$ERR"; exit 1; }
sp_bin() { printf '%s\n' "$ARTS" | python3 -c '
import sys, json
for l in sys.stdin:
    try: j = json.loads(l)
    except ValueError: continue
    if j.get("reason") == "compiler-artifact" and "bench" in j["target"]["kind"] and j["target"]["name"] == sys.argv[1] and j.get("executable"):
        print(j["executable"])' "$1" | tail -1; }
LOCAL_THR=$(sp_bin local_thr); REMOTE_THR=$(sp_bin remote_thr)
LOCAL_LAT=$(sp_bin local_lat); REMOTE_LAT=$(sp_bin remote_lat)
PUBSUB=$(sp_bin pubsub); SURVEY_LAT=$(sp_bin survey_lat); PIPES=$(sp_bin pipes)
for b in "$LOCAL_THR" "$REMOTE_THR" "$LOCAL_LAT" "$REMOTE_LAT" "$PUBSUB" "$SURVEY_LAT"; do
  [ -x "$b" ] || { echo "spstack tool not found: '$b'"; exit 1; }
done
# private copies: a concurrent `cargo build` in the same target dir must not swap binaries mid-run
mkdir -p "$OUT/bin"
cp "$LOCAL_THR" "$OUT/bin/local_thr"; cp "$REMOTE_THR" "$OUT/bin/remote_thr"
cp "$LOCAL_LAT" "$OUT/bin/local_lat"; cp "$REMOTE_LAT" "$OUT/bin/remote_lat"
LOCAL_THR=$OUT/bin/local_thr; REMOTE_THR=$OUT/bin/remote_thr
LOCAL_LAT=$OUT/bin/local_lat; REMOTE_LAT=$OUT/bin/remote_lat
cp "$PUBSUB" "$OUT/bin/pubsub"; cp "$SURVEY_LAT" "$OUT/bin/survey_lat"
PUBSUB=$OUT/bin/pubsub; SURVEY_LAT=$OUT/bin/survey_lat
[ -x "$PIPES" ] && cp "$PIPES" "$OUT/bin/pipes"
if [ -n "${BEFORE:-}" ]; then
  echo "building the BEFORE tree's perf tools (release): $BEFORE"
  # one target dir: the dependencies both trees share are built once
  ARTS=$( cd "$BEFORE" && CARGO_TARGET_DIR=$ROOT/target cargo build --release --benches --message-format=json 2>>"$ERR" ) \
    || { echo "cargo build of $BEFORE failed, see $ERR"; tail -20 "$ERR"; exit 1; }
  mkdir -p "$OUT/bin-before"
  for t in local_thr remote_thr local_lat remote_lat pubsub survey_lat; do
    b=$(sp_bin $t); [ -x "$b" ] || { echo "BEFORE tool not found: $t"; exit 1; }
    cp "$b" "$OUT/bin-before/$t"
  done
fi
# tool T of spstack variant LIB (spstack, spstack-spawn, spstack-before, spstack-before-spawn)
tool() { case $1 in spstack-before*) echo "$OUT/bin-before/$2";; *) echo "$OUT/bin/$2";; esac; }
is_spawn() { case $1 in *-spawn) return 0;; esac; return 1; }
# the tools name themselves spstack / spstack-spawn: a before run is relabelled
relabel() { sed "s/lib=spstack\(-spawn\)\{0,1\} /lib=$1 /"; }

{ echo "## date"; date -u; echo "## uname"; uname -a; echo "## cpu"; lscpu | grep -E "Model name|^CPU\(s\)|Thread|MHz" ;
  echo "## load at start"; cat /proc/loadavg; echo "## rust"; rustc --version;
  echo "## git"; (cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null && git status --short | head -20) || echo "not a git checkout; SPBENCH_REV=${SPBENCH_REV:-unset}";
  echo "## settings"; echo "REPS=$REPS QUICK=$QUICK THR_SECS=$THR_SECS LAT_N=$LAT_N TRANSPORTS=$TRANSPORTS LIBS=$LIBS SECTIONS=$SECTIONS";
  echo "PS_SECS=$PS_SECS NSUBS=$NSUBS SURVEY_N=$SURVEY_N NRESP=$NRESP"; } >"$OUT/env.txt" 2>&1

# ---------------------------------------------------------------- runners
mkurl() { case $1 in tcp) PORT=$((PORT + 1)); U="tcp://127.0.0.1:$PORT";; ipc) rm -f "$IPC"; U="ipc://$IPC";;
  inproc) U="inproc://spbench";; esac; }
fail() { echo "FAIL $*" >>"$RES"; echo "  FAIL $*" >&2; }

run_anchor() { # LIB MODE URL SIZE ARG
  local lib=$1; shift
  echo "# $(date +%T) load $(cut -d' ' -f1 /proc/loadavg) bench_$lib $*" >>"$ERR"
  timeout "$T_CMD" "$ABIN/bench_$lib" "$@" >>"$RES" 2>>"$ERR" || fail "rc=$? cmd=bench_$lib $*"
  rm -f "$IPC"
}

run_sp() { # LIB KIND(thr|lat) URL SIZE COUNT ; the local side listens, the remote side dials (with retry)
  local lib=$1 kind=$2 url=$3 sz=$4 n=$5 lb rb lpid rc_r rc_l spawn=0
  is_spawn "$lib" && spawn=1
  lb=$(tool "$lib" "local_$kind"); rb=$(tool "$lib" "remote_$kind")
  echo "# $(date +%T) load $(cut -d' ' -f1 /proc/loadavg) $lib $kind $url $sz $n" >>"$ERR"
  SPBENCH_SPAWN=$spawn timeout "$T_CMD" "$lb" "$url" "$sz" "$n" >"$OUT/l.out" 2>>"$ERR" &
  lpid=$!
  if [ "${url#inproc://}" != "$url" ]; then rc_r=0; : >"$OUT/r.out"   # the sender runs inside local_thr
  else SPBENCH_SPAWN=$spawn timeout "$T_CMD" "$rb" "$url" "$sz" "$n" >"$OUT/r.out" 2>>"$ERR"; rc_r=$?; fi
  wait "$lpid"; rc_l=$?
  cat "$OUT/l.out" "$OUT/r.out" | relabel "$lib" >>"$RES"; rm -f "$OUT/l.out" "$OUT/r.out"
  [ $rc_r = 0 ] || fail "rc=$rc_r cmd=$lib remote_$kind $url $sz $n"
  [ $rc_l = 0 ] || fail "rc=$rc_l cmd=$lib local_$kind $url $sz $n"
  rm -f "$IPC"
}

has() { case " $2 " in *" $1 "*) return 0;; esac; return 1; }

RUNID=0
run_pubsub() { # LIB URL NSUBS ; one PUB + NSUBS SUB processes. Every RESULT line gets nsubs= (the anchors
  # do not print it) and run= (to add up the subscribers of one run).
  local lib=$1 url=$2 n=$3 spawn=0 rc tmp=$OUT/ps.out
  RUNID=$((RUNID + 1))
  echo "# $(date +%T) load $(cut -d' ' -f1 /proc/loadavg) $lib pubsub $url 64 $PS_SECS $n" >>"$ERR"
  if [ "${lib#spstack}" != "$lib" ]; then
    is_spawn "$lib" && spawn=1
    ll=0; case $lib in spstack-lossless*) ll=1;; esac   # the opt-in lossless PUB/SUB
    SPBENCH_LOSSLESS=$ll SPBENCH_SPAWN=$spawn timeout "$T_CMD" "$(tool "$lib" pubsub)" "$url" 64 "$PS_SECS" "$n" 2>>"$ERR" | relabel "$lib" >"$tmp"
    rc=${PIPESTATUS[0]}
  else
    timeout "$T_CMD" "$ABIN/bench_$lib" pubsub "$url" 64 "$PS_SECS" "$n" >"$tmp" 2>>"$ERR"; rc=$?
  fi
  sed -n "/^RESULT /{/ nsubs=/!s/\$/ nsubs=$n/;s/\$/ run=$RUNID/;p}" "$tmp" >>"$RES"
  [ $rc = 0 ] || fail "rc=$rc cmd=$lib pubsub $url 64 $PS_SECS $n"
  rm -f "$IPC" "$tmp"
}

# ---------------------------------------------------------------- runs
START=$(date +%s)
for rep in $(seq "$REPS"); do
  if has thr "$SECTIONS"; then
    for tr in $TRANSPORTS; do for sz in $SIZES_THR; do for lib in $LIBS; do
      mkurl "$tr"
      echo "rep $rep thr $lib $U $sz" >&2
      if [ "${lib#spstack}" != "$lib" ]; then run_sp "$lib" thr "$U" "$sz" "$(count_for "$sz")"
      else run_anchor "$lib" thr "$U" "$sz" "$THR_SECS"; fi
    done; done; done
  fi
  if has lat "$SECTIONS"; then
    for tr in $TRANSPORTS; do [ "$tr" = inproc ] && continue; for sz in $SIZES_LAT; do for lib in $LIBS; do
      mkurl "$tr"
      echo "rep $rep lat $lib $U $sz" >&2
      if [ "${lib#spstack}" != "$lib" ]; then run_sp "$lib" lat "$U" "$sz" "$LAT_N"
      else run_anchor "$lib" lat "$U" "$sz" "$LAT_N"; fi
    done
      # floor: raw socket ping-pong (TCP_NODELAY / AF_UNIX socketpair), same size, same moment
      [ -x "$ABIN/raw_lat" ] && { kind=$tr; [ "$tr" = ipc ] && kind=unix
        echo "# $(date +%T) load $(cut -d' ' -f1 /proc/loadavg) raw_lat $kind $sz" >>"$ERR"
        timeout "$T_CMD" "$ABIN/raw_lat" "$kind" "$sz" "$LAT_N" >>"$RES" 2>>"$ERR" || fail "rc=$? cmd=raw_lat $kind $sz"; }
    done; done
  fi
  if has pubsub "$SECTIONS"; then
    for tr in $TRANSPORTS; do [ "$tr" = inproc ] && continue; for n in $NSUBS; do for lib in $LIBS; do
      mkurl "$tr"
      echo "rep $rep pubsub $lib $U N=$n" >&2
      run_pubsub "$lib" "$U" "$n"
    done; done; done
  fi
  if has survey "$SECTIONS"; then
    # SURVEYOR round trip (spstack only), then at the same moment spstack REQ/REP and the raw floor, 64 B
    for tr in $TRANSPORTS; do [ "$tr" = inproc ] && continue
      for n in $NRESP; do for lib in $LIBS; do
        [ "${lib#spstack}" = "$lib" ] && continue
        spawn=0; is_spawn "$lib" && spawn=1
        mkurl "$tr"
        echo "rep $rep survey $lib $U N=$n" >&2
        echo "# $(date +%T) load $(cut -d' ' -f1 /proc/loadavg) $lib survey_lat $U 64 $SURVEY_N $n" >>"$ERR"
        SPBENCH_SPAWN=$spawn timeout "$T_CMD" "$(tool "$lib" survey_lat)" "$U" 64 "$SURVEY_N" "$n" 2>>"$ERR" | relabel "$lib" >>"$RES"
        rc=${PIPESTATUS[0]}; [ "$rc" = 0 ] || fail "rc=$rc cmd=$lib survey_lat $U 64 $SURVEY_N $n"
        rm -f "$IPC"
      done; done
      if ! has lat "$SECTIONS"; then
        for lib in $LIBS; do
          [ "${lib#spstack}" = "$lib" ] && continue
          mkurl "$tr"; echo "rep $rep survey-ref $lib lat $U" >&2
          run_sp "$lib" lat "$U" 64 "$SURVEY_N"
        done
        [ -x "$ABIN/raw_lat" ] && { kind=$tr; [ "$tr" = ipc ] && kind=unix
          echo "# $(date +%T) load $(cut -d' ' -f1 /proc/loadavg) raw_lat $kind 64" >>"$ERR"
          timeout "$T_CMD" "$ABIN/raw_lat" "$kind" 64 "$SURVEY_N" >>"$RES" 2>>"$ERR" || fail "rc=$? cmd=raw_lat $kind 64"; }
      fi
    done
  fi
  if has pipes "$SECTIONS"; then
    # one PULL with many pipes: memory per idle pipe, then throughput as pipes grow (spstack only)
    for tr in $TRANSPORTS; do [ "$tr" = ipc ] && continue; for lib in $LIBS; do
      case $lib in spstack|spstack-spawn) ;; *) continue;; esac
      spawn=0; is_spawn "$lib" && spawn=1
      case $tr in tcp) U="tcp://127.0.0.1:0";; inproc) U="inproc://spbench-pipes";; esac
      echo "rep $rep pipes $lib $U ${NPIPES:-10000}" >&2
      echo "# $(date +%T) load $(cut -d' ' -f1 /proc/loadavg) $lib pipes $U ${NPIPES:-10000}" >>"$ERR"
      SPBENCH_LIMIT_S=900 SPBENCH_SPAWN=$spawn timeout 1000 "$OUT/bin/pipes" "$U" "${NPIPES:-10000}" 64 $((1000000 / DIV)) \
        "${PIPES_CURVE:-1,10,100,1000,${NPIPES:-10000}}" 2>>"$ERR" | relabel "$lib" | grep '^RESULT ' >>"$RES"
      rc=${PIPESTATUS[0]}; [ "$rc" = 0 ] || fail "rc=$rc cmd=$lib pipes $U ${NPIPES:-10000}"
    done; done
  fi
done

# ---------------------------------------------------------------- diag: CPU and context switches, tcp 64 B
# spstack runs as two processes, so each side gets its own DIAG line (role=recv|send, role=server|client).
if has diag "$SECTIONS"; then
  echo "diag: /usr/bin/time over tcp 64 B runs" >&2
  TF="elapsed_s=%e user_s=%U sys_s=%S cpu=%P vol_ctxsw=%w invol_ctxsw=%c"
  for lib in $LIBS; do
    [ "${lib#spstack}" = "$lib" ] && continue
    spawn=0; is_spawn "$lib" && spawn=1
    LOCAL_THR=$(tool "$lib" local_thr); REMOTE_THR=$(tool "$lib" remote_thr)
    LOCAL_LAT=$(tool "$lib" local_lat); REMOTE_LAT=$(tool "$lib" remote_lat)
    mkurl tcp; n=$(count_for 64)
    SPBENCH_SPAWN=$spawn timeout "$T_CMD" /usr/bin/time -f "$TF" -o "$OUT/d.l" "$LOCAL_THR" "$U" 64 "$n" >"$OUT/d.lo" 2>>"$ERR" & lpid=$!
    SPBENCH_SPAWN=$spawn timeout "$T_CMD" /usr/bin/time -f "$TF" -o "$OUT/d.r" "$REMOTE_THR" "$U" 64 "$n" >"$OUT/d.ro" 2>>"$ERR"; wait $lpid
    cat "$OUT/d.lo" "$OUT/d.ro" | relabel "$lib" | sed "s/^RESULT /DIAGRUN /" >>"$DIAGF"
    echo "DIAG lib=$lib test=thr role=recv url=$U size=64 msgs=$n $(tail -1 "$OUT/d.l")" >>"$DIAGF"
    echo "DIAG lib=$lib test=thr role=send url=$U size=64 msgs=$n $(tail -1 "$OUT/d.r")" >>"$DIAGF"
    mkurl tcp; n=$((LAT_N + 1000))
    SPBENCH_SPAWN=$spawn timeout "$T_CMD" /usr/bin/time -f "$TF" -o "$OUT/d.l" "$LOCAL_LAT" "$U" 64 "$LAT_N" >"$OUT/d.lo" 2>>"$ERR" & lpid=$!
    SPBENCH_SPAWN=$spawn timeout "$T_CMD" /usr/bin/time -f "$TF" -o "$OUT/d.r" "$REMOTE_LAT" "$U" 64 "$LAT_N" >"$OUT/d.ro" 2>>"$ERR"; wait $lpid
    cat "$OUT/d.lo" "$OUT/d.ro" | relabel "$lib" | sed "s/^RESULT /DIAGRUN /" >>"$DIAGF"
    echo "DIAG lib=$lib test=lat role=server url=$U size=64 msgs=$n $(tail -1 "$OUT/d.l")" >>"$DIAGF"
    echo "DIAG lib=$lib test=lat role=client url=$U size=64 msgs=$n $(tail -1 "$OUT/d.r")" >>"$DIAGF"
  done
  for lib in $LIBS; do
    [ "${lib#spstack}" != "$lib" ] && continue
    mkurl tcp   # the anchors fork: %w/%c cover parent and (reaped) child together
    timeout "$T_CMD" /usr/bin/time -f "$TF" -o "$OUT/d.l" "$ABIN/bench_$lib" thr "$U" 64 "$THR_SECS" >"$OUT/d.out" 2>>"$ERR"
    sed "s/^RESULT /DIAGRUN /" "$OUT/d.out" >>"$DIAGF"
    echo "DIAG lib=$lib test=thr role=both url=$U size=64 msgs=$(sed -n 's/.* msgs=\([0-9]*\).*/\1/p' "$OUT/d.out") $(tail -1 "$OUT/d.l")" >>"$DIAGF"
    mkurl tcp
    timeout "$T_CMD" /usr/bin/time -f "$TF" -o "$OUT/d.l" "$ABIN/bench_$lib" lat "$U" 64 "$LAT_N" >"$OUT/d.out" 2>>"$ERR"
    sed "s/^RESULT /DIAGRUN /" "$OUT/d.out" >>"$DIAGF"
    echo "DIAG lib=$lib test=lat role=both url=$U size=64 msgs=$n $(tail -1 "$OUT/d.l")" >>"$DIAGF"
  done
  rm -f "$OUT"/d.*
fi

{ echo "## wall time $(( $(date +%s) - START )) s"; echo "## load at end"; cat /proc/loadavg;
  echo "## git at end"; (cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null && git status --short | head -20) || echo "not a git checkout"; } >>"$OUT/env.txt"
python3 "$HERE/summarize.py" "$RES" "$DIAGF" >"$OUT/summary.md" 2>>"$ERR"
cat "$OUT/summary.md"
echo
echo "results: $RES"; echo "summary: $OUT/summary.md"
