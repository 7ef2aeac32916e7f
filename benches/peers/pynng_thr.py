#!/usr/bin/env python3
"""nng (through pynng 0.9) PUSH -> PULL throughput over any nng URL, TLS
included, one process, two threads. Prints a RESULT line like the anchors.

usage: pynng_thr.py URL SIZE SECONDS [CERT_KEY_PEM CA_PEM]
With the two PEM files, the listener uses CERT_KEY (certificate and key in
one file) and the dialer trusts CA (server name "localhost").
"""
import sys
import threading
import time

import pynng

url, size, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
tls = sys.argv[4:6] if len(sys.argv) >= 6 else None

T = pynng.TLSConfig
if tls:
    cert_key, ca = tls
    pull = pynng.Pull0(recv_max_size=0, tls_config=T(T.MODE_SERVER, cert_key_file=cert_key))
    push = pynng.Push0(tls_config=T(T.MODE_CLIENT, ca_files=[ca], server_name="localhost", auth_mode=T.AUTH_MODE_REQUIRED))
else:
    pull = pynng.Pull0(recv_max_size=0)
    push = pynng.Push0()
pull.listen(url)
push.dial(url, block=True)
payload = b"\x5a" * size
stop = False


def sender():
    while not stop:
        try:
            push.send(payload)
        except pynng.exceptions.Closed:
            return


t = threading.Thread(target=sender, daemon=True)
t.start()
pull.recv_timeout = 5000
for _ in range(100):  # warm-up
    pull.recv()
n = 0
start = time.perf_counter()
while time.perf_counter() - start < secs:
    pull.recv()
    n += 1
el = time.perf_counter() - start
stop = True
print(f"RESULT lib=nng-pynng test=thr url={url} size={size} msgps={n / el:.0f} MBps={n * size / el / 1e6:.2f}")
sys.stdout.flush()
push.close()
pull.close()
