#!/usr/bin/env bash
# Side-by-side benchmark: spstack's perf tools (benches/{local,remote}_{thr,lat}.rs, inproc_thr.rs, ...)
# against the nng / nanomsg / libzmq anchors of ../shared/perf-anchors, the pure-Rust anchor zmq.rs
# (benches/peers/zmqrs) and the machine's raw floors, same machine, same run.
#
# Usage: bash benches/run_side_by_side.sh [OUTDIR]
#   env: REPS=3          repetitions of everything (median [min–max] is reported)
#        QUICK=1         smoke run: 1 rep, small counts, short anchor runs
#        THR_SECS=2.5    anchors' throughput duration (their `thr URL SIZE SECS`; zmq.rs and uds_bw too)
#        LAT_N=100000    timed round trips per latency run (both sides)
#        TRANSPORTS="tcp ipc"  LIBS="spstack spstack-spawn nng nn zmq zmqrs zmqrs-spawn"
#        SECTIONS="thr raw inproc lat diag"   run in the order given, each repetition; also: pubsub survey
#          thr:    PUSH/PULL, TRANSPORTS × 64 B, 1 KiB, 64 KiB, 1 MiB, every lib
#          raw:    raw stream bandwidth (uds_bw: write→read, no library) for tcp and unix at 64 KiB and
#                  1 MiB; with thr, each is taken right after the libs' cell of the same transport and size
#          inproc: PUSH/PULL over inproc:// at 64 B and 1 KiB: spstack's inproc_thr and the anchors'
#                  `thr inproc://bench` (zmq.rs has no inproc transport)
#          lat:    REQ/REP 64 B and 1 KiB, every lib, with the raw ping-pong floor (raw_lat) per cell
#          pubsub: PUB → NSUBS SUB processes (spstack and the C anchors); with LOSSLESS=1 (default) each
#                  spstack lib is followed by its opt-in lossless PUB/SUB (lib=spstack-lossless[-spawn]:
#                  Pub0Lossless / Sub0::lossless, back-pressure instead of drops)
#          survey: SURVEYOR round trip (spstack only)
#          pipes:  one PULL with NPIPES pipes (benches/pipes.rs; spstack only, tcp from a child process and/or
#                  inproc, as PIPES_TRANSPORTS says): heap and RSS per idle pipe, then 64 B throughput at each
#                  pipe count of PIPES_CURVE
#          diag:   /usr/bin/time over tcp 64 B runs, once after the repetitions
#        PS_SECS=$THR_SECS  NSUBS="1 4 16"   pubsub: PUB sends 64 B for PS_SECS s to N SUB processes (anchors: `pubsub URL 64 SECS N`)
#        NPIPES=10000  PIPES_CURVE=1,10,100,1000,$NPIPES  PIPES_TRANSPORTS="tcp inproc"   pipes: see above
#        LOSSLESS=1      pubsub: also the lossless PUB/SUB beside each spstack lib (0: only LIBS as given)
#        SURVEY_N=20000  NRESP="1 4 16"      survey: timed surveys per run, respondents (spstack only; the anchors have no survey mode)
#          spstack: the tools' body runs in #[tokio::main]'s block_on (main thread, not a runtime worker);
#          spstack-spawn: the same binaries with SPBENCH_SPAWN=1, body in tokio::spawn (on a worker);
#          zmqrs / zmqrs-spawn: zmq.rs the same two ways (its sender capped to a window: benches/README.md)
#        ANCHORS=../shared/perf-anchors (source dir)   ABIN=/tmp/perf-anchors/bin
#        BEFORE=DIR      a second spstack checkout (e.g. `git worktree add DIR <rev>`): its tools run
#                        in the same run as lib=spstack-before / spstack-before-spawn, for before/after
#                        ratios taken at the same moment (add them to LIBS)
#        PLOT=1          draw OUTDIR/plot.png with benches/plot.py (installs matplotlib with pip if missing); 0: skip
# Output: OUTDIR/results.txt (RESULT lines), OUTDIR/diag.txt (/usr/bin/time per side), OUTDIR/stderr.log,
#         OUTDIR/env.txt, OUTDIR/summary.md (printed at the end), OUTDIR/plot.png.
# Every command runs under `timeout`; spstack's tools and zmq.rs's also stop themselves (SPBENCH_LIMIT_S, default 60 s).
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
NPIPES=${NPIPES:-10000}
PIPES_CURVE=${PIPES_CURVE:-1,10,100,1000,$NPIPES}
PIPES_TRANSPORTS=${PIPES_TRANSPORTS:-"tcp inproc"}
LOSSLESS=${LOSSLESS:-1}
TRANSPORTS=${TRANSPORTS:-"tcp ipc"}
LIBS=${LIBS:-"spstack spstack-spawn nng nn zmq zmqrs zmqrs-spawn"}
SECTIONS=${SECTIONS:-"thr raw inproc lat diag"}
PLOT=${PLOT:-1}
SIZES_THR="64 1024 65536 1048576"
SIZES_LAT="64 1024"
SIZES_INPROC="64 1024"
SIZES_RAW="65536 1048576"
# spstack's thr tools take a message count: about 2 s each at the rates seen on the reference machine
count_for() { case $1 in 64) echo $((2000000 / DIV));; 1024) echo $((500000 / DIV));;
  65536) echo $((40000 / DIV));; 1048576) echo $((3000 / DIV));; *) echo $((100000 / DIV));; esac; }
