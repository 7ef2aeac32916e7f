#!/usr/bin/env python3
"""Foreign SP peer for spstack interop tests, backed by pynng (nng 1.x).

Usage (this CLI is a contract with the Rust integration tests):

    python3 tests/interop/peer.py --proto PROTO --mode listen|dial --url URL \
        --sizes 0,1,65536,1048576 [--count-per-size N] [--timeout SECS] \
        [--ready-file PATH] [--linger SECS] \
        [--tls-cert-key FILE] [--tls-ca FILE] [--tls-server-name NAME]

PROTO: req0 rep0 push0 pull0 pair0 pair1 pub0 sub0 surveyor0 respondent0 bus0

Message sequence
    The sequence is every size of --sizes in the given order, each repeated
    --count-per-size times (default 1).  The i-th message of the sequence
    (i = 0, 1, 2, ... across all sizes) is payload(size, i); a reply to it is
    payload(size, i + 1000), i.e. a *different* byte pattern of the same
    size, so a peer that echoes instead of answering is caught.

        payload(size, index) = bytes((i*31 + index*7 + 1) & 0xFF
                                     for i in range(size))

Roles (this script is the *foreign* peer, spstack is the other end)
    push0, pub0       send the whole sequence.
    pull0, sub0       receive the whole sequence, verify every message
                      (sub0 subscribes to everything, b"").
    req0, surveyor0   for each i: send payload(size,i), receive one reply and
                      verify it is payload(size,i+1000).
    rep0, respondent0 for each i: receive, verify payload(size,i), reply with
                      payload(size,i+1000).
    pair0, pair1, bus0
                      "the dialer sends first": with --mode dial they behave
                      like req0 (send, then receive and verify the reply);
                      with --mode listen they behave like rep0 (receive and
                      verify, then reply).
    pub0, bus0 (dial) and surveyor0 wait until a connection to the peer exists
    before sending anything, because those protocols silently drop messages
    when there is no pipe.  For sub0 the spstack PUB must likewise wait until
    this subscriber is connected before publishing.

Timing
    Every send/recv uses a timeout of --timeout seconds (default 20).  A
    watchdog thread kills the process (exit 1) shortly before 2*--timeout
    seconds so it can never hang.  Dial mode dials non-blocking (retries every
    100 ms until the spstack listener is up).
    After its *last send* (push0, pub0, rep0, respondent0, pair/bus listen)
    the peer lingers so that nng can flush the message: it exits as soon as
    the remote side disconnects, or after --linger seconds (default 1.0).
    So the Rust side may either drop its socket or simply wait for the exit.

TLS (wss://, tls+tcp://)
    Any --tls-* option gives the socket a pynng.TLSConfig:
    listen  server mode with --tls-cert-key (certificate and key in one PEM
            file).
    dial    client mode trusting --tls-ca, verifying the peer's certificate
            (AUTH_MODE_REQUIRED) for --tls-server-name (default: the URL's
            host).

Readiness
    --ready-file PATH: the URL to reach this peer at, and a newline, is
    written (atomically: tmp file + rename) right after listen() succeeded,
    or right after the non-blocking dial() was started.  A listener given
    port 0 (tcp://127.0.0.1:0, ws://127.0.0.1:0/sp) binds a port of the
    kernel's choice and writes the URL with that port: the other side dials
    it, so no port is ever picked free and bound later (another process
    could take it in between).

Result
    Exit 0 and print "OK <n> messages" on stdout (n = length of the sequence,
    i.e. number of requests for the request/reply style protocols).
    Exit 1 with a message on stderr on any mismatch, timeout or error.
    Exit 2 for command line errors.
"""

import argparse
import os
import sys
import threading
import time

REPLY_OFFSET = 1000

PROTOS = (
    "req0", "rep0", "push0", "pull0", "pair0", "pair1",
    "pub0", "sub0", "surveyor0", "respondent0", "bus0",
)


def payload(size, index):
    """The reference payload: byte i is (i*31 + index*7 + 1) & 0xFF."""
    return bytes((i * 31 + index * 7 + 1) & 0xFF for i in range(size))


def fast_payload(size, index):
    """Same bytes as payload(), faster for big sizes (period 256)."""
    if size <= 256:
        return payload(size, index)
    period = payload(256, index)
    reps, rest = divmod(size, 256)
    return period * reps + period[:rest]


def sequence(sizes, count_per_size):
    """[(index, size), ...] in sending order."""
    out = []
    for size in sizes:
        for _ in range(count_per_size):
            out.append((len(out), size))
    return out


def describe_mismatch(what, index, size, expected, got):
    if len(got) != len(expected):
        detail = "length %d, expected %d" % (len(got), len(expected))
    else:
        off = next(i for i in range(len(got)) if got[i] != expected[i])
        detail = "first difference at byte %d: got 0x%02x, expected 0x%02x" % (
            off, got[off], expected[off])
    if what == "reply" and got == fast_payload(len(got), index):
        detail += " (the data is payload(size,%d): an echo of the request?)" % index
    return "MISMATCH %s #%d (size %d): %s" % (what, index, size, detail)


