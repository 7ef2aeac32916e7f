#!/usr/bin/env python3
"""Foreign nanomsg peer for spstack interop tests.

Same CLI, payload convention and roles as peer.py (see its docstring):

    python3 tests/interop/nano.py --proto PROTO --mode listen|dial --url URL \
        --sizes 0,1,65536,1048576 [--count-per-size N] [--timeout SECS] \
        [--ready-file PATH] [--linger SECS] \
        [--backend nanocat|libnanomsg] [--nanocat PATH] [--send-delay SECS] \
        [--allow-oversize]

Two backends:

  --backend nanocat (default)
      Drives the real `nanocat` binary (Debian nanomsg-utils, nanomsg 1.1.5).
      nanocat cannot compute payloads and sends at most one message per run,
      so the wrapper writes every payload to a temp file and runs one nanocat
      process per message (pull0/sub0: one process for the whole sequence).
      Received messages are read from nanocat's stdout in --msgpack format
      (c4 <u8 len> | c5 <u16 BE len> | c6 <u32 BE len>, then the body),
      because --raw prints bodies back to back with no delimiter, so
      message boundaries (and 0-byte messages) would be lost.
      Limitations (see README.md for the details and the evidence):
        * pair1 does not exist in nanomsg -> exit 3.
        * nanocat cannot raise NN_RCVMAXSIZE (1 MiB, inclusive).  Whatever
          nanocat has to *receive* must satisfy size + SP header <= 1048576:
          pull0/sub0/pair0/bus0 up to 1048576, rep0/respondent0 (requests)
          and req0/surveyor0 (replies) up to 1048572 because of the 4-byte
          request-ID header.  Larger sizes -> exit 3 before anything runs
          (--allow-oversize runs them anyway, to watch the drop).
        * Each message is a new nanocat process, hence a new connection; in
          listen mode the address is re-bound for every message, so the
          spstack dialer must reconnect (quickly) between messages.
        * rep0/respondent0: nanocat answers every request with the same
          --file, so one nanocat process answers exactly one request.  The
          peer's *next* request reaches the old process, which dies of
          SIGPIPE before it can answer it (the wrapper has closed its stdout,
          and the wrapper is pinned with nanocat to one CPU at SCHED_FIFO so
          that it always closes it in time).  That request is lost with the
          connection: an spstack REQ must re-send it on the new connection
          (nng and nanomsg REQ both do this at once).  Surveys are never
          re-sent, so respondent0 accepts a sequence of exactly 1 message
          (longer -> exit 3); run one wrapper per message.
        * pub0, bus0 and surveyor0 send after --send-delay seconds (default
          1.0, nanocat --delay) whether or not a peer is connected.  The
          wrapper watches /proc and re-spawns nanocat (nothing was sent yet)
          until a connection exists before the delay runs out.
        * surveyor0: nanocat uses the nanomsg default survey deadline, 1 s.
        * Senders stay alive --linger s (default 1.0) after the send so that
          nanomsg can flush; runtime is roughly n * (linger [+ send-delay]),
          so size --timeout (the watchdog fires at 2*timeout) accordingly.

  --backend libnanomsg
      Uses libnanomsg.so.5 directly through ctypes: the exact peer.py
      behaviour (one socket for the whole sequence, NN_RCVMAXSIZE=-1 so all
      sizes work, timeouts from --timeout).  pair1 is still unsupported.
      pub0 paces its sends (waits until the kernel socket queues are empty)
      because nanomsg PUB drops a message for a pipe still busy with the
      previous one.

Exit codes: 0 OK ("OK <n> messages" on stdout), 1 failure (message on
stderr), 2 usage error, 3 combination not supported by nanomsg/nanocat.
"""

import ctypes
import ctypes.util
import fcntl
import math
import os
import select
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer import (  # noqa: E402
    REPLY_OFFSET, Failure, build_arg_parser, describe_mismatch, fast_payload,
    payload, role_of, sequence, url_port, with_port, write_ready,
)

__all__ = ["payload", "main"]

EXIT_UNSUPPORTED = 3

NN_RCVMAXSIZE_DEFAULT = 1024 * 1024      # nanomsg default, a size equal to it passes
BACKTRACE_HDR = 4                        # one request/survey ID word (REQ->REP direct)

