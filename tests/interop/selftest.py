#!/usr/bin/env python3
"""Self-test of the foreign-peer scripts, without any Rust: pairs peer.py
(pynng) with itself and with nano.py (nanocat and libnanomsg backends) over
tcp:// and ipc://, in both listen/dial directions.

    python3 tests/interop/selftest.py [--quick] [--filter SUBSTRING] [-j N]
        [--count N] [--timeout SECS] [--nano-args "--linger 0.3 --send-delay 0.3"]

Prints one line per run and a summary; exit 0 only if every run passed.
Every subprocess is bounded by a timeout.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = [sys.executable, os.path.join(HERE, "peer.py")]
NANO = [sys.executable, os.path.join(HERE, "nano.py")]
LIB = NANO + ["--backend", "libnanomsg"]

FULL = "0,1,65536,1048576"
REQREP_NANOCAT = "0,1,65536,1048572"   # nanocat's NN_RCVMAXSIZE minus the 4-byte header

# (listen proto, dial proto)
PAIRS = [
    ("push0", "pull0"), ("pull0", "push0"), ("rep0", "req0"), ("req0", "rep0"),
    ("pair0", "pair0"), ("pub0", "sub0"), ("sub0", "pub0"),
    ("surveyor0", "respondent0"), ("respondent0", "surveyor0"), ("bus0", "bus0"),
]


def sizes_for(lproto, dproto, impls):
    if "nano" in impls:
        protos = {lproto, dproto}
        if protos & {"req0", "rep0", "surveyor0", "respondent0"}:
            return REQREP_NANOCAT
    return FULL


def run_case(limpl, lproto, dimpl, dproto, transport, sizes, count, timeout, tmp):
    cmd = {"peer": PEER, "nano": NANO, "lib": LIB}
    if transport == "tcp":
        # the listener binds a port of its choice and names it in the ready file
        url = "tcp://127.0.0.1:0"
    else:
        url = "ipc://%s" % os.path.join(tmp, "s%d.ipc" % time.monotonic_ns())
    ready = os.path.join(tmp, "ready.%d" % time.monotonic_ns())
    common = ["--sizes", sizes, "--count-per-size", str(count), "--timeout", str(timeout)]
    t0 = time.monotonic()
    lp = subprocess.Popen(cmd[limpl] + ["--proto", lproto, "--mode", "listen", "--url", url,
                                        "--ready-file", ready] + common,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dl = time.monotonic() + timeout
    while not os.path.exists(ready) and time.monotonic() < dl and lp.poll() is None:
        time.sleep(0.02)
    try:
        with open(ready) as f:
            url = f.read().strip()
    except OSError:
        pass   # the listener failed; the dialer fails too, and both are reported
    dp = subprocess.Popen(cmd[dimpl] + ["--proto", dproto, "--mode", "dial", "--url", url]
                          + common,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    outs = []
    for p in (dp, lp):
        try:
            o, e = p.communicate(timeout=2 * timeout + 5)
        except subprocess.TimeoutExpired:
            p.kill()
            o, e = p.communicate()
            e += b" [selftest: killed, exceeded 2*timeout]"
        outs.append((p.returncode, (o + e).decode("utf-8", "replace").strip().replace("\n", " | ")))
    dt = time.monotonic() - t0
    (drc, dout), (lrc, lout) = outs
    ok = lrc == 0 and drc == 0
    line = "%-4s %-5s %-4s %-11s listen <- %-4s %-11s dial  sizes=%s x%d  %5.1fs  %s" % (
        "PASS" if ok else "FAIL", transport, limpl, lproto, dimpl, dproto, sizes, count, dt,
        "" if ok else "\n      listen rc=%s: %s\n      dial   rc=%s: %s" % (lrc, lout, drc, dout))
    try:
        os.unlink(ready)
    except OSError:
        pass
    return ok, line


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="pynng<->nanocat only, tcp only")
    ap.add_argument("--filter", default="")
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=20)
    ap.add_argument("-j", type=int, default=1, help="parallel runs (default 1)")
    ap.add_argument("--nano-args", default="",
                    help='extra nano.py options, e.g. "--linger 0.3 --send-delay 0.3"')
    a = ap.parse_args()
    NANO.extend(a.nano_args.split())

    cases = []
    transports = ["tcp"] if a.quick else ["tcp", "ipc"]
    impl_pairs = [("nano", "peer"), ("peer", "nano")]
    if not a.quick:
        impl_pairs = [("peer", "peer")] + impl_pairs + [("lib", "peer"), ("peer", "lib")]
    for tr in transports:
        for li, di in impl_pairs:
            for lp, dp in PAIRS + ([("pair1", "pair1")] if (li, di) == ("peer", "peer") else []):
                count = a.count
                if "nano" in (li, di) and "respondent0" in (lp, dp):
                    # one survey per nanocat respondent run (see README)
                    for s in REQREP_NANOCAT.split(","):
                        cases.append((li, lp, di, dp, tr, s, 1))
                    continue
                cases.append((li, lp, di, dp, tr, sizes_for(lp, dp, (li, di)), count))
    cases = [c for c in cases if a.filter in " ".join(map(str, c))]

    tmp = tempfile.mkdtemp(prefix="spstack-selftest-")
    failures = 0
    with ThreadPoolExecutor(max_workers=max(1, a.j)) as ex:
        futs = [ex.submit(run_case, *c, a.timeout, tmp) for c in cases]
        for f in futs:
            ok, line = f.result()
            failures += not ok
            print(line, flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    print("%d runs, %d failed" % (len(cases), failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