T_CMD=${T_CMD:-120}   # outer timeout of every command, seconds

has() { case " $2 " in *" $1 "*) return 0;; esac; return 1; }
is_sp() { [ "${1#spstack}" != "$1" ]; }
is_zmqrs() { [ "${1#zmqrs}" != "$1" ]; }
is_spawn() { case $1 in *-spawn) return 0;; esac; return 1; }

mkdir -p "$OUT"
RES=$OUT/results.txt
ERR=$OUT/stderr.log
DIAGF=$OUT/diag.txt
: >"$RES"; : >"$ERR"; : >"$DIAGF"
PORT=$((32000 + RANDOM % 20000))
IPC=/tmp/spbench.$$.ipc
trap 'rm -f "$IPC"' EXIT

# ---------------------------------------------------------------- build
build_anchors() {
  local need_pkgs="libnng-dev libnanomsg-dev libzmq3-dev pkg-config time"
  if ! dpkg -s $need_pkgs >/dev/null 2>&1; then
    echo "installing $need_pkgs"
    timeout 600 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq $need_pkgs
  fi
  echo "building anchors -> $ABIN"
  timeout 300 make -s -C "$ANCHORS" BIN="$ABIN" >/dev/null || { echo "anchor build failed"; exit 1; }
}

# the executable of bench target $1 in cargo's JSON messages $ARTS
sp_bin() { printf '%s\n' "$ARTS" | python3 -c '
import sys, json
for l in sys.stdin:
    try: j = json.loads(l)
    except ValueError: continue
    if j.get("reason") == "compiler-artifact" and "bench" in j["target"]["kind"] and j["target"]["name"] == sys.argv[1] and j.get("executable"):
        print(j["executable"])' "$1" | tail -1; }

SP_TOOLS="local_thr remote_thr local_lat remote_lat pubsub survey_lat inproc_thr pipes"
build_spstack() { # DIR DEST: builds DIR's perf tools, copies them to DEST (a concurrent `cargo build`
  # in the same target dir must not swap binaries mid-run); one target dir, so shared dependencies build once
  local dir=$1 dest=$2 t b
  ARTS=$( cd "$dir" && CARGO_TARGET_DIR=$ROOT/target timeout 3000 cargo build --release --benches --message-format=json 2>>"$ERR" ) \
    || { echo "cargo build of $dir failed, see $ERR"; tail -20 "$ERR"; exit 1; }
  mkdir -p "$dest"
  for t in $SP_TOOLS; do
    b=$(sp_bin "$t")
    if [ -x "$b" ]; then cp "$b" "$dest/$t"
    elif [ "$t" = inproc_thr ] || [ "$t" = pipes ]; then echo "  (no $t in $dir: its spstack runs will FAIL)"   # an older tree
    else echo "spstack tool not found in $dir: $t"; exit 1; fi
  done
}

# zmq.rs: a cargo project of its own (benches/peers/zmqrs, own lock file), outside spstack's workspace
ZBIN=$OUT/bin/bench_zmqrs
build_zmqrs() {
  echo "building zmq.rs anchor (release)"
  if CARGO_TARGET_DIR=$ROOT/target/peers timeout 3000 cargo build --release --locked -q \
       --manifest-path "$HERE/peers/zmqrs/Cargo.toml" 2>>"$ERR"; then
    cp "$ROOT/target/peers/release/bench_zmqrs" "$ZBIN"
  else
    echo "  zmq.rs build failed (see $ERR): its runs are left out"
    echo "FAIL build zmq.rs (benches/peers/zmqrs)" >>"$RES"
    local l keep=""; for l in $LIBS; do is_zmqrs "$l" || keep="$keep $l"; done; LIBS=${keep# }
  fi
}

# tool T of spstack variant LIB (spstack, spstack-spawn, spstack-before, spstack-before-spawn)
tool() { case $1 in spstack-before*) echo "$OUT/bin-before/$2";; *) echo "$OUT/bin/$2";; esac; }
# the tools name themselves spstack / spstack-spawn: a before run is relabelled
relabel() { sed "s/lib=spstack\(-spawn\)\{0,1\} /lib=$1 /"; }

