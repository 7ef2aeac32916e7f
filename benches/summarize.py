#!/usr/bin/env python3
"""Side-by-side tables from run_side_by_side.sh output.

usage: summarize.py RESULTS.txt [DIAG.txt]

Reads `RESULT key=value ...` lines (same fields as ../shared/perf-anchors/harness.h, so
spstack's tools and the C anchors mix freely; the anchors' own summarize.py also reads this
file) and prints markdown: median [min–max] over repetitions, one column per library (the C
anchors, zmq.rs, spstack block_on and spawned), the raw floors of the same run (stream bandwidth
from uds_bw, ping-pong from raw_lat) with spstack as a share of them, a check of spstack
against its targets and, from DIAG.txt, CPU and context switches per message.
"""
import statistics as st
import sys
from collections import defaultdict


def parse(path, tag):
    rows, fails = [], []
    try:
        f = open(path)
    except OSError:
        return rows, fails
    for line in f:
        if line.startswith(tag + " "):
            rows.append(dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv))
        elif line.startswith("FAIL"):
            fails.append(line.strip())
    return rows, fails


rows, fails = parse(sys.argv[1], "RESULT")
diag = parse(sys.argv[2], "DIAG")[0] if len(sys.argv) > 2 else []

LIBS = ["spstack", "spstack-spawn", "spstack-lossless", "spstack-lossless-spawn", "spstack-before", "spstack-before-spawn", "nng", "nanomsg", "zmq",
        "zmqrs", "zmqrs-spawn", "floor"]
LIBN = {"spstack": "spstack", "spstack-spawn": "spstack (spawned)",
        "spstack-before": "spstack before", "spstack-before-spawn": "spstack before (spawned)", "nng": "nng 1.5.2", "nanomsg": "nanomsg 1.1.5", "zmq": "libzmq 4.3.4",
        "zmqrs": "zmq.rs", "zmqrs-spawn": "zmq.rs (spawned)",
        "spstack-lossless": "spstack lossless PUB/SUB", "spstack-lossless-spawn": "spstack lossless PUB/SUB (spawned)",
        "floor": "floor: raw socket ping-pong"}
# the variants of spstack measured (block_on, spawned), for the floor and target checks
SPV = [l for l in ("spstack", "spstack-spawn") if any(r.get("lib") == l for r in rows)]
TRS = ["tcp", "ipc", "inproc"]


def tr(r):
    t = r["url"].split("://")[0]
    return "ipc" if t == "unix" else t  # raw_lat floors: url=tcp / url=unix


def hsize(s):
    return {64: "64 B", 1024: "1 KiB", 65536: "64 KiB", 1048576: "1 MiB"}.get(int(s), str(s))


def f(v, nd=0):
    if v >= 100 or nd == 0:
        return f"{v:,.0f}"
    return f"{v:.{nd}f}"


def mr(vals, nd=0):
    m = st.median(vals)
    if len(vals) == 1:
        return f(m, nd)
    return f"{f(m, nd)} [{f(min(vals), nd)}–{f(max(vals), nd)}]"


def group(test):
    g = defaultdict(list)
    for r in rows:
        if r.get("test") == test:
            lib = "floor" if r["lib"].startswith("raw-") else r["lib"]
            g[(tr(r), int(r["size"]), lib)].append(r)
    return g


def med(g, key, field):
    rs = g.get(key)
    return st.median(float(r[field]) for r in rs) if rs else None


def ratio(a, b):
    return f"{a / b:.2f}×" if a is not None and b else "–"


out = []
p = out.append

