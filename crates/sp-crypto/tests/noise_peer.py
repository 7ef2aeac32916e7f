#!/usr/bin/env python3
"""An independent spstack Noise peer: SP/TCP framing, the layered
announcement, Noise_XX_25519_ChaChaPoly_BLAKE2s run by the `noiseprotocol`
package (not snow), and the spstack record format, written from the spec.

Usage:
    noise_peer.py dial HOST:PORT --priv HEX --peer-pub HEX [--rekey N]
    noise_peer.py listen          --priv HEX --peer-pub HEX [--rekey N]

`listen` prints "PORT <n>" on stdout once bound. The peer then answers
every message with its bytes XORed with 0x5A until it receives b"bye",
answers b"bye-ack" and exits 0. It rekeys its outgoing key after every N
records it sends (flag bit 0), and follows the other side's rekey flags.
Any protocol violation exits non-zero with a message on stderr.
"""

import argparse
import socket
import struct
import sys

from noise.connection import Keypair, NoiseConnection

PROTOCOL = b"Noise_XX_25519_ChaChaPoly_BLAKE2s"
PAIR0 = 0x10
LAYER = b"noise-xx/2"
PROLOGUE_PREFIX = b"spstack-noise/2\x00"
MAX_NOISE = 65535
TAG = 16
CHUNK = MAX_NOISE - TAG
HANDSHAKE_MAX = 1024
RECORD_MAX = 4 << 20
FLAG_REKEY = 1


def fail(msg):
    print("noise_peer: " + msg, file=sys.stderr, flush=True)
    sys.exit(2)


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        part = s.recv(min(n - len(buf), 1 << 20))
        if not part:
            fail("connection closed after %d of %d bytes" % (len(buf), n))
        buf += part
    return bytes(buf)


def announcement():
    # layered form: version byte 1, then u16 BE list length, then
    # length-prefixed names (see sp-core announce.rs)
    names = bytes([len(LAYER)]) + LAYER
    return b"\x00SP\x01" + struct.pack(">H", PAIR0) + b"\x00\x00" + struct.pack(">H", len(names)) + names


def read_announcement(s):
    fixed = recv_exact(s, 8)
    if fixed[:3] != b"\x00SP" or fixed[3] != 1 or fixed[6:8] != b"\x00\x00":
        fail("bad announcement %r" % fixed)
    (proto,) = struct.unpack(">H", fixed[4:6])
    if proto != PAIR0:
        fail("peer protocol %#x, expected PAIR0" % proto)
    raw_len = recv_exact(s, 2)
    (n,) = struct.unpack(">H", raw_len)
    if n > 1024:
        fail("layer list of %d bytes" % n)
    names = recv_exact(s, n)
    if names != bytes([len(LAYER)]) + LAYER:
        fail("peer layers %r" % names)
    return fixed + raw_len + names


def send_frame(s, data):
    s.sendall(struct.pack(">Q", len(data)) + data)


def recv_frame(s, limit):
    (n,) = struct.unpack(">Q", recv_exact(s, 8))
    if n > limit:
        fail("frame of %d bytes exceeds %d" % (n, limit))
    return recv_exact(s, n)


class Records:
    def __init__(self, conn, rekey_every):
        self.conn = conn
        self.rekey_every = rekey_every
        self.sent = 0

    # record format 2: the record cut into pieces of CHUNK bytes, every
    # piece's ciphertext first, then every piece's tag; each piece
    # authenticates its index (u32 BE) and whether it is the last (u8)
    @staticmethod
    def ad(i, n):
        return struct.pack(">IB", i, 1 if i == n - 1 else 0)

    def seal(self, body):
        self.sent += 1
        rekey = self.rekey_every > 0 and self.sent % self.rekey_every == 0
        record = bytes([FLAG_REKEY if rekey else 0]) + struct.pack(">I", len(body)) + body
        n = max(1, -(-len(record) // CHUNK))
        texts, tags = bytearray(), bytearray()
        enc = self.conn.noise_protocol.cipher_state_encrypt
        for i in range(n):
            sealed = enc.encrypt_with_ad(self.ad(i, n), record[i * CHUNK:(i + 1) * CHUNK])
            texts += sealed[:-TAG]
            tags += sealed[-TAG:]
        if rekey:
            self.conn.rekey_outbound_cipher()
        return bytes(texts + tags)

    def open(self, frame):
        if len(frame) < 5 + TAG:
            fail("frame of %d bytes is too short" % len(frame))
        n = -(-len(frame) // MAX_NOISE)
        size = len(frame) - n * TAG
        if size <= (n - 1) * CHUNK:
            fail("frame of %d bytes does not cut into pieces" % len(frame))
        dec = self.conn.noise_protocol.cipher_state_decrypt
        plain = bytearray()
        for i in range(n):
            text = frame[i * CHUNK:min((i + 1) * CHUNK, size)]
            tag = frame[size + i * TAG:size + (i + 1) * TAG]
            plain += dec.decrypt_with_ad(self.ad(i, n), text + tag)
        flags = plain[0]
        if flags & ~FLAG_REKEY:
            fail("unknown flags %#x" % flags)
        (n,) = struct.unpack(">I", bytes(plain[1:5]))
        if 5 + n > len(plain):
            fail("record length %d beyond %d" % (n, len(plain) - 5))
        if any(plain[5 + n:]):
            fail("non-zero padding")
        if flags & FLAG_REKEY:
            self.conn.rekey_inbound_cipher()
        return bytes(plain[5:5 + n])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["dial", "listen"])
    ap.add_argument("addr", nargs="?")
    ap.add_argument("--priv", required=True)
    ap.add_argument("--peer-pub", required=True)
    ap.add_argument("--rekey", type=int, default=2)
    a = ap.parse_args()

    if a.mode == "dial":
        host, port = a.addr.rsplit(":", 1)
        s = socket.create_connection((host, int(port)), timeout=20)
    else:
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        ls.settimeout(20)
        print("PORT %d" % ls.getsockname()[1], flush=True)
        s, _ = ls.accept()
        ls.close()
    s.settimeout(20)
    dialer = a.mode == "dial"

    ours = announcement()
    s.sendall(ours)
    theirs = read_announcement(s)
    prologue = PROLOGUE_PREFIX + (ours + theirs if dialer else theirs + ours)

    conn = NoiseConnection.from_name(PROTOCOL)
    if dialer:
        conn.set_as_initiator()
    else:
        conn.set_as_responder()
    conn.set_keypair_from_private_bytes(Keypair.STATIC, bytes.fromhex(a.priv))
    conn.set_prologue(prologue)
    conn.start_handshake()
    # noiseprotocol drops the handshake state when it finishes; keep it to
    # read the peer's static key afterwards
    hs = conn.noise_protocol.handshake_state
    my_turn = dialer
    while not conn.handshake_finished:
        if my_turn:
            send_frame(s, bytes(conn.write_message()))
        else:
            conn.read_message(recv_frame(s, HANDSHAKE_MAX))
        my_turn = not my_turn
    rs = hs.rs.public_bytes
    if rs != bytes.fromhex(a.peer_pub):
        fail("peer static key %s is not the expected one" % rs.hex())

    rec = Records(conn, a.rekey)
    limit = ((5 + RECORD_MAX) // CHUNK + 1) * MAX_NOISE
    while True:
        body = rec.open(recv_frame(s, limit))
        if body == b"bye":
            send_frame(s, rec.seal(b"bye-ack"))
            break
        send_frame(s, rec.seal(bytes(b ^ 0x5A for b in body)))
    s.close()
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