# ---------------------------------------------------------------- runners
mkurl() { case $1 in tcp) PORT=$((PORT + 1)); U="tcp://127.0.0.1:$PORT";; ipc) rm -f "$IPC"; U="ipc://$IPC";;
  inproc) U="inproc://bench";; esac; }
fail() { echo "FAIL $*" >>"$RES"; echo "  FAIL $*" >&2; }
logcmd() { echo "# $(date +%T) load $(cut -d' ' -f1 /proc/loadavg) $*" >>"$ERR"; }

run_anchor() { # LIB MODE URL SIZE ARG   (nng, nn, zmq: ../shared/perf-anchors)
  local lib=$1; shift
  logcmd "bench_$lib $*"
  timeout "$T_CMD" "$ABIN/bench_$lib" "$@" >>"$RES" 2>>"$ERR" || fail "rc=$? cmd=bench_$lib $*"
  rm -f "$IPC"
}

run_zmqrs() { # LIB MODE URL SIZE ARG   (zmqrs, zmqrs-spawn: benches/peers/zmqrs, same modes as the anchors)
  local lib=$1 spawn=0; shift
  is_spawn "$lib" && spawn=1
  logcmd "$lib $*"
  SPBENCH_SPAWN=$spawn timeout "$T_CMD" "$ZBIN" "$@" >>"$RES" 2>>"$ERR" || fail "rc=$? cmd=$lib $*"
  rm -f "$IPC"
}

run_sp() { # LIB KIND(thr|lat) URL SIZE COUNT ; the local side listens, the remote side dials (with retry)
  local lib=$1 kind=$2 url=$3 sz=$4 n=$5 lb rb lpid rc_r rc_l spawn=0
  is_spawn "$lib" && spawn=1
  lb=$(tool "$lib" "local_$kind"); rb=$(tool "$lib" "remote_$kind")
  logcmd "$lib $kind $url $sz $n"
  SPBENCH_SPAWN=$spawn timeout "$T_CMD" "$lb" "$url" "$sz" "$n" >"$OUT/l.out" 2>>"$ERR" &
  lpid=$!
  SPBENCH_SPAWN=$spawn timeout "$T_CMD" "$rb" "$url" "$sz" "$n" >"$OUT/r.out" 2>>"$ERR"; rc_r=$?
  wait "$lpid"; rc_l=$?
  cat "$OUT/l.out" "$OUT/r.out" | relabel "$lib" >>"$RES"; rm -f "$OUT/l.out" "$OUT/r.out"
  [ $rc_r = 0 ] || fail "rc=$rc_r cmd=$lib remote_$kind $url $sz $n"
  [ $rc_l = 0 ] || fail "rc=$rc_l cmd=$lib local_$kind $url $sz $n"
  rm -f "$IPC"
}