thr = group("thr")
if thr:
    cells = sorted({(k[0], k[1]) for k in thr}, key=lambda k: (TRS.index(k[0]) if k[0] in TRS else 9, k[1]))
    libs = [l for l in LIBS if any(k[2] == l for k in thr)] + sorted({k[2] for k in thr} - set(LIBS))
    rlibs = [l for l in ("nng", "nanomsg", "zmq", "zmqrs") if l in libs]
    p("### PUSH/PULL throughput (receiver-timed): msgs/s median [min–max] (MB/s median)\n")
    p("| transport | size | " + " | ".join(LIBN.get(l, l) for l in libs) + " | "
      + " | ".join(f"spstack ÷ {LIBN[l].split(' ')[0]}" for l in rlibs) + " |")
    p("|---|---|" + "---|" * (len(libs) + len(rlibs)))
    for t, s in cells:
        row = []
        for l in libs:
            rs = thr.get((t, s, l))
            if not rs:
                row.append("–")
                continue
            row.append(f"{mr([float(r['msgps']) for r in rs])} ({f(st.median(float(r['MBps']) for r in rs), 1)})")
        sp = med(thr, (t, s, "spstack"), "msgps")
        p(f"| {t} | {hsize(s)} | " + " | ".join(row) + " | "
          + " | ".join(ratio(sp, med(thr, (t, s, l), "msgps")) for l in rlibs) + " |")
    p("")
    if any(k[0] == "inproc" for k in thr):
        p("inproc hands a message over by value: its MB/s is not bandwidth, compare msgs/s. zmq.rs has no inproc transport.\n")
    zw = [r for r in rows if r.get("test") == "thr" and r["lib"].startswith("zmqrs") and "window" in r]
    if zw:
        wins = sorted({(int(r["size"]), r["window"]) for r in zw})
        p("zmq.rs's sender was held to a window of messages in flight, acknowledged by the receiver "
          "(benches/README.md): " + ", ".join(f"{hsize(sz)} {w if w != '0' else 'no cap'}" for sz, w in wins)
          + "; sender peak RSS, KiB (median): " + ", ".join(
              f"{hsize(sz)} {f(st.median(float(r['sender_rss_kb']) for r in zw if int(r['size']) == sz and r['sender_rss_kb'] != '?'))}"
              for sz in sorted({int(r['size']) for r in zw})
              if any(int(r['size']) == sz and r['sender_rss_kb'] != '?' for r in zw)) + ".\n")
    rss = "; ".join(
        f"{LIBN.get(l, l)} tcp 64 B {f(med(thr, ('tcp', 64, l), 'rss_kb'))}, tcp 1 MiB {f(med(thr, ('tcp', 1048576, l), 'rss_kb'))}"
        for l in libs if med(thr, ("tcp", 64, l), "rss_kb") is not None and med(thr, ("tcp", 1048576, l), "rss_kb") is not None)
    if rss:
        p("Receiver peak RSS, KiB (median): " + rss + "\n")

# raw stream bandwidth (uds_bw: RESULT test=rawsock kind=tcp|unix chunk= MBps=), same run
raw = defaultdict(list)
for r in rows:
    if r.get("test") == "rawsock":
        raw[("ipc" if r["kind"] == "unix" else r["kind"], int(r["chunk"]))].append(float(r["MBps"]))


def raw_med(t, s_):
    return st.median(raw[(t, s_)]) if raw.get((t, s_)) else None


if raw:
    cells = sorted(raw, key=lambda k: (TRS.index(k[0]) if k[0] in TRS else 9, k[1]))
    libs = [l for l in LIBS if thr and any(k[2] == l and (k[0], k[1]) in raw for k in thr)]
    p("### Raw stream bandwidth of the same run (write(SIZE) → read, no library: `uds_bw`), MB/s, "
      "and each library's PUSH/PULL MB/s as a share of it (target for spstack: ≥ 90 %)\n")
    p("| transport | size | raw MB/s median [min–max] | " + " | ".join(LIBN.get(l, l) + " MB/s (% of raw)" for l in libs) + " |")
    p("|---|---|---|" + "---|" * len(libs))
    for t, s_ in cells:
        rm = raw_med(t, s_)
        row = []
        for l in libs:
            mb = med(thr, (t, s_, l), "MBps")
            row.append("–" if mb is None else f"{f(mb)} ({100 * mb / rm:.0f} %)")
        p(f"| {t}{' (unix)' if t == 'ipc' else ''} | {hsize(s_)} | {mr(raw[(t, s_)])} | " + " | ".join(row) + " |")
    p("")