# How many header bytes the nanocat side has to *receive* on top of the body.
NANOCAT_RECV_HDR = {
    "pull0": 0, "sub0": 0, "pair0": 0, "bus0": 0,
    "rep0": BACKTRACE_HDR, "respondent0": BACKTRACE_HDR,
    "req0": BACKTRACE_HDR, "surveyor0": BACKTRACE_HDR,
    "push0": None, "pub0": None,          # nanocat only sends
}

NANOCAT_TYPE = {
    "push0": "--push", "pull0": "--pull", "pub0": "--pub", "sub0": "--sub",
    "req0": "--req", "rep0": "--rep", "pair0": "--pair", "bus0": "--bus",
    "surveyor0": "--surveyor", "respondent0": "--respondent",
}

BIG_INTERVAL = 100000.0   # s; nanocat computes interval*1000 in an int

_live = set()             # nanocat processes to kill from the watchdog
_live_lock = threading.Lock()
_tmpdirs = []             # payload dirs to remove from the watchdog


def remove_tmpdir(path):
    try:
        for f in os.listdir(path):
            try:
                os.unlink(os.path.join(path, f))
            except OSError:
                pass
        os.rmdir(path)
    except OSError:
        pass


def fail(msg):
    raise Failure(msg)


# nanocat cannot bind port 0 ("Can't bind: Invalid argument") and nanomsg
# cannot say which port it bound: given port 0, nano.py listens on a port
# that was free a moment ago and, when another process took it meanwhile
# (EADDRINUSE), on another, at most this many times.
PORT_TRIES = 10
EADDRINUSE = 98


def unused_port():
    """A tcp port nobody had bound a moment ago (only ever used with a retry
    on EADDRINUSE: it may be taken before nanomsg binds it)."""
    import socket
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def start_watchdog(timeout):
    limit = max(0.5, 2 * timeout - 0.5)

    def fire():
        with _live_lock:
            procs = list(_live)
        for p in procs:
            try:
                p.kill()
                p.wait(1)
            except Exception:
                pass
        for d in list(_tmpdirs):
            remove_tmpdir(d)
        sys.stderr.write("FAIL: watchdog: peer did not finish within %.1f s\n" % limit)
        sys.stderr.flush()
        os._exit(1)

    t = threading.Timer(limit, fire)
    t.daemon = True
    t.start()


# --------------------------------------------------------------------------
# /proc helpers

def _socket_inodes(pid):
    inodes = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def is_listening(pid, url):
    """True once process pid has a listening socket for url (tcp/ws/ipc only).
    Returns None if the transport cannot be checked."""
    inodes = _socket_inodes(pid)
    if url.startswith(("tcp://", "ws://")):
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = open(table).read().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                f = line.split()
                if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port and f[9] in inodes:
                    return True
        return False
    if url.startswith("ipc://"):
        path = url[len("ipc://"):]
        try:
            lines = open("/proc/net/unix").read().splitlines()[1:]
        except OSError:
            return None
        for line in lines:
            f = line.split()
            if len(f) >= 8 and f[6] in inodes and f[7] == path and int(f[3], 16) & 0x10000:
                return True
        return False
    return None


def has_connection(pid):
    """True if process pid has an established tcp or connected unix stream
    socket (nanomsg itself uses eventfds, not sockets, on Linux)."""
    inodes = _socket_inodes(pid)
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            for line in open(table).read().splitlines()[1:]:
                f = line.split()
                if f[3] == "01" and f[9] in inodes:
                    return True
        except OSError:
            pass
    try:
        for line in open("/proc/net/unix").read().splitlines()[1:]:
            f = line.split()
            if len(f) >= 7 and f[5] == "03" and f[6] in inodes:
                return True
    except OSError:
        pass
    return False


def sleep_request(pid):
    """If the main thread of pid is blocked in (clock_)nanosleep, return the
    requested duration in seconds, else None.  Reads /proc/pid/syscall and the
    timespec from /proc/pid/mem (we are the parent)."""
    try:
        parts = open("/proc/%d/syscall" % pid).read().split()
    except OSError:
        return None
    if not parts or not parts[0].lstrip("-").isdigit():
        return None
    nr = int(parts[0])
    if nr == 230:        # clock_nanosleep(clockid, flags, req, rem)
        ptr = int(parts[3], 16)
    elif nr == 35:       # nanosleep(req, rem)
        ptr = int(parts[1], 16)
    else:
        return None
    try:
        with open("/proc/%d/mem" % pid, "rb") as m:
            m.seek(ptr)
            sec, nsec = struct.unpack("qq", m.read(16))
        return sec + nsec / 1e9
    except (OSError, ValueError, struct.error):
        # Cannot read the timespec: any nanosleep counts (callers only use a
        # big interval sleep after the send, or have a time margin).
        return float("inf")


