#!/usr/bin/env python3
"""Plot of a side-by-side run (benches/run_side_by_side.sh): spstack against the anchors.

usage: plot.py RESULTS.txt OUT.png|OUT.svg [--env ENV.txt]

Panels: PUSH/PULL throughput against message size, one per transport (tcp and ipc in MB/s, with
the raw stream bandwidth of the same run; inproc in msgs/s, where MB/s is not bandwidth), and
REQ/REP p50 latency per transport and size beside the raw ping-pong floor. Points are medians
over the repetitions, whiskers min–max. ENV.txt (the run's env.txt) puts the date, commit,
settings and load average in the title. Needs matplotlib (`python3 -m pip install matplotlib`).
"""
import statistics as st
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# (label, colour, line style) per lib, in legend order
STYLE = {
    "spstack": ("spstack", "#1f4e9c", "-"),
    "spstack-spawn": ("spstack (spawned)", "#4f8fe6", "--"),
    "spstack-before": ("spstack before", "#7a7a9c", "-"),
    "spstack-before-spawn": ("spstack before (spawned)", "#a0a0c0", "--"),
    "zmq": ("libzmq 4.3.4", "#c0392b", "-"),
    "zmqrs": ("zmq.rs", "#e67e22", "-"),
    "zmqrs-spawn": ("zmq.rs (spawned)", "#f0a860", "--"),
    "nanomsg": ("nanomsg 1.1.5", "#27ae60", "-"),
    "nng": ("nng 1.5.2", "#8e8e8e", "-"),
    "floor": ("raw socket (no library)", "#000000", ":"),
}
SIZES = {64: "64 B", 1024: "1 KiB", 65536: "64 KiB", 1048576: "1 MiB"}


def parse(path):
    rows = []
    with open(path) as f:
        for line in f:
            if line.startswith("RESULT "):
                rows.append(dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv))
    return rows


def transport(url):
    t = url.split("://")[0]
    return "ipc" if t == "unix" else t


def env_title(path):
    if not path:
        return ""
    try:
        lines = open(path).read().splitlines()
    except OSError:
        return ""
    sec, info = None, defaultdict(list)
    for l in lines:
        if l.startswith("## "):
            sec = l[3:]
        elif sec and l.strip():
            info[sec].append(l.strip())
    load = lambda k: info[k][0].split()[0] if info.get(k) else "?"  # noqa: E731
    date = info["date"][0] if info.get("date") else ""
    rev = info["git"][0] if info.get("git") else ""
    dirty = " (uncommitted changes)" if len(info.get("git", [])) > 1 else ""
    sets = info["settings"][0] if info.get("settings") else ""
    keep = [kv for kv in sets.split() if kv.split("=")[0] in ("REPS", "QUICK", "THR_SECS", "LAT_N")]
    quick = "\nQUICK=1 smoke run: the shape of the plot, not figures" if "QUICK=1" in keep else ""
    return (f"{date} · commit {rev}{dirty} · {' '.join(keep)}\n"
            f"load average {load('load at start')} at start, {load('load at end')} at end (2 vCPUs){quick}")