lat = group("lat")
if lat:
    cells = sorted({(k[0], k[1]) for k in lat}, key=lambda k: (k[1], TRS.index(k[0]) if k[0] in TRS else 9))
    libs = [l for l in LIBS if any(k[2] == l for k in lat)] + sorted({k[2] for k in lat} - set(LIBS))
    p("### REQ/REP round-trip latency, µs: p50 median [min–max] / p99 median (mean median)\n")
    fl = [v for v in SPV if "floor" in libs]
    p("| transport | size | " + " | ".join(LIBN.get(l, l) for l in libs) + " | spstack one-way (nng/nanomsg \"average latency\") | "
      + "".join(f"{LIBN[v]} p50 ÷ floor p50 | " for v in fl))
    p("|---|---|" + "---|" * (len(libs) + 1 + len(fl)))
    for t, s in cells:
        row = []
        for l in libs:
            rs = lat.get((t, s, l))
            if not rs:
                row.append("–")
                continue
            row.append(f"{mr([float(r['p50_us']) for r in rs], 1)} / {f(st.median(float(r['p99_us']) for r in rs), 1)} "
                       f"({f(st.median(float(r['mean_us']) for r in rs), 1)})")
        ow = [float(r["avg_latency_us"]) for r in lat.get((t, s, "spstack"), []) if "avg_latency_us" in r]
        p(f"| {t} | {hsize(s)} | " + " | ".join(row) + f" | {mr(ow, 1) if ow else '–'} | "
          + "".join(ratio(med(lat, (t, s, v), "p50_us"), med(lat, (t, s, "floor"), "p50_us")) + " | " for v in fl))
    n = {r["n"] for r in rows if r.get("test") == "lat"}
    p(f"\nRound trips per run: {', '.join(sorted(n))} timed (after 1,000 warm-up). The floor is `raw_lat`, a raw "
      "socket ping-pong of the same size taken right after the libraries of the same cell "
      "(tcp: 127.0.0.1 with TCP_NODELAY; ipc: an AF_UNIX socketpair). Target for spstack: p50 ≤ 1.3× the floor.\n")

# PUB/SUB fan-out (test=pubsub; nsubs= and run= are added by run_side_by_side.sh)
ps = [r for r in rows if r.get("test") == "pubsub" and "nsubs" in r]
if ps:
    runs = defaultdict(lambda: {"pub": None, "subs": []})
    for r in ps:
        k = (tr(r), int(r["nsubs"]), r["lib"], r.get("run", r["url"]))
        if r["role"] == "pub":
            runs[k]["pub"] = r
        elif r["role"].startswith("sub"):
            runs[k]["subs"].append(r)
    cell = defaultdict(list)  # (tr, n, lib) -> [run]
    for (t, n, l, _), v in runs.items():
        cell[(t, n, l)].append(v)
    cells = sorted({(k[0], k[1]) for k in cell}, key=lambda k: (TRS.index(k[0]) if k[0] in TRS else 9, k[1]))
    cells_ps = cells
    libs = [l for l in LIBS if any(k[2] == l for k in cell)] + sorted({k[2] for k in cell} - set(LIBS))

    def sub_rates(vs):
        return [float(s_["msgps"]) for v in vs for s_ in v["subs"]]

    def pub_rate(vs):
        x = [float(v["pub"]["msgps"]) for v in vs if v["pub"]]
        return st.median(x) if x else None

    p("### PUB→N SUB fan-out, 64 B: delivered msgs/s per subscriber, median [min–max] over all subscribers of all runs "
      "(share of the PUB's offered rate)\n")
    p("| transport | N | " + " | ".join(LIBN.get(l, l) for l in libs) + " |")
    p("|---|---|" + "---|" * len(libs))
    for t, n in cells:
        row = []
        for l in libs:
            vs = cell.get((t, n, l))
            sr = sub_rates(vs) if vs else []
            if not sr:
                row.append("–")
                continue
            pr = pub_rate(vs)
            share = f" ({100 * st.median(sr) / pr:.0f} %)" if pr else ""
            # † a subscriber whose first→last span is under 10 % of the PUB's send time (a burst, not a stream)
            burst = any(float(s_["secs"]) < 0.1 * float(v["pub"]["secs"]) for v in vs if v["pub"] for s_ in v["subs"])
            row.append(mr(sr) + share + (" †" if burst else ""))
        p(f"| {t} | {n} | " + " | ".join(row) + " |")
    p("\n† At least one subscriber got its messages within under 10 % of the PUB's send time: a burst, so its rate means nothing.\n")
    p("Per run, medians over runs: PUB offered msgs/s; aggregate delivered msgs/s (sum over the N subscribers); "
      "subscribers that reported / N. spstack also counts its drops: PUB = QueueFull drops per second of "
      "sending, all pipes together (socket counter; the per-pipe sum is checked against it); SUB = its own receive "
      "queue's QueueFull drops per subscriber (oldest dropped). The anchors do not report drops: "
      "offered − delivered per subscriber is what they lost somewhere.\n")
    p("| transport | N | lib | PUB offered/s | aggregate delivered/s | subs reported | PUB QueueFull drops/s | SUB QueueFull drops per sub | SUB msgs off the wire per sub |")
    p("|---|---|---|---|---|---|---|---|---|")
    for t, n in cells:
        for l in libs:
            vs = cell.get((t, n, l))
            if not vs:
                continue
            pr = pub_rate(vs)
            agg = [sum(float(s_["msgps"]) for s_ in v["subs"]) for v in vs if v["subs"]]
            rep_ = f"{min(len(v['subs']) for v in vs)}–{max(len(v['subs']) for v in vs)}" \
                if len({len(v['subs']) for v in vs}) > 1 else str(len(vs[0]["subs"]))
            pd, sd, wire = "–", "–", "–"
            pubs = [v["pub"] for v in vs if v["pub"] and "drops_queuefull" in v["pub"]]
            if pubs:
                x = [float(q["drops_queuefull"]) / float(q["secs"]) for q in pubs if float(q["secs"]) > 0]
                pd = mr(x) if x else "–"
                bad = [q for q in pubs if q.get("pipe_drops_queuefull") not in (None, q["drops_queuefull"])]
                if bad:
                    pd += f" (per-pipe sum differs in {len(bad)} run(s))"
            subd = [float(s_["drops_queuefull"]) for v in vs for s_ in v["subs"] if "drops_queuefull" in s_]
            if subd:
                sd = mr(subd)
            w = [float(s_["msgs_in"]) for v in vs for s_ in v["subs"] if "msgs_in" in s_]
            if w:
                wire = mr(w)
            p(f"| {t} | {n} | {LIBN.get(l, l)} | {f(pr) if pr else '–'} | {mr(agg) if agg else '–'} | {rep_}/{n} | {pd} | {sd} | {wire} |")
    p("")