class Failure(Exception):
    pass


def parse_sizes(text):
    try:
        sizes = [int(x) for x in text.split(",") if x.strip() != ""]
    except ValueError:
        raise argparse.ArgumentTypeError("--sizes must be comma separated integers")
    if not sizes or any(s < 0 for s in sizes):
        raise argparse.ArgumentTypeError("--sizes must be non-negative integers")
    return sizes


def build_arg_parser(prog_doc):
    ap = argparse.ArgumentParser(description=prog_doc.split("\n")[0])
    ap.add_argument("--proto", required=True, choices=PROTOS)
    ap.add_argument("--mode", required=True, choices=("listen", "dial"))
    ap.add_argument("--url", required=True)
    ap.add_argument("--sizes", required=True, type=parse_sizes)
    ap.add_argument("--count-per-size", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("--ready-file", default=None)
    ap.add_argument("--linger", type=float, default=1.0,
                    help="max seconds to wait after the last send (default 1.0)")
    ap.add_argument("--tls-cert-key", default=None,
                    help="listen: certificate and key PEM (one file)")
    ap.add_argument("--tls-ca", default=None,
                    help="dial: CA PEM the peer's certificate must chain to")
    ap.add_argument("--tls-server-name", default=None,
                    help="dial: name the peer's certificate must hold")
    return ap


def write_ready(path, url):
    """Says where this peer is reachable: `url` in the ready file."""
    if not path:
        return
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(url + "\n")
    os.replace(tmp, path)


def url_port(url):
    """The port of a tcp/ws/wss/tls+tcp URL, or None (ipc, inproc)."""
    if "://" not in url or url.startswith(("ipc://", "inproc://", "unix://")):
        return None
    authority = url.split("://", 1)[1].split("/", 1)[0]
    host, sep, port = authority.rpartition(":")
    return int(port) if sep and port.isdigit() else None


def with_port(url, port):
    """`url` with its port replaced by `port` (the path kept)."""
    scheme, rest = url.split("://", 1)
    authority, slash, path = rest.partition("/")
    host = authority.rpartition(":")[0]
    return "%s://%s:%d%s%s" % (scheme, host, port, slash, path)


def start_watchdog(timeout):
    limit = max(0.5, 2 * timeout - 0.5)

    def fire():
        sys.stderr.write("FAIL: watchdog: peer did not finish within %.1f s\n" % limit)
        sys.stderr.flush()
        os._exit(1)

    t = threading.Timer(limit, fire)
    t.daemon = True
    t.start()
    return t


# --------------------------------------------------------------------------
# pynng implementation

def role_of(proto, mode):
    if proto in ("push0", "pub0"):
        return "send"
    if proto in ("pull0", "sub0"):
        return "recv"
    if proto in ("req0", "surveyor0"):
        return "client"
    if proto in ("rep0", "respondent0"):
        return "server"
    # pair0, pair1, bus0: the dialer sends first
    return "client" if mode == "dial" else "server"


def tls_config(pynng, args):
    """The pynng.TLSConfig asked for by the --tls-* options, or None."""
    if not (args.tls_cert_key or args.tls_ca or args.tls_server_name):
        return None
    T = pynng.TLSConfig
    if args.mode == "listen":
        if not args.tls_cert_key:
            raise Failure("--tls-cert-key is needed to listen with TLS")
        return T(T.MODE_SERVER, cert_key_file=args.tls_cert_key)
    if not args.tls_ca:
        raise Failure("--tls-ca is needed to dial with TLS")
    kw = {"ca_files": [args.tls_ca], "auth_mode": T.AUTH_MODE_REQUIRED}
    if args.tls_server_name:
        kw["server_name"] = args.tls_server_name
    return T(T.MODE_CLIENT, **kw)


def run_pynng(args):
    import pynng

    ms = int(args.timeout * 1000)
    classes = {
        "req0": pynng.Req0, "rep0": pynng.Rep0, "push0": pynng.Push0,
        "pull0": pynng.Pull0, "pair0": pynng.Pair0, "pair1": pynng.Pair1,
        "pub0": pynng.Pub0, "sub0": pynng.Sub0, "surveyor0": pynng.Surveyor0,
        "respondent0": pynng.Respondent0, "bus0": pynng.Bus0,
    }
    try:
        tls = tls_config(pynng, args)
    except Failure as e:
        sys.stderr.write("FAIL: %s %s %s: %s\n" % (args.proto, args.mode, args.url, e))
        return 2
    except pynng.NNGException as e:
        sys.stderr.write("FAIL: %s %s %s: TLS config: %s\n" % (args.proto, args.mode, args.url, e))
        return 1
    sock = classes[args.proto]() if tls is None else classes[args.proto](tls_config=tls)
    sock.recv_timeout = ms
    sock.send_timeout = ms
    sock.recv_max_size = 0          # unlimited (1 MiB + header must pass)
    sock.reconnect_time_min = 100   # retry the dial quickly
    sock.reconnect_time_max = 0
    if args.proto == "sub0":
        sock.subscribe(b"")
    if args.proto == "surveyor0":
        sock.survey_time = ms
    if args.proto == "pub0":
        sock.send_buffer_size = 8192

    connected = threading.Event()
    # pipe ids, not a count: nng reports the removal of a pipe that never
    # finished connecting (a dial attempt cut short), and a count that goes
    # to zero early would end the linger with the last message unsent
    pipes = set()
    lock = threading.Lock()

    def on_add(pipe):
        with lock:
            pipes.add(pipe.id)
        connected.set()

    def on_remove(pipe):
        with lock:
            pipes.discard(pipe.id)

    sock.add_post_pipe_connect_cb(on_add)
    sock.add_post_pipe_remove_cb(on_remove)

    try:
        url = args.url
        if args.mode == "listen":
            listener = sock.listen(args.url)
            if url_port(url) == 0:
                # the port nng bound; listener.url keeps ":0" for ws/wss, and
                # local_address.port is in network byte order, so read it
                # from the address's text ("127.0.0.1:40123")
                url = with_port(url, int(str(listener.local_address).rsplit(":", 1)[1]))
        else:
            sock.dial(args.url, block=False)
        write_ready(args.ready_file, url)

        role = role_of(args.proto, args.mode)
        seq = sequence(args.sizes, args.count_per_size)

        def wait_connected():
            if not connected.wait(args.timeout):
                raise Failure("no peer connected within %.1f s" % args.timeout)

        def send(data, what, index, size):
            try:
                sock.send(data)
            except pynng.Timeout:
                raise Failure("timeout (%.1f s) sending %s #%d (size %d)"
                              % (args.timeout, what, index, size))

        def recv(what, index, size):
            try:
                # Not sock.recv(): pynng 0.9.0 recv() raises RuntimeError
                # ("cannot use unpack() on <cdata 'char *' NULL>") for a
                # 0-byte message.  recv_msg() handles it.
                return sock.recv_msg().bytes
            except pynng.Timeout:
                raise Failure("timeout (%.1f s) waiting for %s #%d (size %d)"
                              % (args.timeout, what, index, size))

        def check(got, expected, what, index, size):
            if got != expected:
                raise Failure(describe_mismatch(what, index, size, expected, got))

        if args.proto in ("pub0", "surveyor0") or (args.proto == "bus0" and role == "client"):
            wait_connected()

        last_was_send = False
        for index, size in seq:
            if role == "send":
                send(fast_payload(size, index), "message", index, size)
                last_was_send = True
            elif role == "recv":
                got = recv("message", index, size)
                check(got, fast_payload(size, index), "message", index, size)
            elif role == "client":
                send(fast_payload(size, index), "request", index, size)
                got = recv("reply to request", index, size)
                check(got, fast_payload(size, index + REPLY_OFFSET), "reply", index, size)
                last_was_send = False
            else:  # server
                got = recv("request", index, size)
                check(got, fast_payload(size, index), "request", index, size)
                send(fast_payload(size, index + REPLY_OFFSET), "reply", index, size)
                last_was_send = True

        if last_was_send:
            # Give nng time to flush the last message; stop early once the
            # remote side has gone away.
            deadline = time.monotonic() + args.linger
            while time.monotonic() < deadline:
                with lock:
                    if not pipes:
                        break
                time.sleep(0.02)
        print("OK %d messages" % len(seq))
        sys.stdout.flush()
        return 0
    except Failure as e:
        sys.stderr.write("FAIL: %s %s %s: %s\n" % (args.proto, args.mode, args.url, e))
        return 1
    except pynng.NNGException as e:
        sys.stderr.write("FAIL: %s %s %s: nng error: %s\n" % (args.proto, args.mode, args.url, e))
        return 1
    except Exception as e:  # never a bare traceback with an odd exit code
        sys.stderr.write("FAIL: %s %s %s: %s: %s\n"
                         % (args.proto, args.mode, args.url, type(e).__name__, e))
        return 1
    finally:
        try:
            sock.close()
        except Exception:
            pass


def main(argv=None):
    args = build_arg_parser(__doc__).parse_args(argv)
    if args.count_per_size < 1:
        sys.stderr.write("--count-per-size must be >= 1\n")
        return 2
    if args.timeout <= 0:
        sys.stderr.write("--timeout must be > 0\n")
        return 2
    start_watchdog(args.timeout)
    return run_pynng(args)


if __name__ == "__main__":
    rc = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # os._exit: do not let a wedged nng thread delay interpreter shutdown.
    os._exit(rc)