# --------------------------------------------------------------------------
# nanocat process wrapper

class Nanocat:
    def __init__(self, exe, argv, tmpdir, idle=False):
        self.argv = [exe] + argv
        self.err_path = os.path.join(tmpdir, "nanocat.%d.err" % time.monotonic_ns())
        self.errf = open(self.err_path, "wb")
        preexec = None
        if idle:
            def preexec():
                os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        # restore_signals=True: nanocat gets SIGPIPE back at SIG_DFL (the
        # rep0/respondent0 logic relies on nanocat dying of SIGPIPE).
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=self.errf, bufsize=0, restore_signals=True, preexec_fn=preexec)
        self.start = time.monotonic()
        self.fd = self.proc.stdout.fileno()
        self.buf = b""
        self.eof = False
        with _live_lock:
            _live.add(self.proc)

    @property
    def pid(self):
        return self.proc.pid

    def cmdline(self):
        return " ".join(a if a else "''" for a in self.argv)

    def stderr_text(self):
        try:
            if not self.errf.closed:
                self.errf.flush()
            return open(self.err_path, "rb").read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""

    def describe(self):
        rc = self.proc.poll()
        st = "running" if rc is None else ("exit %d" % rc if rc >= 0
                                           else "killed by signal %d" % -rc)
        err = self.stderr_text()
        return "[%s; %s%s]" % (self.cmdline(), st, ("; stderr: " + err) if err else "")

    def _fill(self, want, deadline):
        """Read until self.buf has want bytes.  Never reads more than needed."""
        while len(self.buf) < want:
            if self.eof:
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            r, _, _ = select.select([self.fd], [], [], min(left, 0.5))
            if not r:
                continue
            chunk = os.read(self.fd, min(want - len(self.buf), 1 << 20))
            if not chunk:
                self.eof = True
                return False
            self.buf += chunk
        return True

    def read_frame(self, deadline):
        """One message printed by nanocat --msgpack.  None on timeout/EOF."""
        if not self._fill(1, deadline):
            return None
        t = self.buf[0]
        hl = {0xC4: 2, 0xC5: 3, 0xC6: 5}.get(t)
        if hl is None:
            fail("unexpected byte 0x%02x in nanocat --msgpack output %s" % (t, self.describe()))
        if not self._fill(hl, deadline):
            return None
        n = int.from_bytes(self.buf[1:hl], "big")
        if not self._fill(hl + n, deadline):
            return None
        body, self.buf = self.buf[hl:hl + n], self.buf[hl + n:]
        return body

    def unread_bytes(self):
        n = len(self.buf)
        try:
            b = bytearray(4)
            fcntl.ioctl(self.fd, termios.FIONREAD, b)
            n += struct.unpack("i", b)[0]
        except OSError:
            pass
        return n

    def close_stdout(self):
        try:
            self.proc.stdout.close()
        except OSError:
            pass

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout=max(0.0, timeout))
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.close_stdout()
        self.errf.close()
        with _live_lock:
            _live.discard(self.proc)