# SURVEYOR round trip (spstack only; the anchors have no survey mode)
sv = group("survey")
if sv:
    svn = defaultdict(list)
    for r in rows:
        if r.get("test") == "survey":
            svn[(tr(r), int(r["nresp"]), r["lib"])].append(r)
    cells = sorted({(k[0], k[1]) for k in svn}, key=lambda k: (TRS.index(k[0]) if k[0] in TRS else 9, k[1]))
    libs = [l for l in LIBS if any(k[2] == l for k in svn)] + sorted({k[2] for k in svn} - set(LIBS))
    p("### SURVEYOR round trip, 64 B, send → all N responses, µs: p50 median [min–max] / p99 median (mean median); "
      "responses/s median\n")
    p("The anchors (nng, nanomsg, zmq) have no survey mode. The reference columns are spstack REQ/REP "
      "(`remote_lat`, 64 B) and the raw socket ping-pong floor, same transport, same run.\n")
    p("| transport | N | " + " | ".join(LIBN.get(l, l) + " | resp/s" for l in libs)
      + " | incomplete surveys | ref: REQ/REP spstack | ref: REQ/REP spstack (spawned) | ref: floor |")
    p("|---|---|" + "---|---|" * len(libs) + "---|---|---|---|")
    for t, n in cells:
        row = []
        inc = 0
        for l in libs:
            rs = svn.get((t, n, l))
            if not rs:
                row += ["–", "–"]
                continue
            inc += sum(int(r.get("incomplete", 0)) for r in rs)
            row.append(f"{mr([float(r['p50_us']) for r in rs], 1)} / {f(st.median(float(r['p99_us']) for r in rs), 1)} "
                       f"({f(st.median(float(r['mean_us']) for r in rs), 1)})")
            row.append(f(st.median(float(r["resp_per_s"]) for r in rs)))
        refs = []
        for l in ("spstack", "spstack-spawn", "floor"):
            rs = lat.get((t, 64, l)) if lat else None
            refs.append(f"{mr([float(r['p50_us']) for r in rs], 1)} / {f(st.median(float(r['p99_us']) for r in rs), 1)}"
                        if rs else "–")
        p(f"| {t} | {n} | " + " | ".join(row) + f" | {inc} | " + " | ".join(refs) + " |")
    ns = sorted({r["n"] for r in rows if r.get("test") == "survey"})
    p(f"\nTimed surveys per run: {', '.join(ns)} (after 1,000 warm-up). The reference columns show p50 / p99.\n")

