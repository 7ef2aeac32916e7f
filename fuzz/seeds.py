#!/usr/bin/env python3
"""Writes the hand-made seeds of fuzz/corpus/<target>/seed-*: known-good
inputs in each target's layout (see the target's docs in
crates/sp-fuzz-targets), the frames the tests use. Run from fuzz/; the
files are committed, this only says where they came from."""
import base64, os, struct

def u16(n): return struct.pack(">H", n)
def u32(n): return struct.pack(">I", n)
def u64(n): return struct.pack(">Q", n)
def chunk(b): return u16(len(b)) + b
def short(b): return bytes([len(b)]) + b
def sp(proto, layers=()):
    if not layers:
        return b"\0SP\0" + u16(proto) + b"\0\0"
    lst = b"".join(short(l.encode()) for l in layers)
    return b"\0SP\1" + u16(proto) + b"\0\0" + u16(len(lst)) + lst
def tcp(body): return u64(len(body)) + body
def ipc(body): return b"\x01" + u64(len(body)) + body

REQ, REP, PUSH, PULL, PUB, SUB, SURV, RESP, PAIR1 = 0x30, 0x31, 0x50, 0x51, 0x20, 0x21, 0x62, 0x63, 0x11
seeds = {}
TRAILER = 1 + 1 + 2 + 2 + 32 + 32 + 16 + 8 + 8 + 8 + 4 + 16 + 64
def seed(target, name, data): seeds.setdefault(target, []).append((name, data))

seed("announce", "plain-req", sp(REQ))
seed("announce", "layered-rep", sp(REP, ["noise-xx/2"]))
seed("announce", "layered-two", sp(PULL, ["noise-ik/2", "xor/1"]))
seed("announce", "bad-version", b"\0SP\2\0\x30\0\0")

seed("stream_frames", "tcp-two-frames", bytes([2, 0, 8]) + tcp(b"hello") + tcp(b""))
seed("stream_frames", "ipc-in-pieces", bytes([3, 3, 8]) + ipc(b"hi") + ipc(b"there"))
seed("stream_frames", "tcp-too-large", bytes([0, 4, 1, 0]) + tcp(b"hello"))
seed("stream_frames", "ipc-bad-type", bytes([3, 0, 0]) + b"\x02" + u64(1) + b"x")
seed("stream_frames", "tcp-large", bytes([2, 0, 0]) + u64(20000) + bytes(20000))

hello = b"\x80\0\0\x01hello"
seed("protocol_headers", "req-reply", bytes([3, 8]) + chunk(hello))
seed("protocol_headers", "req-reply-via-device", bytes([3, 8]) + chunk(b"\0\0\0\x05" + hello))
seed("protocol_headers", "rep-request", bytes([4, 8]) + chunk(hello) + chunk(b"\0\0\0\x02\0\0\0\x03\x80\0\0\x09q"))
seed("protocol_headers", "surveyor-response", bytes([5, 8]) + chunk(hello))
seed("protocol_headers", "respondent-survey", bytes([6, 8]) + chunk(hello))
seed("protocol_headers", "pair1-hops", bytes([8, 8]) + chunk(b"\0\0\0\x01x") + chunk(b"\0\0\x01\0y"))
seed("protocol_headers", "sub-topics", bytes([12, 8, 1]) + short(b"ab") + chunk(b"abc") + chunk(b"b"))

def op(kind, arg): return bytes([(len(arg) << 2) | kind]) + arg
seed("sub_trie", "split-and-merge", bytes([0]) + op(0, b"abc") + op(0, b"abd") + op(0, b"ab")
     + op(2, b"abx") + op(1, b"ab") + op(3, b"abc") + op(0, b"") + op(2, b"zz"))
seed("sub_trie", "small-alphabet", bytes([2]) + b"".join(op(i % 4, bytes([i, i + 1, i * 3])) for i in range(40)))