run_sp_inproc() { # LIB SIZE COUNT ; PUSH → PULL over inproc:// in one process
  local lib=$1 sz=$2 n=$3 spawn=0 rc
  is_spawn "$lib" && spawn=1
  logcmd "$lib inproc_thr inproc://bench $sz $n"
  SPBENCH_SPAWN=$spawn timeout "$T_CMD" "$(tool "$lib" inproc_thr)" inproc://bench "$sz" "$n" 2>>"$ERR" | relabel "$lib" >>"$RES"
  rc=${PIPESTATUS[0]}; [ "$rc" = 0 ] || fail "rc=$rc cmd=$lib inproc_thr inproc://bench $sz $n"
}

run_lib() { # LIB KIND(thr|lat) URL SIZE: one measurement by any lib, its own way
  local lib=$1 kind=$2 url=$3 sz=$4 arg
  if is_sp "$lib"; then
    if [ "$kind" = thr ]; then arg=$(count_for "$sz"); else arg=$LAT_N; fi
    run_sp "$lib" "$kind" "$url" "$sz" "$arg"
  else
    if [ "$kind" = thr ]; then arg=$THR_SECS; else arg=$LAT_N; fi
    if is_zmqrs "$lib"; then run_zmqrs "$lib" "$kind" "$url" "$sz" "$arg"
    else run_anchor "$lib" "$kind" "$url" "$sz" "$arg"; fi
  fi
}

raw_bw() { # TR SIZE: raw stream bandwidth, write(SIZE) → read, no library (uds_bw: tcp 127.0.0.1 or a unix socketpair)
  local kind=$1; [ "$kind" = ipc ] && kind=unix
  [ -x "$ABIN/uds_bw" ] || { fail "no $ABIN/uds_bw"; return; }
  logcmd "uds_bw $kind $2 $THR_SECS"
  timeout "$T_CMD" "$ABIN/uds_bw" "$kind" "$2" "$THR_SECS" >>"$RES" 2>>"$ERR" || fail "rc=$? cmd=uds_bw $kind $2 $THR_SECS"
}

raw_lat() { # TR SIZE COUNT: the REQ/REP floor, raw socket ping-pong (TCP_NODELAY / AF_UNIX socketpair)
  local kind=$1; [ "$kind" = ipc ] && kind=unix
  [ -x "$ABIN/raw_lat" ] || { fail "no $ABIN/raw_lat"; return; }
  logcmd "raw_lat $kind $2 $3"
  timeout "$T_CMD" "$ABIN/raw_lat" "$kind" "$2" "$3" >>"$RES" 2>>"$ERR" || fail "rc=$? cmd=raw_lat $kind $2 $3"
}