# targets
checks = []
def chk(name, a, b, want_ge=True, factor=1.0, shown=None, how=None):
    """a against factor × b; `shown` formats the reference column (default: b itself), `how` the
    ratio a ÷ b in the verdict (default: 1.23×)."""
    if a is None or b is None:
        checks.append((name, "–", "–", "n/a"))
        return
    ok = a >= factor * b if want_ge else a <= factor * b
    ref = shown(b) if shown else b
    r = how(a / b) if how else f"{a / b:.2f}×"
    checks.append((name, a, ref, f"met ({r})" if ok else f"**short** ({r})"))

for v in SPV:
    tag = "" if v == "spstack" else " (spawned)"
    if thr:
        sp, nng, nn = (med(thr, ("tcp", 64, l), "msgps") for l in (v, "nng", "nanomsg"))
        chk(f"tcp 64 B msgs/s ≥ 10× nng{tag}", sp, nng, True, 10.0)
        chk(f"tcp 64 B msgs/s ≥ nanomsg{tag}", sp, nn)
        for t in ("tcp", "ipc"):
            for s_ in (65536, 1048576):
                chk(f"{t} {hsize(s_)} MB/s ≥ nanomsg{tag}", med(thr, (t, s_, v), "MBps"), med(thr, (t, s_, "nanomsg"), "MBps"))
        for t in ("tcp", "ipc") if raw else ():
            for s_ in (65536, 1048576):
                chk(f"{t} {hsize(s_)} MB/s ≥ 90 % of raw {'unix' if t == 'ipc' else t} bandwidth{tag}",
                    med(thr, (t, s_, v), "MBps"), raw_med(t, s_), True, 0.9,
                    lambda b: f"90 % × {f(b)} = {f(0.9 * b)}", lambda x: f"{100 * x:.0f} % of raw")
        for s_ in (64, 1024) if any(k[0] == "inproc" for k in thr) else ():
            chk(f"inproc {hsize(s_)} msgs/s ≥ libzmq{tag}", med(thr, ("inproc", s_, v), "msgps"),
                med(thr, ("inproc", s_, "zmq"), "msgps"))
    if lat:
        chk(f"tcp 64 B REQ/REP p50 ≤ nanomsg (µs){tag}", med(lat, ("tcp", 64, v), "p50_us"),
            med(lat, ("tcp", 64, "nanomsg"), "p50_us"), False)
        for t in ("tcp", "ipc") if any(k[2] == "floor" for k in lat) else ():
            chk(f"{t} 64 B REQ/REP p50 ≤ 1.3× raw ping-pong floor (µs){tag}", med(lat, (t, 64, v), "p50_us"),
                med(lat, (t, 64, "floor"), "p50_us"), False, 1.3, lambda b: f"1.3 × {f(b, 1)} = {f(1.3 * b, 1)}",
                lambda x: f"{x:.2f}× the floor")
if checks:
    p("### spstack against its targets (medians)\n")
    p("| target | spstack (median) | reference (median) | verdict (spstack ÷ reference) |")
    p("|---|---|---|---|")
    for name, a, b, v in checks:
        fa = f(a, 1) if isinstance(a, float) else a
        fb = f(b, 1) if isinstance(b, (float, int)) else b
        if "≥ 10×" in name and isinstance(b, float):
            fb = f"10 × {f(b)} = {f(10 * b)}"
        p(f"| {name} | {fa} | {fb} | {v} |")
    p("")

if diag:
    p("### CPU and context switches, tcp 64 B (/usr/bin/time; anchors: both processes together)\n")
    p("| lib | test | role | msgs or round trips | elapsed s | user s | sys s | vol ctxsw | invol ctxsw | ctxsw per msg | CPU µs per msg |")
    p("|---|---|---|---|---|---|---|---|---|---|---|")
    for d in diag:
        try:
            n = float(d["msgs"])
            cs = float(d["vol_ctxsw"]) + float(d["invol_ctxsw"])
            cpu = float(d["user_s"]) + float(d["sys_s"])
            p(f"| {d['lib']} | {d['test']} | {d['role']} | {f(n)} | {d['elapsed_s']} | {d['user_s']} | {d['sys_s']} | "
              f"{d['vol_ctxsw']} | {d['invol_ctxsw']} | {cs / n:.3f} | {cpu / n * 1e6:.2f} |")
        except (KeyError, ValueError, ZeroDivisionError):
            p(f"| {d.get('lib')} | {d.get('test')} | {d.get('role')} | (incomplete: {' '.join(k + '=' + v for k, v in d.items())}) |||||||| ")
    p("")