seed("socket_tcp", "rep-requests", b"\0" + sp(REQ) + tcp(hello) + tcp(b"\x80\0\0\x02again"))
seed("socket_tcp", "pull-messages", b"\1" + sp(PUSH) + tcp(b"hi") + tcp(b""))
seed("socket_tcp", "sub-messages", b"\2" + sp(PUB) + tcp(b"topic/1") + tcp(b"x"))
seed("socket_tcp", "respondent-survey", b"\3" + sp(SURV) + tcp(b"\x80\0\0\x07who"))
seed("socket_tcp", "layered-header", b"\0" + sp(REQ, ["noise-xx/2"]))
seed("socket_tcp", "wrong-protocol", b"\0" + sp(PULL) + tcp(hello))

def ws_frame(op, payload, fin=True, mask=b"\x11\x22\x33\x44"):
    b0 = (0x80 if fin else 0) | op
    n = len(payload)
    if n < 126: hdr = bytes([b0, 0x80 | n])
    elif n < 65536: hdr = bytes([b0, 0x80 | 126]) + u16(n)
    else: hdr = bytes([b0, 0x80 | 127]) + u64(n)
    return hdr + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
def upgrade(token="rep.sp.nanomsg.org", extra=""):
    return ("GET /sp HTTP/1.1\r\nHost: fuzz:1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: {token}\r\n{extra}\r\n").encode()
seed("ws_upgrade", "request", upgrade() + ws_frame(2, hello))
seed("ws_upgrade", "fragmented-and-ping", upgrade() + ws_frame(2, hello[:3], fin=False)
     + ws_frame(9, b"ping") + ws_frame(0, hello[3:]) + ws_frame(8, u16(1000) + b"bye"))
seed("ws_upgrade", "text-frame", upgrade() + ws_frame(1, b"text"))
seed("ws_upgrade", "foreign-origin", upgrade(extra="Origin: http://evil.example\r\n"))
seed("ws_upgrade", "layered-token", upgrade("rep.0a6e6f6973652d78782f32.spstack"))
seed("ws_upgrade", "wrong-path", upgrade().replace(b"/sp ", b"/nope "))

seed("ws_message", "opcodes", chunk(b"rep.sp.nanomsg.org") + b"\0" + chunk(b"\x01hi") + chunk(b"\x02\0\xff")
     + chunk(b"\x08\x03\xe8bye") + chunk(b"\x01after close"))
seed("ws_message", "layered-token", chunk(b"pair1.0a6e6f6973652d78782f32.spstack") + b"\x01" + short(b"noise-xx/2")
     + chunk(b"\x01\xff\xfe") + chunk(b"\x08\x03"))

rec = lambda flags, length, body, pad=0: bytes([flags]) + u32(length) + chunk(body) + u16(pad)
seed("noise_record", "records", u16(256) + b"\x01" + rec(0, 5, b"hello") + b"\x01" + rec(1, 2, b"ab", 1)
     + b"\x01" + rec(0, 3, b"xyz"))
seed("noise_record", "lies", u16(256) + b"\x01" + rec(0, 9, b"short") + b"\x01" + rec(2, 1, b"a")
     + b"\x01" + bytes([0]) + u32(1) + chunk(b"a\x01") + u16(0))
seed("noise_record", "flipped-and-forged", u16(256) + b"\x02" + rec(0, 5, b"hello") + u32(77)
     + b"\x00" + chunk(bytes(40)))
seed("noise_record", "multi-piece", u16(60000) + b"\x01" + rec(0, 1, b"a", 30000))