RUNID=0
run_pubsub() { # LIB URL NSUBS ; one PUB + NSUBS SUB processes. Every RESULT line gets nsubs= (the anchors
  # do not print it) and run= (to add up the subscribers of one run).
  local lib=$1 url=$2 n=$3 spawn=0 rc tmp=$OUT/ps.out
  RUNID=$((RUNID + 1))
  logcmd "$lib pubsub $url 64 $PS_SECS $n"
  if is_sp "$lib"; then
    is_spawn "$lib" && spawn=1
    ll=0; case $lib in *-lossless*) ll=1;; esac   # the opt-in lossless PUB/SUB
    SPBENCH_LOSSLESS=$ll SPBENCH_SPAWN=$spawn timeout "$T_CMD" "$(tool "$lib" pubsub)" "$url" 64 "$PS_SECS" "$n" 2>>"$ERR" | relabel "$lib" >"$tmp"
    rc=${PIPESTATUS[0]}
  else
    timeout "$T_CMD" "$ABIN/bench_$lib" pubsub "$url" 64 "$PS_SECS" "$n" >"$tmp" 2>>"$ERR"; rc=$?
  fi
  sed -n "/^RESULT /{/ nsubs=/!s/\$/ nsubs=$n/;s/\$/ run=$RUNID/;p}" "$tmp" >>"$RES"
  [ $rc = 0 ] || fail "rc=$rc cmd=$lib pubsub $url 64 $PS_SECS $n"
  rm -f "$IPC" "$tmp"
}

# ---------------------------------------------------------------- sections (one repetition each; $rep is set)
section_thr() {
  local tr sz lib
  for tr in $TRANSPORTS; do for sz in $SIZES_THR; do
    for lib in $LIBS; do
      mkurl "$tr"
      echo "rep $rep thr $lib $U $sz" >&2
      run_lib "$lib" thr "$U" "$sz"
    done
    # the raw floor of this cell at the same moment
    if has raw "$SECTIONS" && has "$sz" "$SIZES_RAW"; then echo "rep $rep raw $tr $sz" >&2; raw_bw "$tr" "$sz"; fi
  done; done
}

section_raw() {   # with thr, section_thr took the raw figures beside each cell
  has thr "$SECTIONS" && return
  local tr sz
  for tr in $TRANSPORTS; do for sz in $SIZES_RAW; do echo "rep $rep raw $tr $sz" >&2; raw_bw "$tr" "$sz"; done; done
}

section_inproc() {
  local sz lib
  for sz in $SIZES_INPROC; do for lib in $LIBS; do
    echo "rep $rep inproc $lib $sz" >&2
    if is_sp "$lib"; then run_sp_inproc "$lib" "$sz" "$(count_for "$sz")"
    elif is_zmqrs "$lib"; then continue   # zmq.rs 0.7 has no inproc transport
    else run_anchor "$lib" thr inproc://bench "$sz" "$THR_SECS"; fi
  done; done
}

section_lat() {
  local tr sz lib
  for tr in $TRANSPORTS; do for sz in $SIZES_LAT; do
    for lib in $LIBS; do
      mkurl "$tr"
      echo "rep $rep lat $lib $U $sz" >&2
      run_lib "$lib" lat "$U" "$sz"
    done
    raw_lat "$tr" "$sz" "$LAT_N"   # the floor, same size, same moment
  done; done
}

section_pubsub() {   # spstack and the C anchors (no pubsub mode in the zmq.rs peer)
  local tr n lib l
  for tr in $TRANSPORTS; do for n in $NSUBS; do for lib in $LIBS; do
    is_zmqrs "$lib" && continue
    for l in "$lib" $(lossless_of "$lib"); do
      mkurl "$tr"
      echo "rep $rep pubsub $l $U N=$n" >&2
      run_pubsub "$l" "$U" "$n"
    done
  done; done; done
}

# the lossless PUB/SUB run beside a plain spstack lib (LOSSLESS=1), unless LIBS names it already
lossless_of() {
  local l
  [ "$LOSSLESS" = 1 ] || return 0
  case $1 in spstack) l=spstack-lossless;; spstack-spawn) l=spstack-lossless-spawn;; *) return 0;; esac
  has "$l" "$LIBS" || echo "$l"
}