class NanocatRunner:
    def __init__(self, args, tmpdir):
        self.a = args
        self.tmp = tmpdir
        self.exe = args.nanocat
        self.ready_done = False
        # where nanocat binds or connects; a port 0 to listen on becomes a
        # real one, which may change until the first nanocat has bound it
        self.url = args.url
        self.choose_port = args.mode == "listen" and url_port(args.url) == 0
        if self.choose_port:
            self.url = with_port(args.url, unused_port())
        self.port_tries = 1
        self.seq = sequence(args.sizes, args.count_per_size)
        self.n = len(self.seq)
        self.t = args.timeout
        self.idle_children = False

    # ---- helpers
    def data_args(self, size, index):
        if size == 0:
            # nanocat --file with an empty file aborts:
            #   nanocat: ./tools/options.c:502: nn_process_option: Assertion `data' failed.
            return ["--data", ""]
        path = os.path.join(self.tmp, "p_%d_%d" % (size, index))
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(fast_payload(size, index))
        return ["--file", path]

    def endpoint(self):
        return ["--bind" if self.a.mode == "listen" else "--connect", self.url]

    def spawn(self, extra):
        deadline = time.monotonic() + self.t
        while True:
            argv = [NANOCAT_TYPE[self.a.proto]] + self.endpoint() + extra
            p = Nanocat(self.exe, argv, self.tmp, idle=self.idle_children)
            if self.a.mode != "listen":
                self._ready()
                return p
            # Wait until it listens; retry if the bind failed (address still
            # held by the previous nanocat).  Sleep in select() on nanocat's
            # stdout, never blindly: if nanocat prints something meanwhile,
            # the wrapper must wake up at once (see rep_server).
            while True:
                if p.unread_bytes() > 0:
                    ok = True            # it printed a message: it listens
                else:
                    ok = is_listening(p.pid, self.url)
                if ok is None:
                    select.select([p.fd], [], [], 0.3)
                    ok = p.proc.poll() is None
                if ok:
                    self._ready()
                    return p
                if p.proc.poll() is not None:
                    break
                if time.monotonic() > deadline:
                    desc = p.describe()
                    p.kill()
                    fail("nanocat did not start listening within %.1f s %s" % (self.t, desc))
                select.select([p.fd], [], [], 0.005)
            if p.unread_bytes() > 0:
                # It exited after doing its job faster than we could see
                # the listening socket (e.g. req: bind, request, reply, exit).
                self._ready()
                return p
            err = p.stderr_text()
            desc = p.describe()
            p.kill()
            if "Can't bind" not in err or time.monotonic() > deadline:
                fail("nanocat failed to listen: %s" % desc)
            if self.choose_port and not self.ready_done and "Address already in use" in err:
                # the port chosen for port 0 was taken meanwhile: another one
                # (once a nanocat has bound it, the port is the peer's and a
                # failed bind means the previous nanocat still holds it)
                if self.port_tries >= PORT_TRIES:
                    fail("%d ports in a row were taken before nanocat could bind one: %s"
                         % (PORT_TRIES, desc))
                self.port_tries += 1
                self.url = with_port(self.url, unused_port())
                continue
            time.sleep(0.05)

    def spawn_when_connected(self, extra):
        """For nanocat types that send after --delay whether or not a peer is
        there (pub, bus, surveyor): spawn, and re-spawn, until a connection
        exists *before* the delay has run out, so the message cannot be
        dropped for lack of a pipe.  A process killed here has sent nothing:
        it is stopped (SIGSTOP) before the last look at its connections, so
        it cannot connect and send between that look and the kill (a
        wrapper slowed down by load used to kill a nanocat that had just
        sent, and the next one sent the same message again: N14)."""
        deadline = time.monotonic() + self.t
        while True:
            p = self.spawn(extra)
            send_at = p.start + self.a.send_delay   # nanocat sends later than this
            while time.monotonic() < send_at - 0.01:
                if has_connection(p.pid):
                    return p
                select.select([p.fd], [], [], 0.005)
            try:
                os.kill(p.pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass
            if has_connection(p.pid):
                # it connected meanwhile: it sends (or sent) once, let it run
                os.kill(p.pid, signal.SIGCONT)
                return p
            desc = p.describe()
            p.kill()
            if time.monotonic() > deadline:
                fail("no peer connected within --send-delay %g s, retried for %.1f s %s"
                     % (self.a.send_delay, self.t, desc))

    def _ready(self):
        if not self.ready_done:
            write_ready(self.a.ready_file, self.url)
            self.ready_done = True

    def expect_frame(self, p, expected, what, index, size, deadline=None):
        if deadline is None:
            deadline = time.monotonic() + self.t
        got = p.read_frame(deadline)
        if got is None:
            fail("no %s #%d (size %d) received within %.1f s %s"
                 % (what, index, size, self.t, p.describe()))
        if got != expected:
            fail(describe_mismatch(what, index, size, expected, got))
        return got

    def wait_sent(self, p, min_sleep):
        """Wait until nanocat's main thread sleeps >= min_sleep seconds, i.e.
        the --interval sleep after nn_send() returned."""
        deadline = time.monotonic() + self.t
        hits = 0
        while time.monotonic() < deadline:
            if p.proc.poll() is not None:
                fail("nanocat exited before sending %s" % p.describe())
            s = sleep_request(p.pid)
            if s == float("inf") and time.monotonic() - p.start < self.a.send_delay + 0.5:
                s = None   # cannot tell a --delay sleep from the interval sleep yet
            hits = hits + 1 if (s is not None and s >= min_sleep) else 0
            if hits >= 2:
                return
            time.sleep(0.005)
        fail("nanocat did not send within %.1f s (no peer?) %s" % (self.t, p.describe()))

    def linger_secs(self):
        # nanocat's --recv-timeout is truncated to whole seconds
        # ((int) recv_timeout * 1000), so use at least 1.
        return max(1, int(math.ceil(self.a.linger)))

    # ---- roles
    def run(self):
        proto, mode = self.a.proto, self.a.mode
        role = role_of(proto, mode)
        if role == "recv":
            return self.recv_all()
        if role == "send":
            return self.send_all()
        if role == "client":
            return self.client()
        if proto in ("rep0", "respondent0"):
            return self.rep_server()
        return self.pair_server()

    def recv_all(self):
        p = self.spawn(["--msgpack"])
        try:
            for index, size in self.seq:
                self.expect_frame(p, fast_payload(size, index), "message", index, size)
        finally:
            p.kill()

    def send_all(self):
        pub = self.a.proto == "pub0"
        for index, size in self.seq:
            extra = self.data_args(size, index) + ["--interval", "%g" % BIG_INTERVAL]
            if pub:
                extra += ["--delay", "%g" % self.a.send_delay]
            p = self.spawn_when_connected(extra) if pub else self.spawn(extra)
            try:
                # push: nn_send() blocks until a peer is connected.  Then the
                # main thread sleeps for the interval: the message has been
                # handed to the connection.  Keep the process alive for
                # --linger seconds so nanomsg can flush it (a nanocat that
                # exits right after nn_send() drops whatever the kernel
                # socket buffer did not take, and a nanomsg receiver may
                # drop a message that arrives just before the close).
                self.wait_sent(p, BIG_INTERVAL / 2)
                time.sleep(self.a.linger)
            finally:
                p.kill()

    def client(self):
        proto = self.a.proto
        for index, size in self.seq:
            extra = ["--msgpack"] + self.data_args(size, index)
            if proto in ("surveyor0", "bus0"):
                extra += ["--delay", "%g" % self.a.send_delay]
                p = self.spawn_when_connected(extra)
            else:
                p = self.spawn(extra)
            try:
                dl = time.monotonic() + self.t + (self.a.send_delay if "--delay" in extra else 0)
                self.expect_frame(p, fast_payload(size, index + REPLY_OFFSET),
                                  "reply", index, size, dl)
            finally:
                p.kill()

    def exclusive_cpu(self):
        """Make the wrapper win every race against nanocat (see rep_server):
        pin this thread, and so every nanocat it forks, to one CPU and run
        it SCHED_FIFO (children are reset to SCHED_OTHER on fork).  When
        nanocat's write to its stdout wakes the wrapper, the wrapper preempts
        nanocat at once and nanocat runs no user code until the wrapper
        blocks again.  Without CAP_SYS_NICE, fall back to running nanocat
        SCHED_IDLE on that CPU (same preemption guarantee, but nanocat only
        gets CPU time the other normal tasks leave)."""
        try:
            cpu = min(os.sched_getaffinity(0))
            os.sched_setaffinity(0, {cpu})
        except (AttributeError, OSError) as e:
            sys.stderr.write("note: cannot pin to one CPU (%s); the request race is "
                             "only detected, not prevented\n" % e)
            return
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK,
                                  os.sched_param(1))
        except (AttributeError, OSError) as e:
            sys.stderr.write("note: no SCHED_FIFO (%s); running nanocat SCHED_IDLE\n" % e)
            self.idle_children = True

    def rep_server(self):
        last = self.n - 1
        self.exclusive_cpu()
        for index, size in self.seq:
            p = self.spawn(["--msgpack"] + self.data_args(size, index + REPLY_OFFSET))
            try:
                got = p.read_frame(time.monotonic() + self.t)
                if got is None:
                    fail("no request #%d (size %d) received within %.1f s %s"
                         % (index, size, self.t, p.describe()))
                # nanocat prints a request *before* it sends the reply.  With
                # our end of its stdout closed, printing the next request
                # raises SIGPIPE, so it can never answer request #i+1 with
                # reply #i.
                extra = p.unread_bytes()
                p.close_stdout()
                if extra:
                    fail("race: nanocat printed a further request (%d bytes) before the "
                         "wrapper closed its stdout; it may have answered request #%d "
                         "with reply #%d %s" % (extra, index + 1, index, p.describe()))
                if got != fast_payload(size, index):
                    fail(describe_mismatch("request", index, size, fast_payload(size, index), got))
                if index < last:
                    # Normally ends by SIGPIPE when request #i+1 arrives.
                    p.wait(self.t)
                else:
                    p.wait(self.a.linger)
            finally:
                p.kill()

    def pair_server(self):
        # nanocat --pair/--bus with data *sends first*, then prints what it
        # receives; without data it only receives.  So process k sends reply
        # k-1 and then receives message k.
        bus = self.a.proto == "bus0"
        for k in range(self.n + 1):
            extra = ["--msgpack"]
            if k > 0:
                pindex, psize = self.seq[k - 1]
                extra += self.data_args(psize, pindex + REPLY_OFFSET)
                if bus:
                    extra += ["--delay", "%g" % self.a.send_delay]
            if k == self.n:
                extra += ["--recv-timeout", "%d" % self.linger_secs()]
            p = self.spawn_when_connected(extra) if (bus and k > 0) else self.spawn(extra)
            try:
                if k < self.n:
                    index, size = self.seq[k]
                    dl = time.monotonic() + self.t + (self.a.send_delay if "--delay" in extra else 0)
                    self.expect_frame(p, fast_payload(size, index), "message", index, size, dl)
                else:
                    # Sends the last reply (blocks until connected), then
                    # receives until --recv-timeout and exits 0.
                    rc = p.wait(self.t + self.linger_secs() + (self.a.send_delay if bus else 0))
                    if rc is None:
                        fail("last reply not delivered (no peer?) %s" % p.describe())
                    if rc != 0:
                        fail("nanocat sending the last reply failed %s" % p.describe())
                    if p.read_frame(time.monotonic()) is not None:
                        fail("unexpected extra message after the sequence %s" % p.describe())
            finally:
                p.kill()


