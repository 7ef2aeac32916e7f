//! `heartbeat/1` and `ack/1` (sp-reliable) as a peer meets them: sockets
//! with those pipe layers listen on the in-memory stream transport under
//! SP/TCP framing, and the input is what a peer writes on one connection,
//! as in `socket_tcp`: raw, or built by the target from the input (the SP
//! header with the right layer list, the layers' hellos with fields from
//! the input, then the layers' frames: data with any sequence number,
//! acknowledgements of any count, pings, frames of any bytes).
//!
//! Then the socket must close the connection, serve a good peer on a new
//! one, keep no pipe, and have delivered each numbered message at most
//! once: `ack/1` drops copies of a number it has, and the numbers used
//! here all fall within its memory of the last 65,536.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sp_core::{ProtocolId, Socket, SocketBuilder};
use sp_protocols::{raw, Plain, Rep0};
use sp_reliable::ack::Ack;
use sp_reliable::heartbeat::Heartbeat;
use sp_transports::Framed;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, Mutex};

use crate::input::Input;
use crate::mem::{mem_streams, MemConnector};
use crate::net::{frame, peer_writes, runtime, serve, Kind, GOOD, LIMIT};

const HB: &str = "heartbeat/1";
const ACK: &str = "ack/1";
/// The servers' heartbeat interval: far longer than an input takes, so
/// silence never ends a pipe here (a timeout is not what is fuzzed).
const INTERVAL_MS: u32 = 60_000;
/// Inputs run so far in this process.
static RUN: AtomicU32 = AtomicU32::new(0);

struct Server {
    socket: Socket,
    conn: MemConnector,
    kind: Kind,
    peer: ProtocolId,
    layers: &'static [&'static str],
    got: Mutex<mpsc::UnboundedReceiver<Vec<u8>>>,
}

impl Server {
    fn has(&self, layer: &str) -> bool {
        self.layers.contains(&layer)
    }
}

struct Reliable {
    rt: Runtime,
    servers: Vec<Server>,
    /// Keys the good peers' identities, so no input can guess one.
    ids: RandomState,
}

fn reliable() -> &'static Reliable {
    static H: OnceLock<Reliable> = OnceLock::new();
    H.get_or_init(|| {
        let rt = runtime();
        let servers = rt.block_on(async {
            let beat = || Heartbeat::new(Duration::from_millis(INTERVAL_MS.into())).layer();
            let specs: Vec<(SocketBuilder, Kind, ProtocolId, &'static [&'static str])> = vec![
                (
                    SocketBuilder::new(raw::Pull0Raw)
                        .cooked(Plain::PULL0)
                        .pipe_layer(Ack::new().layer()),
                    Kind::Deliver,
                    ProtocolId::PUSH0,
                    &[ACK],
                ),
                (
                    SocketBuilder::new(raw::Rep0Raw)
                        .cooked(Rep0)
                        .pipe_layer(beat())
                        .pipe_layer(Ack::new().layer()),
                    Kind::Echo,
                    ProtocolId::REQ0,
                    &[HB, ACK],
                ),
                (
                    SocketBuilder::new(raw::Pull0Raw)
                        .cooked(Plain::PULL0)
                        .pipe_layer(beat()),
                    Kind::Deliver,
                    ProtocolId::PUSH0,
                    &[HB],
                ),
            ];
            let mut servers = Vec::new();
            for (b, kind, peer, layers) in specs {
                let (streams, conn) = mem_streams();
                let socket = b
                    .transport(Arc::new(Framed::new(streams, &["fuzz"])))
                    .build();
                socket.listen("fuzz://fuzz:1").await.expect("listen");
                let got = Mutex::new(serve(socket.clone(), kind));
                servers.push(Server {
                    socket,
                    conn,
                    kind,
                    peer,
                    layers,
                    got,
                });
            }
            servers
        });
        Reliable {
            rt,
            servers,
            ids: RandomState::new(),
        }
    })
}

/// The SP header announcing `layers`.
fn sp_header(peer: ProtocolId, layers: &[&str]) -> Vec<u8> {
    let p = peer.0.to_be_bytes();
    let list: Vec<u8> = layers
        .iter()
        .flat_map(|l| [&[l.len() as u8][..], l.as_bytes()].concat())
        .collect();
    let mut h = vec![0, b'S', b'P', 1, p[0], p[1], 0, 0];
    h.extend_from_slice(&(list.len() as u16).to_be_bytes());
    h.extend_from_slice(&list);
    h
}

