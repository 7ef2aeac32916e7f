#!/usr/bin/env python3
"""Tables for benches/run_crypto.sh: each stack beside the primitives it
uses, and, when the run had a BEFORE tree, before beside after.

Targets (issue 11):
  signed 64 B >= 60 k msg/s; hop 64 B >= 1 M msg/s; hop at 64 KiB >= 90 %
  of the two-core ceiling: 2 cores / (two AEAD passes + the kernel's tcp
  copies, 65 us per 64 KiB message as measured on 25 Nov, benches/README.md).

Each RESULT line may carry round=N (ROUNDS > 1): a point's figure is the
median over the rounds of the per-round medians.
"""
import re
import statistics
import sys
from collections import defaultdict

KERNEL_US_64K = 65.0  # system time per 64 KiB message, both sides (README, 25 Nov)
QUIET_PLAIN_64 = 2_148_010  # plain tcp 64 B on a quiet machine (README, 25 Nov)

points = defaultdict(list)
for line in open(sys.argv[1]):
    if not line.startswith("RESULT "):
        continue
    kv = dict(p.split("=", 1) for p in line.split()[1:] if "=" in p)
    key = (kv.get("lib"), kv.get("variant"), kv.get("test"), kv.get("size"))
    points[key].append(kv)


def find(lib, test, size, variant=None):
    for (l, v, t, s), rows in points.items():
        if l == lib and t == test and s == size and (variant is None or v == variant):
            out = dict(rows[0])
            for field in ("MBps", "msgs_per_s", "ops_per_s"):
                vals = [float(r[field]) for r in rows if field in r]
                if vals:
                    out[field] = statistics.median(vals)
            out["rounds"] = len(rows)
            return out
    return None


def rate(r):
    return float(r.get("msgs_per_s", r.get("ops_per_s", 0))) if r else None


def mb(r):
    return float(r["MBps"]) if r and "MBps" in r else None


def cell(r):
    return f"{mb(r):,.0f} ({rate(r):,.0f}/s)" if r else "-"


before = any(k[0] and k[0].startswith("before:") for k in points)
sizes = ["64", "1024", "65536", "1048576"]
stacks = ["plain", "hop", "signed", "hop+signed"]

print("## Stacks: PUSH -> PULL over tcp, MB/s (msgs/s)\n")
print("| size | plain | hop | signed | hop+signed | AEAD ring (ours) | AEAD 0.10 (snow's) | AEAD 0.11 (anchor) |")
print("|---|---|---|---|---|---|---|---|")
for s in sizes:
    cells = [cell(find("spstack", "push_pull_tcp", s, v)) for v in stacks]
    for lib, var in [("ring-0.17", None), ("chacha20poly1305-0.10", None), ("chacha20poly1305-0.11", "default-runtime-detect")]:
        r = find(lib, "aead_encrypt", s, var)
        cells.append(f"{mb(r):,.0f}" if r else "-")
    print(f"| {s} | " + " | ".join(cells) + " |")

if before:
    print("\n## Before and after, same run\n")
    print("| stack | size | before | after | after / before | after / plain (before: / plain) |")
    print("|---|---|---|---|---|---|")
    for v in stacks:
        for s in sizes:
            b = find("before:spstack", "push_pull_tcp", s, v)
            a = find("spstack", "push_pull_tcp", s, v)
            if not (a and b):
                continue
            pa = find("spstack", "push_pull_tcp", s, "plain")
            pb = find("before:spstack", "push_pull_tcp", s, "plain")
            rel = ""
            if v != "plain" and pa and pb:
                rel = f"{rate(a) / rate(pa):.3f} ({rate(b) / rate(pb):.3f})"
            print(f"| {v} | {s} | {rate(b):,.0f}/s | {rate(a):,.0f}/s | {rate(a) / rate(b):.2f} | {rel} |")

print("\n## Primitives (one core)\n")
for lib, test, what in [
    ("ed25519-dalek-2", "sign", "Ed25519 sign"),
    ("ed25519-dalek-2", "verify", "Ed25519 verify_strict"),
    ("ed25519-dalek-2", "verify_batch64", "Ed25519 verify_batch of 64 (per signature)"),
]:
    r = find(lib, test, "64")
    rb = find("before:" + lib, test, "64")
    if r:
        extra = f" (before tree: {rate(rb):,.0f}/s)" if rb else ""
        print(f"* {what}: {rate(r):,.0f}/s = {1e6 / rate(r):.1f} us{extra}")

print("\nRecord path in memory (seal + open on one core) against the AEAD run twice:\n")
print("| size | seal+open MB/s | ring AEAD MB/s / 2 | layer efficiency |")
print("|---|---|---|---|")
for s in sizes:
    r = find("spstack", "record_seal_open", s)
    p = find("ring-0.17", "aead_encrypt", s)
    if r and p:
        a, b = mb(r), mb(p) / 2
        print(f"| {s} | {a:,.0f} | {b:,.0f} | {100 * a / b:.0f} % |")

print("\n## Targets\n")
sig = find("spstack", "push_pull_tcp", "64", "signed")
sgn = find("ed25519-dalek-2", "sign", "64")
if sig:
    line = f"* signed 64 B >= 60 k msg/s: {rate(sig):,.0f}/s"
    if sgn:
        line += f"; one core signs at most {rate(sgn):,.0f}/s in this run (the sender signs on one task)"
    print(line)
hop = find("spstack", "push_pull_tcp", "64", "hop")
plain = find("spstack", "push_pull_tcp", "64", "plain")
if hop and plain:
    ratio = rate(hop) / rate(plain)
    print(f"* hop 64 B >= 1 M msg/s: {rate(hop):,.0f}/s; hop / plain in this run {ratio:.3f}, "
          f"which at the quiet machine's plain {QUIET_PLAIN_64:,}/s (25 Nov) projects {ratio * QUIET_PLAIN_64:,.0f}/s")
hop64k = find("spstack", "push_pull_tcp", "65536", "hop")
plain64k = find("spstack", "push_pull_tcp", "65536", "plain")
aead = find("ring-0.17", "aead_encrypt", "65536")
if hop64k and aead:
    t_aead = 65536 / (mb(aead) * 1e6) * 1e6  # us per pass
    ceiling = 2 / ((2 * t_aead + KERNEL_US_64K) * 1e-6) * 65536 / 1e6
    print(f"* hop 64 KiB: {mb(hop64k):,.0f} MB/s; two-core ceiling with ring at {mb(aead):,.0f} MB/s "
          f"(2 x {t_aead:.1f} us + {KERNEL_US_64K:.0f} us kernel per message) = {ceiling:,.0f} MB/s: "
          f"{100 * mb(hop64k) / ceiling:.0f} % (target >= 90 %)")
    if plain64k:
        # the same bound from this run's own figures: plain's cost per
        # message on two cores plus the two AEAD passes on one each
        inrun = 1 / (1 / mb(plain64k) + 1 / mb(aead))
        print(f"  in-run form (1 / (1/plain + 1/AEAD), both measured now): {inrun:,.0f} MB/s: "
              f"{100 * mb(hop64k) / inrun:.0f} %")
for v in stacks:
    r = find("spstack", "push_pull_tcp", "65536", v)
    if r and "copied_bytes" in r:
        print(f"* {v}: copied_bytes over the 64 KiB run = {r['copied_bytes']}")