if fails:
    p("### Failures\n")
    for l in fails:
        p(f"- `{l}`")
    p("")

# before / after (BEFORE=DIR in run_side_by_side.sh): the same cells, the same run
if any(r.get("lib", "").startswith("spstack-before") for r in rows):
    p("### Before / after, same run: after ÷ before (medians; > 1 is better for rates, < 1 for latency)\n")
    p("| test | transport | size or N | block_on: before → after | ratio | spawned: before → after | ratio |")
    p("|---|---|---|---|---|---|---|")

    def ba(label, t, k, get, nd=0):
        cells = []
        for v in ("", "-spawn"):
            b, a = get("spstack-before" + v), get("spstack" + v)
            cells += [f"{f(b, nd) if b is not None else '–'} → {f(a, nd) if a is not None else '–'}", ratio(a, b)]
        p(f"| {label} | {t} | {k} | " + " | ".join(cells) + " |")

    for t in TRS:
        for sz in (64, 1024, 65536, 1048576):
            if any(k[0] == t and k[1] == sz for k in thr):
                ba("thr msgs/s" if sz < 65536 else "thr MB/s", t, hsize(sz),
                   lambda l: med(thr, (t, sz, l), "msgps" if sz < 65536 else "MBps"))
        for sz in (64, 1024):
            if any(k[0] == t and k[1] == sz for k in lat):
                ba("REQ/REP p50 µs", t, hsize(sz), lambda l: med(lat, (t, sz, l), "p50_us"), 1)
    if ps:
        for (t, n) in cells_ps:
            ba("PUB→N aggregate delivered/s", t, f"N={n}",
               lambda l: (st.median([sum(float(s_["msgps"]) for s_ in v["subs"]) for v in cell[(t, n, l)]])
                          if cell.get((t, n, l)) else None))
    if sv:
        for (t, n) in sorted({(k[0], k[1]) for k in svn}):
            ba("SURVEY p50 µs", t, f"N={n}",
               lambda l: st.median(float(r["p50_us"]) for r in svn[(t, n, l)]) if svn.get((t, n, l)) else None, 1)
    p("")

# one socket with many pipes (SECTIONS=pipes: benches/pipes.rs)
pm = [r for r in rows if r.get("test") == "pipes_mem"]
pt = [r for r in rows if r.get("test") == "pipes_thr"]
if pm or pt:
    p("### One PULL with many pipes (benches/pipes.rs)\n")
    if pm:
        p("Memory per idle pipe, median over runs (tcp: the listener's own; inproc: both ends of a pipe and the dialer):\n")
        p("| lib | transport | pipes | phase | heap bytes per pipe | RSS KiB per pipe |")
        p("|---|---|---|---|---|---|")
        g = defaultdict(list)
        for r in pm:
            g[(r["lib"], tr(r), int(r["pipes"]), r["phase"])].append(r)
        for (l, t, n, ph), rs in sorted(g.items()):
            p(f"| {LIBN.get(l, l)} | {t} | {f(n)} | {ph} | {mr([float(r['heap_bytes_per_pipe']) for r in rs])} | "
              f"{mr([float(r['rss_kb_per_pipe']) for r in rs], 2)} |")
        p("")
    if pt:
        p("Throughput as pipes grow (PUSH round robin over all pipes to one PULL), msgs/s median [min–max]:\n")
        g = defaultdict(list)
        for r in pt:
            g[(r["lib"], tr(r), int(r["size"]), int(r["pipes"]))].append(float(r["msgps"]))
        ns = sorted({k[3] for k in g})
        p("| lib | transport | size | " + " | ".join(f"{f(n)} pipes" for n in ns) + " |")
        p("|---|---|---|" + "---|" * len(ns))
        for (l, t, sz) in sorted({k[:3] for k in g}):
            p(f"| {LIBN.get(l, l)} | {t} | {hsize(sz)} | " + " | ".join(mr(g[(l, t, sz, n)]) if g.get((l, t, sz, n)) else "–" for n in ns) + " |")
        p("")

print("\n".join(out))