section_pipes() {   # one PULL with many pipes: memory per idle pipe, then 64 B throughput as pipes grow (spstack only)
  local tr lib spawn rc url
  for tr in $PIPES_TRANSPORTS; do for lib in $LIBS; do
    case $lib in spstack|spstack-spawn|spstack-before|spstack-before-spawn) ;; *) continue;; esac
    spawn=0; is_spawn "$lib" && spawn=1
    case $tr in tcp) url="tcp://127.0.0.1:0";; inproc) url="inproc://spbench-pipes";; *) continue;; esac
    echo "rep $rep pipes $lib $url $NPIPES" >&2
    logcmd "$lib pipes $url $NPIPES 64 $((1000000 / DIV)) $PIPES_CURVE"
    SPBENCH_LIMIT_S=900 SPBENCH_SPAWN=$spawn timeout 1000 "$(tool "$lib" pipes)" "$url" "$NPIPES" 64 $((1000000 / DIV)) \
      "$PIPES_CURVE" 2>>"$ERR" | relabel "$lib" | grep '^RESULT ' >>"$RES"
    rc=${PIPESTATUS[0]}; [ "$rc" = 0 ] || fail "rc=$rc cmd=$lib pipes $url $NPIPES"
  done; done
}

section_survey() {
  # SURVEYOR round trip (spstack only), then at the same moment spstack REQ/REP and the raw floor, 64 B
  local tr n lib spawn rc
  for tr in $TRANSPORTS; do
    for n in $NRESP; do for lib in $LIBS; do
      is_sp "$lib" || continue
      spawn=0; is_spawn "$lib" && spawn=1
      mkurl "$tr"
      echo "rep $rep survey $lib $U N=$n" >&2
      logcmd "$lib survey_lat $U 64 $SURVEY_N $n"
      SPBENCH_SPAWN=$spawn timeout "$T_CMD" "$(tool "$lib" survey_lat)" "$U" 64 "$SURVEY_N" "$n" 2>>"$ERR" | relabel "$lib" >>"$RES"
      rc=${PIPESTATUS[0]}; [ "$rc" = 0 ] || fail "rc=$rc cmd=$lib survey_lat $U 64 $SURVEY_N $n"
      rm -f "$IPC"
    done; done
    if ! has lat "$SECTIONS"; then
      for lib in $LIBS; do
        is_sp "$lib" || continue
        mkurl "$tr"; echo "rep $rep survey-ref $lib lat $U" >&2
        run_sp "$lib" lat "$U" 64 "$SURVEY_N"
      done
      raw_lat "$tr" 64 "$SURVEY_N"
    fi
  done
}

# diag: CPU and context switches, tcp 64 B, once after the repetitions.
# spstack runs as two processes, so each side gets its own DIAG line (role=recv|send, role=server|client);
# the anchors and zmq.rs fork their second side: %w/%c cover parent and (reaped) child together.
section_diag() {
  local TF="elapsed_s=%e user_s=%U sys_s=%S cpu=%P vol_ctxsw=%w invol_ctxsw=%c" lib spawn n lpid bin
  local LOCAL_THR REMOTE_THR LOCAL_LAT REMOTE_LAT
  echo "diag: /usr/bin/time over tcp 64 B runs" >&2
  for lib in $LIBS; do
    is_sp "$lib" || continue
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
    is_sp "$lib" && continue
    spawn=0; is_spawn "$lib" && spawn=1
    if is_zmqrs "$lib"; then bin=$ZBIN; else bin=$ABIN/bench_$lib; fi
    mkurl tcp
    SPBENCH_SPAWN=$spawn timeout "$T_CMD" /usr/bin/time -f "$TF" -o "$OUT/d.l" "$bin" thr "$U" 64 "$THR_SECS" >"$OUT/d.out" 2>>"$ERR"
    sed "s/^RESULT /DIAGRUN /" "$OUT/d.out" >>"$DIAGF"
    echo "DIAG lib=$lib test=thr role=both url=$U size=64 msgs=$(sed -n 's/.* msgs=\([0-9]*\).*/\1/p' "$OUT/d.out") $(tail -1 "$OUT/d.l")" >>"$DIAGF"
    mkurl tcp; n=$((LAT_N + 1000))
    SPBENCH_SPAWN=$spawn timeout "$T_CMD" /usr/bin/time -f "$TF" -o "$OUT/d.l" "$bin" lat "$U" 64 "$LAT_N" >"$OUT/d.out" 2>>"$ERR"
    sed "s/^RESULT /DIAGRUN /" "$OUT/d.out" >>"$DIAGF"
    echo "DIAG lib=$lib test=lat role=both url=$U size=64 msgs=$n $(tail -1 "$OUT/d.l")" >>"$DIAGF"
  done
  rm -f "$OUT"/d.*
}

