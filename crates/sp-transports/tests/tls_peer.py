#!/usr/bin/env python3
"""Foreign SP peer over tls+tcp for spstack's TLS interop tests (pynng 0.9.0,
nng 1.x with mbedTLS).

Usage (a contract with crates/sp-transports/tests/tls_interop.rs):

    python3 tls_peer.py --proto req0|rep0|push0|pull0 --mode listen|dial \
        --url tls+tcp://HOST:PORT --sizes 1,65536,1048576 \
        [--ca CA.pem] [--cert-key CERT+KEY.pem] [--server-name NAME] \
        [--require-client-cert] [--ready-file PATH] [--timeout SECS]

TLS
    listen: server mode with --cert-key (certificate and key in one PEM
            file); --require-client-cert plus --ca makes nng demand a client
            certificate issued by that CA.
    dial:   client mode verifying the server with --ca and the name
            --server-name (default: nng takes the URL's host); --cert-key,
            if given, is presented as the client certificate.

Messages
    The i-th message is payload(size, i) for the i-th size of --sizes; a
    reply to it is payload(size, i + 1000).
        payload(size, index) = bytes((i*31 + index*7 + 1) & 0xFF for i in range(size))
    req0  sends each request, checks each reply.
    rep0  checks each request, answers it.
    push0 sends every message.      pull0 checks every message.

Readiness
    --ready-file PATH gets the URL to reach this peer at (tmp file + rename)
    once listen() succeeded or the non-blocking dial() started.  Given port 0,
    the listener binds a port of the kernel's choice and the file names it.

Result
    exit 0 printing "OK <n> messages"; exit 1 with the reason on stderr on any
    mismatch, timeout or error; exit 2 if pynng is missing.  A watchdog kills
    the process after 2 * --timeout seconds so it can never hang.
"""

import argparse
import os
import sys
import threading
import time

REPLY_OFFSET = 1000


def payload(size, index):
    return bytes((i * 31 + index * 7 + 1) & 0xFF for i in range(size))


def fail(msg):
    print(msg, file=sys.stderr, flush=True)
    os._exit(1)


def ready(path, url):
    if path:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(url + "\n")
        os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--proto", required=True, choices=["req0", "rep0", "push0", "pull0"])
    ap.add_argument("--mode", required=True, choices=["listen", "dial"])
    ap.add_argument("--url", required=True)
    ap.add_argument("--sizes", required=True)
    ap.add_argument("--ca")
    ap.add_argument("--cert-key")
    ap.add_argument("--server-name")
    ap.add_argument("--require-client-cert", action="store_true")
    ap.add_argument("--ready-file")
    ap.add_argument("--timeout", type=float, default=20.0)
    a = ap.parse_args()

    try:
        import pynng
    except ImportError:
        print("pynng is missing: pip install pynng==0.9.0", file=sys.stderr)
        sys.exit(2)

    # never hang: the Rust side also bounds its wait, this is belt and braces
    t = threading.Timer(2 * a.timeout, lambda: fail("watchdog: peer took too long"))
    t.daemon = True
    t.start()

    sizes = [int(s) for s in a.sizes.split(",") if s]
    T = pynng.TLSConfig
    if a.mode == "listen":
        kw = {"cert_key_file": a.cert_key}
        if a.require_client_cert:
            kw["ca_files"] = [a.ca]
            kw["auth_mode"] = T.AUTH_MODE_REQUIRED
        cfg = T(T.MODE_SERVER, **kw)
    else:
        kw = {"ca_files": [a.ca], "auth_mode": T.AUTH_MODE_REQUIRED}
        if a.server_name:
            kw["server_name"] = a.server_name
        if a.cert_key:
            kw["cert_key_file"] = a.cert_key
        cfg = T(T.MODE_CLIENT, **kw)

    ctor = {
        "req0": pynng.Req0,
        "rep0": pynng.Rep0,
        "push0": pynng.Push0,
        "pull0": pynng.Pull0,
    }[a.proto]
    ms = int(a.timeout * 1000)
    sock = ctor(tls_config=cfg, recv_timeout=ms, send_timeout=ms, recv_max_size=0)
    try:
        url = a.url
        if a.mode == "listen":
            listener = sock.listen(a.url)
            if url.endswith(":0"):
                # the bound port, from the address's text: local_address.port
                # is in network byte order in pynng 0.9
                port = str(listener.local_address).rsplit(":", 1)[1]
                url = url[: -len("0")] + port
        else:
            sock.reconnect_time_min = 100
            sock.reconnect_time_max = 100
            sock.dial(a.url, block=False)
        ready(a.ready_file, url)

        n = 0
        for i, size in enumerate(sizes):
            msg = payload(size, i)
            if a.proto == "req0":
                sock.send(msg)
                got = sock.recv()
                if got != payload(size, i + REPLY_OFFSET):
                    fail(f"reply {i} ({size} bytes) differs (got {len(got)} bytes)")
            elif a.proto == "rep0":
                got = sock.recv()
                if got != msg:
                    fail(f"request {i} ({size} bytes) differs (got {len(got)} bytes)")
                sock.send(payload(size, i + REPLY_OFFSET))
            elif a.proto == "push0":
                sock.send(msg)
            else:
                got = sock.recv()
                if got != msg:
                    fail(f"message {i} ({size} bytes) differs (got {len(got)} bytes)")
            n += 1

        if a.proto in ("rep0", "push0"):
            # let nng flush the last message: leave when the peer hangs up
            end = time.monotonic() + 3.0
            while time.monotonic() < end and len(sock.pipes) > 0:
                time.sleep(0.05)
        print(f"OK {n} messages", flush=True)
    except pynng.exceptions.NNGException as e:
        fail(f"nng error: {e!r}")
    finally:
        sock.close()


if __name__ == "__main__":
    main()