def main():
    args = sys.argv[1:]
    envp = None
    if "--env" in args:
        i = args.index("--env")
        envp = args[i + 1]
        del args[i:i + 2]
    if len(args) != 2:
        sys.exit(__doc__)
    rows = parse(args[0])

    thr = defaultdict(list)  # (tr, size, lib) -> [row]
    lat = defaultdict(list)
    raw = defaultdict(list)  # (tr, size) -> [MB/s]
    for r in rows:
        t = r.get("test")
        if t == "thr":
            thr[(transport(r["url"]), int(r["size"]), r["lib"])].append(r)
        elif t == "lat":
            lib = "floor" if r["lib"].startswith("raw-") else r["lib"]
            lat[(transport(r["url"]), int(r["size"]), lib)].append(float(r["p50_us"]))
        elif t == "rawsock":
            raw[("ipc" if r["kind"] == "unix" else r["kind"], int(r["chunk"]))].append(float(r["MBps"]))

    trs = [t for t in ("tcp", "ipc", "inproc") if any(k[0] == t for k in thr)]
    panels = len(trs) + (1 if lat else 0)
    if panels == 0:
        sys.exit("plot.py: no thr or lat results in " + args[0])
    cols = 2 if panels > 1 else 1
    rws = (panels + 1) // 2
    fig, axes = plt.subplots(rws, cols, figsize=(7.5 * cols, 5.2 * rws), squeeze=False)
    axes = [a for row in axes for a in row]
    for a in axes[panels:]:
        a.set_visible(False)

    def whisk(vals):
        m = st.median(vals)
        return m, m - min(vals), max(vals) - m

    for ax, t in zip(axes, trs):
        inproc = t == "inproc"
        field = "msgps" if inproc else "MBps"
        libs = [l for l in STYLE if any(k[0] == t and k[2] == l for k in thr)]
        for l in libs:
            sizes = sorted(s for (tt, s, ll) in thr if tt == t and ll == l)
            pts = [whisk([float(r[field]) for r in thr[(t, s, l)]]) for s in sizes]
            name, colour, ls = STYLE[l]
            ax.errorbar(sizes, [p[0] for p in pts], yerr=[[p[1] for p in pts], [p[2] for p in pts]],
                        label=name, color=colour, linestyle=ls, marker="o", markersize=4, capsize=3,
                        linewidth=2.2 if l.startswith("spstack") else 1.4)
        rs = sorted(s for (tt, s) in raw if tt == t)
        if rs and not inproc:
            pts = [whisk(raw[(t, s)]) for s in rs]
            ax.errorbar(rs, [p[0] for p in pts], yerr=[[p[1] for p in pts], [p[2] for p in pts]],
                        label=f"raw {'unix' if t == 'ipc' else 'tcp'} stream (uds_bw)", color="black",
                        linestyle="none", marker="s", markersize=7, capsize=3)
            for k, (s_, p) in enumerate(zip(rs, pts)):
                ax.hlines(0.9 * p[0], s_ / 1.6, s_ * 1.6, colors="black", linestyles="--", linewidth=1,
                          label="90 % of raw (target)" if k == 0 else None)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        xs = sorted({s for (tt, s, _) in thr if tt == t})
        ax.set_xticks(xs, [SIZES.get(s, str(s)) for s in xs])
        ax.minorticks_off()
        ax.set_xlabel("message size")
        ax.set_ylabel("msgs/s (median)" if inproc else "MB/s (median, payload)")
        ax.set_title(f"PUSH/PULL {t}" + (" — msgs/s (a pointer moves: MB/s is not bandwidth)" if inproc else ""))
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8, loc="best")

    if lat:
        ax = axes[len(trs)]
        cells = sorted({(k[0], k[1]) for k in lat}, key=lambda k: (("tcp", "ipc").index(k[0]) if k[0] in ("tcp", "ipc") else 9, k[1]))
        libs = [l for l in STYLE if any(k[2] == l for k in lat)]
        w = 0.8 / max(len(libs), 1)
        for i, l in enumerate(libs):
            xs, ms, lo, hi = [], [], [], []
            for j, c in enumerate(cells):
                v = lat.get((c[0], c[1], l))
                if not v:
                    continue
                m, a, b = whisk(v)
                xs.append(j - 0.4 + w * (i + 0.5))
                ms.append(m)
                lo.append(a)
                hi.append(b)
            name, colour, ls = STYLE[l]
            ax.bar(xs, ms, width=w, color=colour, label=name, yerr=[lo, hi], capsize=2,
                   hatch="//" if ls == "--" else None, edgecolor="white" if ls != "--" else colour,
                   alpha=0.85 if ls == "--" else 1.0)
        floor = [st.median(lat[(c[0], c[1], "floor")]) for c in cells if lat.get((c[0], c[1], "floor"))]
        if len(floor) == len(cells):
            for j, fv in enumerate(floor):
                ax.hlines(1.3 * fv, j - 0.45, j + 0.45, colors="black", linestyles="--", linewidth=1,
                          label="1.3 × floor (target)" if j == 0 else None)
        ax.set_xticks(range(len(cells)), [f"{c[0]} {SIZES.get(c[1], c[1])}" for c in cells])
        ax.set_ylabel("round trip p50, µs (median; whiskers min–max)")
        ax.set_title("REQ/REP round-trip latency")
        ax.grid(True, axis="y", alpha=0.3)
        top = max(max(v) for v in lat.values())
        ax.set_ylim(0, top * 1.45)  # room for the legend above the bars
        ax.legend(fontsize=8, loc="upper center", ncol=3)

    title = "spstack beside libzmq, zmq.rs, nanomsg, nng and the raw floors"
    sub = env_title(envp)
    fig.suptitle(title + ("\n" + sub if sub else ""), fontsize=11)
    fig.tight_layout()
    fig.savefig(args[1], dpi=100)
    print(f"plot: {args[1]}")


if __name__ == "__main__":
    main()