# ---------------------------------------------------------------- main
for s in $SECTIONS; do   # every section named must exist
  declare -F "section_$s" >/dev/null || { echo "unknown section: $s (sections: thr raw inproc lat pubsub survey pipes diag)"; exit 1; }
done
build_anchors
echo "building spstack perf tools (release)"
build_spstack "$ROOT" "$OUT/bin"
if [ -n "${BEFORE:-}" ]; then
  echo "building the BEFORE tree's perf tools (release): $BEFORE"
  build_spstack "$BEFORE" "$OUT/bin-before"
fi
for l in $LIBS; do is_zmqrs "$l" && { build_zmqrs; break; }; done

{ echo "## date"; date -u; echo "## uname"; uname -a; echo "## cpu"; lscpu | grep -E "Model name|^CPU\(s\)|Thread|MHz" ;
  echo "## load at start"; cat /proc/loadavg; echo "## rust"; rustc --version;
  echo "## zmq.rs"; grep -A1 '^name = "zeromq"' "$HERE/peers/zmqrs/Cargo.lock" | tr '\n' ' '; echo;
  echo "## git"; (cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null && git status --short | head -20) || echo "not a git checkout; SPBENCH_REV=${SPBENCH_REV:-unset}";
  echo "## settings"; echo "REPS=$REPS QUICK=$QUICK THR_SECS=$THR_SECS LAT_N=$LAT_N TRANSPORTS=$TRANSPORTS LIBS=$LIBS SECTIONS=$SECTIONS";
  echo "PS_SECS=$PS_SECS NSUBS=$NSUBS SURVEY_N=$SURVEY_N NRESP=$NRESP LOSSLESS=$LOSSLESS";
  echo "NPIPES=$NPIPES PIPES_CURVE=$PIPES_CURVE PIPES_TRANSPORTS=$PIPES_TRANSPORTS"; } >"$OUT/env.txt" 2>&1

START=$(date +%s)
for rep in $(seq "$REPS"); do
  for s in $SECTIONS; do
    [ "$s" = diag ] && continue
    "section_$s"
  done
done
has diag "$SECTIONS" && section_diag

{ echo "## wall time $(( $(date +%s) - START )) s"; echo "## load at end"; cat /proc/loadavg;
  echo "## git at end"; (cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null && git status --short | head -20) || echo "not a git checkout"; } >>"$OUT/env.txt"
timeout 120 python3 "$HERE/summarize.py" "$RES" "$DIAGF" >"$OUT/summary.md" 2>>"$ERR"
if [ "$PLOT" = 1 ]; then
  if ! python3 -c 'import matplotlib' >/dev/null 2>&1; then
    echo "installing matplotlib (pip) for the plot"
    timeout 600 python3 -m pip install --quiet --root-user-action=ignore matplotlib >>"$ERR" 2>&1 \
      || timeout 600 python3 -m pip install --quiet matplotlib >>"$ERR" 2>&1
  fi
  timeout 120 python3 "$HERE/plot.py" "$RES" "$OUT/plot.png" --env "$OUT/env.txt" >>"$ERR" 2>&1 \
    || echo "plot failed, see $ERR"
fi
cat "$OUT/summary.md"
echo
echo "results: $RES"; echo "summary: $OUT/summary.md"
[ -f "$OUT/plot.png" ] && echo "plot: $OUT/plot.png"
exit 0