def check_nanocat_support(args):
    """None if fine, else the reason (-> exit 3)."""
    if args.proto == "pair1":
        return "pair1 (PAIR v1, protocol 0x11) does not exist in nanomsg"
    n = len(args.sizes) * args.count_per_size
    if args.proto == "respondent0" and n > 1:
        return ("nanocat respondent0 answers one survey per process and the surveyor's "
                "next survey is lost with the old connection (surveys are not re-sent); "
                "run one wrapper per message (sequence length here: %d)" % n)
    hdr = NANOCAT_RECV_HDR[args.proto]
    if hdr is None or args.allow_oversize:
        return None
    limit = NN_RCVMAXSIZE_DEFAULT - hdr
    big = [s for s in args.sizes if s > limit]
    if big:
        return ("nanocat cannot receive %s: size %s + %d header bytes > NN_RCVMAXSIZE %d "
                "(nanocat has no option to raise it; max size here is %d; "
                "use --allow-oversize to run anyway or --backend libnanomsg)"
                % (args.proto, ",".join(map(str, big)), hdr, NN_RCVMAXSIZE_DEFAULT, limit))
    return None


def run_nanocat(args):
    reason = check_nanocat_support(args)
    if reason:
        sys.stderr.write("UNSUPPORTED: %s\n" % reason)
        return EXIT_UNSUPPORTED
    tmpdir = tempfile.mkdtemp(prefix="spstack-nano-")
    _tmpdirs.append(tmpdir)
    try:
        r = NanocatRunner(args, tmpdir)
        r.run()
        print("OK %d messages" % r.n)
        return 0
    except Failure as e:
        sys.stderr.write("FAIL: nanocat %s %s %s: %s\n" % (args.proto, args.mode, args.url, e))
        return 1
    except Exception as e:
        sys.stderr.write("FAIL: nanocat %s %s %s: %s: %s\n"
                         % (args.proto, args.mode, args.url, type(e).__name__, e))
        return 1
    finally:
        with _live_lock:
            procs = list(_live)
        for p in procs:
            try:
                p.kill()
                p.wait(5)
            except Exception:
                pass
        remove_tmpdir(tmpdir)


