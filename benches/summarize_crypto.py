#!/usr/bin/env python3
"""Tables for benches/run_crypto.sh: each stack beside the primitive.

Hop layer target: at 64 KiB, at least 80 % of the AEAD primitive's MB/s.
Signing target: the signed stack's per-message time at its bottleneck (the
receiver's verify) no more than 10 % above the bare verify time.
"""
import re
import sys

rows = []
for line in open(sys.argv[1]):
    if not line.startswith("RESULT "):
        continue
    kv = dict(p.split("=", 1) for p in line.split()[1:] if "=" in p)
    rows.append(kv)


def find(**want):
    for r in rows:
        if all(r.get(k) == v for k, v in want.items()):
            return r
    return None


sizes = ["64", "1024", "65536", "1048576"]
print("## Stacks: PUSH -> PULL over tcp, MB/s (msgs/s)\n")
print("| size | plain | hop | signed | hop+signed | AEAD 0.10 (ours) | AEAD 0.11 (anchor) |")
print("|---|---|---|---|---|---|---|")
for s in sizes:
    cells = []
    for v in ["plain", "hop", "signed", "hop+signed"]:
        r = find(lib="spstack", variant=v, test="push_pull_tcp", size=s)
        cells.append(f"{float(r['MBps']):.0f} ({float(r['msgs_per_s']):.0f})" if r else "-")
    ours = find(lib="chacha20poly1305-0.10", size=s)
    anchor = find(lib="chacha20poly1305-0.11", variant="default-runtime-detect", size=s)
    cells.append(f"{float(ours['MBps']):.0f}" if ours else "-")
    cells.append(f"{float(anchor['MBps']):.0f}" if anchor else "-")
    print(f"| {s} | " + " | ".join(cells) + " |")

print()
hop = find(lib="spstack", variant="hop", test="push_pull_tcp", size="65536")
prim = find(lib="chacha20poly1305-0.10", size="65536")
anchor = find(lib="chacha20poly1305-0.11", variant="default-runtime-detect", size="65536")
if hop and prim:
    h, p = float(hop["MBps"]), float(prim["MBps"])
    print(f"hop layer at 64 KiB: {h:.0f} MB/s = {100 * h / p:.0f} % of the in-place AEAD (0.10) at {p:.0f} MB/s (target >= 80 %)")
    if anchor:
        a = float(anchor["MBps"])
        print(f"  and {100 * h / a:.0f} % of the anchor's AEAD (0.11) at {a:.0f} MB/s")
print()
print("Record path in memory (seal + open on one core) against the AEAD run twice (once per direction):\n")
print("| size | seal+open MB/s | AEAD 0.10 MB/s / 2 | layer efficiency |")
print("|---|---|---|---|")
for s_ in sizes:
    r = find(lib="spstack", test="record_seal_open", size=s_)
    p_ = find(lib="chacha20poly1305-0.10", size=s_)
    if r and p_:
        a, b = float(r["MBps"]), float(p_["MBps"]) / 2
        print(f"| {s_} | {a:.0f} | {b:.0f} | {100 * a / b:.0f} % |")
print()
sig = find(lib="spstack", variant="signed", test="push_pull_tcp", size="64")
ver = find(lib="ed25519-dalek-2", test="verify")
sgn = find(lib="ed25519-dalek-2", test="sign")
if sig and ver and sgn:
    per_msg = 1e6 / float(sig["msgs_per_s"])
    v = 1e6 / float(ver["ops_per_s"])
    s_ = 1e6 / float(sgn["ops_per_s"])
    bottleneck = max(v, s_)
    print(f"signed 64 B: {per_msg:.1f} us per message at the bottleneck; bare sign {s_:.1f} us, verify {v:.1f} us "
          f"-> {100 * (per_msg / bottleneck - 1):+.0f} % above the slower primitive (target <= +10 %)")
for v in ["plain", "hop", "signed", "hop+signed"]:
    r = find(lib="spstack", variant=v, test="push_pull_tcp", size="65536")
    if r and "copied_bytes" in r:
        print(f"{v}: copied_bytes counter over the 64 KiB run = {r['copied_bytes']}")