# honest modes: one mutation byte per message the peer sends (4: none),
# then records (short body, flip byte)
records = short(b"abc") + b"\0" + short(b"") + b"\0" + short(b"defg") + b"\0" + short(b"z") + b"\1" + u16(9)
seed("noise_handshake", "xx-responder", b"\x04" + b"\x04\x04" + records)
seed("noise_handshake", "xx-initiator", b"\x06" + b"\x04" + records)
seed("noise_handshake", "ik-responder", b"\x05" + b"\x04" + records)
seed("noise_handshake", "ik-initiator", b"\x07" + b"\x04" + records)
seed("noise_handshake", "xx-responder-flip", b"\x04" + b"\x00" + u16(3) + b"\x04")
seed("noise_handshake", "not-allowed", b"\x0c" + b"\x04\x04")
seed("noise_handshake", "raw-ephemeral", b"\x00" + chunk(bytes(range(32))))
seed("noise_handshake", "raw-low-order", b"\x00" + chunk(b"\x01" + bytes(31)))

# integrity: chunk(trailer) | protocol | socket bits | [resend] | knobs |
# max_age | max_skew | max_request_age/8 | wall (s), then operations
P_REQ, P_SURV, P_REP, P_RESP, P_PUSH, P_PULL = 0, 1, 2, 3, 4, 5
def isock(proto, s, t=1, age=30000, skew=5000, mra=300000 // 8, resend=None):
    return chunk(b"") + bytes([proto, s]) + (u16(resend) if resend is not None else b"") + bytes([t]) + u16(age) + u16(skew) + u16(mra) + u16(0)
def irec(signer=0, k=0x10, f=8, msg_id=1, epoch=0, sq=4, off=b"\0", body=b"x", op=1, flip=None, extra=b""):
    b = bytes([op, signer, k]) + extra + bytes([f]) + u16(msg_id) + bytes([epoch, sq]) + off + short(body)
    return b + (u16(flip) if flip is not None else b"")
def isend(body): return b"\5" + short(body)
def ireplay(i): return b"\4" + bytes([i])
def imono(ms): return b"\6" + bytes([4]) + u16(ms)
ATTACHED, RESEND60 = 4, 2 << 3
# a REP on a socket: a request, its reply, the request sent again (answered
# again from the cache), then long after (replayed)
seed("integrity", "rep-resend", isock(P_REP, ATTACHED) + irec(body=b"job") + isend(b"done") + ireplay(0)
     + imono(60000) + ireplay(0))
# a REQ: its request, the bound reply, the reply again, then REQ's error
seed("integrity", "req-reply", isock(P_REQ, ATTACHED | RESEND60) + isend(b"ask") + irec(f=0, body=b"answer")
     + ireplay(0) + b"\7")
# one way: fresh, stale, too far ahead, flipped, untrusted, other audience, a replay
seed("integrity", "pull-one-way", isock(P_PULL, 0) + irec(f=1, sq=4) + irec(f=1, sq=8, off=b"\2")
     + irec(f=1, sq=12, off=b"\4") + irec(op=0x19, f=1, sq=16, flip=7) + irec(signer=2, f=1)
     + irec(signer=3, f=1) + ireplay(0))
# epochs: one allowed; a second waits for the first to be silent long enough,
# then the first's old messages are refused as forgotten
seed("integrity", "epochs", isock(P_PULL, 0, t=0, age=1000, skew=100) + irec(f=1, epoch=0, sq=4)
     + irec(f=1, epoch=1, sq=4) + imono(1300) + irec(f=1, epoch=1, sq=8) + irec(f=1, epoch=0, sq=8))
# misdirected: a reply at a REP, a request for another server, a wrong pair
seed("integrity", "misdirected", isock(P_REP, 0) + irec(k=1, f=0) + irec(f=3) + irec(k=0x30, f=8))
seed("integrity", "trailer", chunk(b"\2\3" + bytes(TRAILER - 2)) + bytes([P_SURV, 0x60]) + irec(op=0, f=0))
seed("key_files", "pkcs8", b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n")
seed("key_files", "spki", b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n")
seed("key_files", "noise-secret", b"spstack-noise-x25519-secret " + base64.b64encode(bytes(range(32))) + b"\n")
seed("key_files", "noise-public", b"spstack-noise-x25519-public " + base64.b64encode(bytes(range(1, 33))) + b"\n")

seed("spcat_args", "req-dial", b"\0".join([b"spcat", b"--req0", b"--dial", b"tcp://127.0.0.1:5555", b"-Dhello", b"--count=3", b"-i", b"1", b"--format:hex"]))
seed("spcat_args", "abbreviated", b"\0".join([b"spcat", b"--sub", b"--subscribe", b"", b"--listen=ipc:///tmp/x", b"-Q", b"--recv-timeout", b"2147483648", b"stop"]))

hexframe = (u64(9) + b"\x80\0\0\x01hello").hex().encode()
seed("spcat_decode", "req-tcp", b"\0".join([b"--stack", b"req0", b"--hex", hexframe]))
seed("spcat_decode", "noise-integrity", b"\0".join([b"--stack", b"noise-xx/2,req0,integrity", b"--transport", b"ipc", b"--hex", b"01" + hexframe]))
seed("spcat_decode", "file-wiretap", b"\0".join([b"--stack=rep0/raw,ws-opcodes", b"--wiretap", b"--file", b"x"]) + b"\0\0" + b"\0\0\0\x05\x80\0\0\x01\x01hi")
seed("spcat_decode", "unknown-layer", b"\0".join([b"--stack", b"xor/1,pull0,zip/3", b"--raw", b"--hex", b"0x00 0x01"]))

# spcat_declare: chunk(the --declare format) | placement | the frame
seed("spcat_declare", "header-and-trailer", chunk(b"stamp/1=magic:u16,seq:u32le,tag:bytes3|crc:u32") + b"\0"
     + u64(13) + b"\xab\xcd\0\0\0\x01xyz" + b"\x80\0\0\x01" + b"\0\0\0\x07")
seed("spcat_declare", "backtrace-message-layer", chunk(b"route/1=hops:backtrace,ttl:u8") + b"\1"
     + u64(13) + b"\x80\0\0\x01" + b"\0\0\0\x02\x80\0\0\x03\x05")
seed("spcat_declare", "opaque-both-sides", chunk(b"zip/1=opaque,len:u24") + b"\2" + u64(4) + b"\0\0\x01z")
seed("spcat_declare", "bad-type", chunk(b"t/1=a:u8le") + b"\0")

# socket_reliable: server (0 PULL+ack/1, 1 REP+heartbeat/1+ack/1, 2 PULL+heartbeat/1) | raw? |
# mode (bit 0: no SP header, 1: no heartbeat hello, 2: no ack hello) | hello fields | frames
def rdata(seq, body): return bytes([0, seq]) + short(body)
seed("socket_reliable", "pull-ack-copies", b"\0\0\0" + b"\0" + u32(7) + rdata(1, b"a") + rdata(1, b"b")
     + rdata(2, b"c") + b"\x0a" + rdata(1, b"d"))
seed("socket_reliable", "rep-heartbeat-ack", b"\1\0\0" + b"\0" + b"\0" + u32(9) + rdata(0, b"q") + b"\3" + rdata(0, b"q"))
seed("socket_reliable", "pull-heartbeat-pings", b"\2\0\0" + b"\1" + b"\0" + short(b"x") + b"\3\3" + b"\4" + short(b"\7"))
seed("socket_reliable", "ack-window-zero", b"\0\0\0" + b"\2" + u32(1))
seed("socket_reliable", "raw-header-only", b"\1\1" + sp(0x30, ["heartbeat/1", "ack/1"]))

for target, files in seeds.items():
    d = os.path.join("corpus", target)
    os.makedirs(d, exist_ok=True)
    for name, data in files:
        with open(os.path.join(d, "seed-" + name), "wb") as f:
            f.write(data)
print(sum(len(v) for v in seeds.values()), "seeds in", len(seeds), "targets")