# --------------------------------------------------------------------------
# libnanomsg (ctypes) backend

NN_PROTO = {
    "pair0": 16, "pub0": 32, "sub0": 33, "req0": 48, "rep0": 49,
    "push0": 80, "pull0": 81, "surveyor0": 98, "respondent0": 99, "bus0": 112,
}
AF_SP = 1
NN_SOL_SOCKET = 0
NN_SNDTIMEO = 4
NN_RCVTIMEO = 5
NN_RECONNECT_IVL = 6
NN_RCVMAXSIZE = 16
NN_SUB_SUBSCRIBE = 1
NN_SURVEYOR_DEADLINE = 1
NN_STAT_CURRENT_CONNECTIONS = 201
NN_MSG = ctypes.c_size_t(-1).value


def load_libnanomsg():
    names = ["libnanomsg.so.5", ctypes.util.find_library("nanomsg") or "libnanomsg.so"]
    last = None
    for n in names:
        try:
            lib = ctypes.CDLL(n, use_errno=True)
            break
        except OSError as e:
            last = e
    else:
        raise Failure("cannot load libnanomsg: %s" % last)
    lib.nn_socket.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.nn_close.argtypes = [ctypes.c_int]
    lib.nn_setsockopt.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                  ctypes.c_void_p, ctypes.c_size_t]
    lib.nn_bind.argtypes = [ctypes.c_int, ctypes.c_char_p]
    lib.nn_connect.argtypes = [ctypes.c_int, ctypes.c_char_p]
    lib.nn_send.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]
    lib.nn_recv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    lib.nn_freemsg.argtypes = [ctypes.c_void_p]
    lib.nn_errno.restype = ctypes.c_int
    lib.nn_strerror.argtypes = [ctypes.c_int]
    lib.nn_strerror.restype = ctypes.c_char_p
    lib.nn_get_statistic.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.nn_get_statistic.restype = ctypes.c_uint64
    return lib