fn hb_hello(ms: u32) -> Vec<u8> {
    [&b"HB\x01"[..], &ms.to_be_bytes()].concat()
}

fn ack_hello(identity: u64, window: u32) -> Vec<u8> {
    [
        &b"AK\x01"[..],
        &identity.to_be_bytes(),
        &window.to_be_bytes(),
    ]
    .concat()
}

/// A frame of the layers above `heartbeat/1`: its data type byte first.
fn over_hb(s: &Server, body: Vec<u8>) -> Vec<u8> {
    if s.has(HB) {
        [&[0u8][..], &body].concat()
    } else {
        body
    }
}

fn ack_data(seq: u64, body: &[u8]) -> Vec<u8> {
    [&[0u8][..], &seq.to_be_bytes(), body].concat()
}

/// What the peer writes, built from the input; and, for each data frame
/// `ack/1` numbers, the body it carries and its number.
fn peer_bytes(s: &Server, inp: &mut Input) -> (Vec<u8>, Vec<(Vec<u8>, u64)>) {
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    let mode = inp.u8();
    let mut out = Vec::new();
    let mut numbered = Vec::new();
    if mode & 1 == 0 {
        out.extend_from_slice(&sp_header(s.peer, s.layers));
    }
    if s.has(HB) && mode & 2 == 0 {
        let ms = match inp.u8() % 4 {
            0 => INTERVAL_MS,
            1 => 1,
            2 => 0,
            _ => inp.u32(),
        };
        out.extend_from_slice(&frame(&hb_hello(ms)));
    }
    if s.has(ACK) && mode & 4 == 0 {
        let window = match inp.u8() % 4 {
            0 => 4096,
            1 => 1,
            2 => 0,
            _ => inp.u32(),
        };
        let identity = u64::from(inp.u32());
        out.extend_from_slice(&frame(&over_hb(s, ack_hello(identity, window))));
    }
    for i in 0..32u8 {
        if inp.is_empty() {
            break;
        }
        let op = inp.u8();
        let f = match op % 6 {
            // a message numbered from a few: copies are likely
            0 | 1 if s.has(ACK) => {
                let seq = u64::from(inp.u8() % 16);
                // this input's number and the frame's index make each body
                // one of a kind, here and among what earlier inputs left
                let mut body = run.to_be_bytes().to_vec();
                body.push(i);
                body.extend_from_slice(inp.short());
                numbered.push((body.clone(), seq));
                // a REP's application sees the body without the request id
                let wire = match s.kind {
                    Kind::Echo => [&0x8000_0000u32.to_be_bytes()[..], &body].concat(),
                    Kind::Deliver => body,
                };
                over_hb(s, ack_data(seq, &wire))
            }
            0 | 1 => over_hb(s, inp.short().to_vec()),
            2 if s.has(ACK) => {
                let count = match op >> 3 {
                    0 => u64::MAX,
                    n => u64::from(n),
                };
                over_hb(s, [&[1u8][..], &count.to_be_bytes()].concat())
            }
            2 | 3 => vec![1],
            4 => inp.short().to_vec(),
            // bytes outside any frame: the rest of the stream
            _ => {
                out.extend_from_slice(inp.rest());
                break;
            }
        };
        out.extend_from_slice(&frame(&f));
    }
    (out, numbered)
}

/// Reads one frame's body.
async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Vec<u8> {
    let mut len = [0u8; 8];
    r.read_exact(&mut len).await.expect("a frame");
    let mut b = vec![0u8; (u64::from_be_bytes(len) as usize).min(1 << 16)];
    r.read_exact(&mut b).await.expect("the frame's bytes");
    b
}

