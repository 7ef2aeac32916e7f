#!/usr/bin/env python3
"""A pynng peer for spcat's shell-level tests.

    pynng_peer.py PROTO dial|listen URL DATA [TIMEOUT]

Prints every message it receives (one per line) and exits 0 after its part:
  push0               send DATA once
  pull0, sub0         receive one message
  pub0                send DATA every 100 ms until TIMEOUT
  req0                send DATA, receive the reply
  rep0, respondent0   receive one, reply DATA
  surveyor0           survey with DATA every 300 ms until one response
  pair0, pair1, bus0  send DATA every 100 ms until one message arrives,
                      then once more
Exits 1 on timeout. A watchdog ends it after TIMEOUT + 2 s regardless.
"""

import os
import sys
import threading
import time

import pynng

proto, mode, url, data = sys.argv[1:5]
timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 10.0
data = data.encode()
threading.Timer(timeout + 2, lambda: os._exit(1)).start()

cls = {
    "push0": pynng.Push0, "pull0": pynng.Pull0, "pub0": pynng.Pub0,
    "sub0": pynng.Sub0, "req0": pynng.Req0, "rep0": pynng.Rep0,
    "surveyor0": pynng.Surveyor0, "respondent0": pynng.Respondent0,
    "pair0": pynng.Pair0, "pair1": pynng.Pair1, "bus0": pynng.Bus0,
}[proto]
s = cls(recv_timeout=int(timeout * 1000), send_timeout=int(timeout * 1000))
if proto == "sub0":
    s.subscribe(b"")
if mode == "listen":
    s.listen(url)
else:
    s.dial(url, block=False)
deadline = time.monotonic() + timeout


def show(m):
    sys.stdout.write(m.decode(errors="replace") + "\n")
    sys.stdout.flush()


def linger():
    time.sleep(0.5)
    os._exit(0)


try:
    if proto == "push0":
        s.send(data)
        linger()
    elif proto in ("pull0", "sub0"):
        show(s.recv())
        os._exit(0)
    elif proto == "pub0":
        while time.monotonic() < deadline:
            s.send(data)
            time.sleep(0.1)
        os._exit(0)
    elif proto == "req0":
        s.send(data)
        show(s.recv())
        os._exit(0)
    elif proto in ("rep0", "respondent0"):
        show(s.recv())
        s.send(data)
        linger()
    elif proto == "surveyor0":
        s.survey_time = 300
        while time.monotonic() < deadline:
            s.send(data)
            try:
                show(s.recv())
                os._exit(0)
            except (pynng.Timeout, pynng.BadState):
                pass
        os._exit(1)
    else:  # pair0, pair1, bus0
        s.recv_timeout = 100
        while time.monotonic() < deadline:
            try:
                s.send(data)
            except pynng.Timeout:
                pass
            try:
                show(s.recv())
            except pynng.Timeout:
                continue
            s.send(data)  # answer, now that the peer is surely connected
            linger()
        os._exit(1)
except pynng.Timeout:
    sys.stderr.write("pynng_peer: timed out\n")
    os._exit(1)