def kernel_unsent_bytes():
    """Sum of SIOCOUTQ over this process's sockets: bytes written to the
    kernel but not yet consumed by the peer (unix) / not yet acked (tcp)."""
    total = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink("/proc/self/fd/" + fd).startswith("socket:"):
                continue
            b = bytearray(4)
            fcntl.ioctl(int(fd), termios.TIOCOUTQ, b)   # == SIOCOUTQ
            total += struct.unpack("i", b)[0]
        except OSError:
            continue      # listening sockets, closed fds, ...
    return total


def wait_kernel_drained(max_wait, polls=4, interval=0.01):
    """Wait (at most max_wait s) until SIOCOUTQ is 0 on all our sockets in
    `polls` polls in a row, `interval` s apart.  A heuristic: nanomsg may
    still hold the tail of a big message in user space (its worker thread
    writes it when the socket becomes writable), and the kernel queue can be
    empty for a moment in between; hence several polls."""
    deadline = time.monotonic() + max_wait
    zeros = 0
    while time.monotonic() < deadline:
        zeros = zeros + 1 if kernel_unsent_bytes() == 0 else 0
        if zeros >= polls:
            return True
        time.sleep(interval)
    return False


def run_libnanomsg(args):
    if args.proto == "pair1":
        sys.stderr.write("UNSUPPORTED: pair1 (PAIR v1) does not exist in nanomsg\n")
        return EXIT_UNSUPPORTED
    try:
        lib = load_libnanomsg()
    except Failure as e:
        sys.stderr.write("FAIL: %s\n" % e)
        return 1
    ETIMEDOUT = 110

    def err(what):
        e = lib.nn_errno()
        return e, "%s: %s (errno %d)" % (what, lib.nn_strerror(e).decode(), e)

    def setint(level, opt, val, name):
        v = ctypes.c_int(val)
        if lib.nn_setsockopt(s, level, opt, ctypes.byref(v), ctypes.sizeof(v)) < 0:
            raise Failure(err("nn_setsockopt(%s)" % name)[1])

    ms = int(args.timeout * 1000)
    s = lib.nn_socket(AF_SP, NN_PROTO[args.proto])
    if s < 0:
        sys.stderr.write("FAIL: %s\n" % err("nn_socket")[1])
        return 1
    seq = sequence(args.sizes, args.count_per_size)
    try:
        setint(NN_SOL_SOCKET, NN_SNDTIMEO, ms, "NN_SNDTIMEO")
        setint(NN_SOL_SOCKET, NN_RCVTIMEO, ms, "NN_RCVTIMEO")
        setint(NN_SOL_SOCKET, NN_RCVMAXSIZE, -1, "NN_RCVMAXSIZE")
        setint(NN_SOL_SOCKET, NN_RECONNECT_IVL, 100, "NN_RECONNECT_IVL")
        if args.proto == "sub0":
            if lib.nn_setsockopt(s, NN_PROTO["sub0"], NN_SUB_SUBSCRIBE, b"", 0) < 0:
                raise Failure(err("subscribe")[1])
        if args.proto == "surveyor0":
            setint(NN_PROTO["surveyor0"], NN_SURVEYOR_DEADLINE, ms, "NN_SURVEYOR_DEADLINE")
        url = args.url
        if args.mode == "listen":
            tries = PORT_TRIES if url_port(url) == 0 else 1
            for k in range(tries):
                if tries > 1:
                    url = with_port(args.url, unused_port())
                if lib.nn_bind(s, url.encode()) >= 0:
                    break
                e, m = err("nn_bind(%s)" % url)
                if e != EADDRINUSE or k == tries - 1:
                    raise Failure(m)
        else:
            if lib.nn_connect(s, url.encode()) < 0:
                raise Failure(err("nn_connect(%s)" % url)[1])
        write_ready(args.ready_file, url)

        def conns():
            return lib.nn_get_statistic(s, NN_STAT_CURRENT_CONNECTIONS)

        def send(data, what, index, size):
            if lib.nn_send(s, data, len(data), 0) < 0:
                e, m = err("nn_send")
                if e == ETIMEDOUT:
                    raise Failure("timeout (%.1f s) sending %s #%d (size %d)"
                                  % (args.timeout, what, index, size))
                raise Failure("%s #%d: %s" % (what, index, m))

        def recv(what, index, size):
            buf = ctypes.c_void_p()
            n = lib.nn_recv(s, ctypes.byref(buf), NN_MSG, 0)
            if n < 0:
                e, m = err("nn_recv")
                if e == ETIMEDOUT:
                    raise Failure("timeout (%.1f s) waiting for %s #%d (size %d)"
                                  % (args.timeout, what, index, size))
                raise Failure("%s #%d: %s" % (what, index, m))
            data = ctypes.string_at(buf, n) if n else b""
            lib.nn_freemsg(buf)
            return data

        def check(got, expected, what, index, size):
            if got != expected:
                raise Failure(describe_mismatch(what, index, size, expected, got))

        role = role_of(args.proto, args.mode)
        if args.proto in ("pub0", "surveyor0") or (args.proto == "bus0" and role == "client"):
            deadline = time.monotonic() + args.timeout
            while conns() < 1:
                if time.monotonic() > deadline:
                    raise Failure("no peer connected within %.1f s" % args.timeout)
                time.sleep(0.01)
            time.sleep(0.05)   # let the peer finish its side of the handshake

        last_was_send = False
        for index, size in seq:
            if role == "send":
                send(fast_payload(size, index), "message", index, size)
                last_was_send = True
                if args.proto == "pub0":
                    # nanomsg PUB (nn_dist) skips a pipe that is still busy
                    # with the previous message, i.e. that message is
                    # dropped for that subscriber.  Pace the sends: wait until
                    # the kernel has handed everything to the peer.
                    wait_kernel_drained(args.timeout)
            elif role == "recv":
                check(recv("message", index, size), fast_payload(size, index), "message", index, size)
            elif role == "client":
                send(fast_payload(size, index), "request", index, size)
                check(recv("reply to request", index, size),
                      fast_payload(size, index + REPLY_OFFSET), "reply", index, size)
                last_was_send = False
            else:
                check(recv("request", index, size), fast_payload(size, index), "request", index, size)
                send(fast_payload(size, index + REPLY_OFFSET), "reply", index, size)
                last_was_send = True
        if last_was_send:
            # nanomsg 1.x ignores NN_LINGER: nn_close() drops unsent data.
            wait_kernel_drained(args.linger)
            deadline = time.monotonic() + args.linger
            while time.monotonic() < deadline and conns() > 0:
                time.sleep(0.02)
        print("OK %d messages" % len(seq))
        return 0
    except Failure as e:
        sys.stderr.write("FAIL: libnanomsg %s %s %s: %s\n" % (args.proto, args.mode, args.url, e))
        return 1
    finally:
        lib.nn_close(s)


def main(argv=None):
    ap = build_arg_parser(__doc__)
    ap.add_argument("--backend", choices=("nanocat", "libnanomsg"), default="nanocat")
    ap.add_argument("--nanocat", default="nanocat", help="nanocat binary (default: from PATH)")
    ap.add_argument("--send-delay", type=float, default=1.0,
                    help="nanocat --delay for pub0/bus0/surveyor0 (default 1.0 s)")
    ap.add_argument("--allow-oversize", action="store_true",
                    help="run sizes above nanocat's receive limit anyway")
    args = ap.parse_args(argv)
    if args.count_per_size < 1 or args.timeout <= 0:
        sys.stderr.write("--count-per-size must be >= 1 and --timeout > 0\n")
        return 2
    start_watchdog(args.timeout)
    if args.backend == "libnanomsg":
        return run_libnanomsg(args)
    return run_nanocat(args)


if __name__ == "__main__":
    rc = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