impl Server {
    /// One honest exchange on a new connection, speaking the layers;
    /// returns what the application received before the good message.
    async fn serves_a_good_peer(&self, ids: &RandomState) -> Vec<Vec<u8>> {
        let n = GOOD.fetch_add(1, Ordering::Relaxed) & 0x7fff_ffff;
        let body = format!("good peer {n}").into_bytes();
        let msg = match self.kind {
            Kind::Echo => [&(n | 0x8000_0000).to_be_bytes()[..], &body].concat(),
            Kind::Deliver => body.clone(),
        };
        let (mut r, mut w) = tokio::io::split(self.conn.connect());
        w.write_all(&sp_header(self.peer, self.layers))
            .await
            .expect("the socket reads a good header");
        let mut hdr = [0u8; 10];
        r.read_exact(&mut hdr)
            .await
            .expect("the socket announces itself");
        assert_eq!(&hdr[..4], b"\0SP\x01", "a layered announcement");
        let mut list = vec![0u8; u16::from_be_bytes([hdr[8], hdr[9]]).into()];
        r.read_exact(&mut list).await.expect("its layer list");
        if self.has(HB) {
            w.write_all(&frame(&hb_hello(INTERVAL_MS)))
                .await
                .expect("hello");
            let theirs = read_frame(&mut r).await;
            assert_eq!(&theirs[..3], b"HB\x01", "the socket's heartbeat hello");
        }
        if self.has(ACK) {
            let identity = ids.hash_one(n);
            w.write_all(&frame(&over_hb(self, ack_hello(identity, 4096))))
                .await
                .expect("hello");
            let theirs = read_frame(&mut r).await;
            let theirs = if self.has(HB) {
                &theirs[1..]
            } else {
                &theirs[..]
            };
            assert_eq!(&theirs[..3], b"AK\x01", "the socket's ack hello");
        }
        let data = if self.has(ACK) {
            ack_data(0, &msg)
        } else {
            msg.clone()
        };
        w.write_all(&frame(&over_hb(self, data)))
            .await
            .expect("a good frame");
        let mut before = Vec::new();
        match self.kind {
            Kind::Echo => loop {
                // pings and acknowledgements may come first
                let f = read_frame(&mut r).await;
                let f = if self.has(HB) {
                    match f.split_first() {
                        Some((0, rest)) => rest.to_vec(),
                        _ => continue,
                    }
                } else {
                    f
                };
                let reply = if self.has(ACK) {
                    match f.split_first() {
                        Some((0, rest)) if rest.len() >= 8 => rest[8..].to_vec(),
                        _ => continue,
                    }
                } else {
                    f
                };
                assert_eq!(reply, msg, "the reply to a good request");
                break;
            },
            Kind::Deliver => {
                let mut got = self.got.lock().await;
                loop {
                    let m = got.recv().await.expect("the application runs");
                    if m == body {
                        break;
                    }
                    before.push(m);
                }
            }
        }
        let _ = w.shutdown().await;
        let mut sink = [0u8; 256];
        while let Ok(n) = r.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
        let mut got = self.got.lock().await;
        while let Ok(m) = got.try_recv() {
            before.push(m);
        }
        before
    }
}

/// Fuzz target `socket_reliable`: what a peer writes on one connection to
/// a PULL with `ack/1`, a REP with `heartbeat/1` and `ack/1`, or a PULL
/// with `heartbeat/1`: raw bytes, or the layers' hellos and frames built
/// from the input. The socket closes the connection, serves a good peer
/// next, keeps no pipe, and delivers no numbered message twice.
pub fn socket_reliable(data: &[u8]) {
    let h = reliable();
    let mut inp = Input::new(data);
    let s = &h.servers[inp.u8() as usize % h.servers.len()];
    let raw = inp.u8() & 1 == 1;
    let (bytes, numbered) = if raw {
        (inp.rest().to_vec(), Vec::new())
    } else {
        peer_bytes(s, &mut inp)
    };
    h.rt.block_on(async {
        if tokio::time::timeout(LIMIT, peer_writes(s.conn.connect(), &bytes))
            .await
            .is_err()
        {
            panic!("the socket kept a connection open after its peer hung up");
        }
        let delivered = match tokio::time::timeout(LIMIT, s.serves_a_good_peer(&h.ids)).await {
            Ok(d) => d,
            Err(_) => panic!("a good peer was not served after the fuzz input"),
        };
        // each number reached the application once at most (REP's
        // deliveries are not seen here: its application answers them)
        let seq_of: HashMap<&[u8], u64> = numbered.iter().map(|(b, q)| (&b[..], *q)).collect();
        let mut seen: HashMap<u64, &[u8]> = HashMap::new();
        for m in &delivered {
            if let Some(&q) = seq_of.get(&m[..]) {
                if let Some(first) = seen.insert(q, m) {
                    panic!("number {q} delivered twice: {first:?} and {m:?}");
                }
            }
        }
        let st = s.socket.stats();
        assert!(
            st.pipes_opened - st.pipes_closed <= 1,
            "pipes left in the socket: {st:?}"
        );
    });
}
