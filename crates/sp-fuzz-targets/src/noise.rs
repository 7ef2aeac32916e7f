//! The Noise pipe layer (sp-crypto `noise/`): records a receiver opens, and
//! the handshake as the responder and the initiator see it.

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use sp_core::layer::{Handshake, RecvLimit};
use sp_core::{Announcement, Connection, Error, Message, PipeInfo, ProtocolId};
use sp_crypto::noise::cipher::{CipherState, MAX_CHUNK_PLAIN, TAG_LEN};
use sp_crypto::noise::record::{pieces, Receiver, RekeyPolicy, Sender, FLAG_REKEY, RECORD_HEADER};
use sp_crypto::noise::{Noise, NoiseConfig, Padding, Pattern, StaticKeypair, PROLOGUE_PREFIX};

use crate::input::Input;

const KEY: [u8; 32] = [0x42; 32];

/// The associated data of piece `i` of `n` (the record format's docs).
fn piece_ad(i: usize, n: usize) -> [u8; 5] {
    let b = (i as u32).to_be_bytes();
    [b[0], b[1], b[2], b[3], u8::from(i + 1 == n)]
}

/// Seals plaintext record `plain` under `cs` as the format says, whatever
/// it holds: the receiver's checks after authentication are then reached.
fn seal_record(cs: &mut CipherState, plain: &[u8]) -> Vec<u8> {
    let n = pieces(plain.len());
    let mut text = plain.to_vec();
    let mut tags = Vec::with_capacity(n * TAG_LEN);
    let first = cs.nonce();
    for i in 0..n {
        let start = i * MAX_CHUNK_PLAIN;
        let end = (start + MAX_CHUNK_PLAIN).min(text.len());
        let tag = cs
            .seal_at(first + i as u64, &piece_ad(i, n), &mut text[start..end])
            .expect("a nonce far from exhausted");
        tags.extend_from_slice(&tag);
    }
    cs.commit(n as u64);
    text.extend_from_slice(&tags);
    text
}

/// What the receiver must make of plaintext record `p` (the format: flags,
/// body length, body, zero padding).
fn expected(p: &[u8], max_body: usize) -> Option<&[u8]> {
    if p.len() < RECORD_HEADER || p[0] & !FLAG_REKEY != 0 {
        return None;
    }
    let len = u32::from_be_bytes([p[1], p[2], p[3], p[4]]) as usize;
    if len > max_body || RECORD_HEADER + len > p.len() {
        return None;
    }
    let body = &p[RECORD_HEADER..RECORD_HEADER + len];
    p[RECORD_HEADER + len..]
        .iter()
        .all(|&b| b == 0)
        .then_some(body)
}

/// Fuzz target `noise_record`: frames a receiver opens after the
/// handshake. Each is either bytes from the input (what an attacker who
/// lacks the key can send) or a plaintext record from the input sealed
/// under the right key (what a broken or hostile peer with the key can
/// send), optionally with a bit flipped in transit.
pub fn noise_record(data: &[u8]) {
    let mut inp = Input::new(data);
    let max_body = inp.u16() as usize * 4;
    let mut rx = Receiver::new("noise-xx/2", CipherState::new(&KEY), max_body);
    let mut tx = CipherState::new(&KEY);
    // the key after a rekey, on the sender's side
    let mut frames = 0;
    while !inp.is_empty() && frames < 32 {
        frames += 1;
        let op = inp.u8();
        match op % 3 {
            0 => {
                // raw bytes: never authentic
                let f = inp.chunk();
                assert!(rx.open(Message::from(f)).is_err(), "opened forged bytes");
            }
            _ => {
                let head = inp.take(RECORD_HEADER);
                let body = inp.chunk();
                // zero padding, up to three pieces' worth
                let pad = (inp.u16() as usize * 3).min(3 * MAX_CHUNK_PLAIN);
                let mut plain = [head, body].concat();
                plain.resize(plain.len() + pad, 0);
                let sealed = seal_record(&mut tx, &plain);
                let flip = op % 3 == 2 && !sealed.is_empty();
                let mut wire = sealed.clone();
                if flip {
                    let at = inp.u32() as usize % (wire.len() * 8);
                    wire[at / 8] ^= 1 << (at % 8);
                }
                let got = rx.open(Message::from(wire));
                match (&got, flip, expected(&plain, max_body)) {
                    (Ok(m), false, Some(b)) => {
                        assert_eq!(m.body(), b);
                        if plain[0] & FLAG_REKEY != 0 {
                            tx.rekey();
                        }
                    }
                    (Err(_), false, None) => {
                        // refused, no nonce moved: the sender takes its record back
                        tx = CipherState::new(&KEY);
                        rx = Receiver::new("noise-xx/2", CipherState::new(&KEY), max_body);
                    }
                    (Err(_), true, _) => {
                        tx = CipherState::new(&KEY);
                        rx = Receiver::new("noise-xx/2", CipherState::new(&KEY), max_body);
                    }
                    (got, flip, want) => panic!(
                        "record {:02x?} (bit flipped: {flip}): opened {:?}, the format says {want:?}",
                        &plain[..plain.len().min(16)],
                        got.as_ref().map(|m| m.body().len())
                    ),
                }
            }
        }
    }
    // a real sender's records still open
    let mut s = Sender::new(
        "noise-xx/2",
        CipherState::new(&KEY),
        Padding::None,
        RekeyPolicy {
            messages: 2,
            bytes: u64::MAX,
        },
    );
    let mut r = Receiver::new("noise-xx/2", CipherState::new(&KEY), 64);
    for i in 0..3u8 {
        let f = s.seal(Message::from(vec![i; 3])).expect("seal");
        assert_eq!(r.open(f).expect("open").body(), &[i; 3]);
    }
}

fn info(dialer: bool, limit: &RecvLimit) -> PipeInfo {
    let me = Announcement {
        protocol: ProtocolId::REQ0,
        layers: vec!["noise-xx/2".into()],
    };
    let peer = Announcement {
        protocol: ProtocolId::REP0,
        layers: vec!["noise-xx/2".into()],
    };
    PipeInfo {
        transport: "fuzz",
        local_addr: "a".into(),
        peer_addr: "b".into(),
        local: if dialer { me.clone() } else { peer.clone() },
        peer: if dialer { peer } else { me },
        peer_identity: None,
        recv_max_size: 1 << 16,
        recv_limit: limit.clone(),
        dialer,
        link: sp_core::SocketLink::detached(),
    }
}

/// The prologue both sides compute: the dialer's announcement, then the listener's.
fn prologue() -> Vec<u8> {
    let i = info(true, &RecvLimit::new(0));
    [PROLOGUE_PREFIX, &i.local.encode(), &i.peer.encode()].concat()
}

const DUT_SECRET: [u8; 32] = [9; 32];
const PEER_SECRET: [u8; 32] = [7; 32];

/// What the input does to one message the honest peer sends.
fn mutate(inp: &mut Input<'_>, m: &mut Vec<u8>) -> bool {
    match inp.u8() % 8 {
        0 if !m.is_empty() => {
            let at = inp.u16() as usize % (m.len() * 8);
            m[at / 8] ^= 1 << (at % 8);
            true
        }
        1 => {
            let n = inp.u8() as usize;
            let shorter = n < m.len();
            m.truncate(n);
            shorter
        }
        2 => {
            let extra = inp.short();
            m.extend_from_slice(extra);
            !extra.is_empty()
        }
        3 => {
            let f = inp.chunk().to_vec();
            let changed = f != *m;
            *m = f;
            changed
        }
        _ => false,
    }
}

/// Fuzz target `noise_handshake`: the layer under test (responder or
/// initiator, XX or IK) against a peer that is either bytes from the input
/// (frames split by u16 lengths) or an honest snow peer whose every
/// message the input may mutate. After a handshake that both sides
/// finish, the peer's records (from the input) must open unchanged, and
/// one with a flipped bit must not.
pub fn noise_handshake(data: &[u8]) {
    let mut inp = Input::new(data);
    let mode = inp.u8();
    let pattern = if mode & 1 == 0 {
        Pattern::XX
    } else {
        Pattern::IK
    };
    let dialer = mode & 2 != 0;
    let honest = mode & 4 != 0;
    // an IK dialer admits the listener's key it was given, whatever its
    // allow-list says (NoiseConfig::remote_static)
    let allowed = mode & 8 == 0 || (pattern == Pattern::IK && dialer);
    let dut_key = StaticKeypair::from_secret(DUT_SECRET);
    let dut_public = dut_key.public();
    let peer_key = StaticKeypair::from_secret(PEER_SECRET);
    let mut cfg = NoiseConfig::new(dut_key).pattern(pattern);
    if mode & 8 == 0 {
        cfg = cfg.allow(peer_key.public());
    }
    if pattern == Pattern::IK && dialer {
        cfg = cfg.remote_static(peer_key.public());
    }
    if mode & 16 != 0 {
        cfg = cfg.handshake_frame_limit(inp.u8() as usize);
    }
    let limit = RecvLimit::new(1 << 16);
    let (to_peer_tx, mut to_peer) = mpsc::unbounded::<Message>();
    let (to_dut, from_peer) = mpsc::unbounded::<sp_core::Result<Message>>();
    let conn = Connection {
        tx: Box::pin(to_peer_tx.sink_map_err(|_| Error::ConnectionClosed)),
        rx: Box::pin(from_peer),
        info: info(dialer, &limit),
    };
    let dut = Noise::new(cfg).handshake(conn);

    futures::executor::block_on(async move {
        if !honest {
            // everything the input holds, as frames; then the peer hangs up
            let mut n = 0;
            while !inp.is_empty() && n < 16 {
                n += 1;
                let _ = to_dut.unbounded_send(Ok(Message::from(inp.chunk())));
            }
            drop(to_dut);
            drop(to_peer);
            if let Ok(conn) = dut.await {
                panic!(
                    "a handshake finished against bytes that know no key: {:?}",
                    conn.info
                );
            }
            return;
        }
        let peer = async move {
            let params = match pattern {
                Pattern::XX => "Noise_XX_25519_ChaChaPoly_BLAKE2s",
                Pattern::IK => "Noise_IK_25519_ChaChaPoly_BLAKE2s",
            };
            let prologue = prologue();
            let mut b = snow::Builder::new(params.parse().expect("params"))
                .local_private_key(&PEER_SECRET)
                .and_then(|b| b.prologue(&prologue))
                .expect("builder");
            if pattern == Pattern::IK && !dialer {
                b = b.remote_public_key(&dut_public).expect("key");
            }
            let mut hs = if dialer {
                b.build_responder()
            } else {
                b.build_initiator()
            }
            .expect("a snow peer");
            let mut buf = vec![0u8; 65535];
            let mut mutated = false;
            for _ in 0..3 {
                if hs.is_handshake_finished() {
                    break;
                }
                if hs.is_my_turn() {
                    let n = hs.write_message(&[], &mut buf).expect("write");
                    let mut m = buf[..n].to_vec();
                    mutated |= mutate(&mut inp, &mut m);
                    if to_dut.unbounded_send(Ok(Message::from(m))).is_err() {
                        return None;
                    }
                } else {
                    let m = to_peer.next().await?;
                    if hs.read_message(m.wire(), &mut buf).is_err() {
                        return None;
                    }
                }
            }
            if !hs.is_handshake_finished() {
                return None;
            }
            let (k1, k2) = hs.dangerously_get_raw_split();
            // the peer sends with the key for its direction
            let send = if dialer { k2 } else { k1 };
            let mut sender = Sender::new(
                "peer",
                CipherState::new(&send),
                Padding::None,
                RekeyPolicy {
                    messages: 3,
                    bytes: u64::MAX,
                },
            );
            let mut sent = Vec::new();
            let mut n = 0;
            while !inp.is_empty() && n < 8 {
                n += 1;
                let body = inp.short().to_vec();
                let mut wire = sender
                    .seal(Message::from(body.clone()))
                    .expect("seal")
                    .to_vec();
                let flip = inp.u8() & 1 == 1;
                if flip {
                    let at = inp.u16() as usize % (wire.len() * 8);
                    wire[at / 8] ^= 1 << (at % 8);
                }
                sent.push((body, flip));
                let _ = to_dut.unbounded_send(Ok(Message::from(wire)));
            }
            Some((mutated, sent))
        };
        let (result, peer) = futures::join!(dut, peer);
        match (result, peer) {
            (Ok(mut conn), Some((mutated, sent))) => {
                assert!(allowed, "a peer whose key is not allowed got in");
                assert!(!mutated, "a handshake with an altered message finished");
                assert_eq!(conn.info.peer_identity, Some(peer_key.public().to_vec()));
                assert_eq!(limit.get(), sp_crypto::noise::record::frame_limit(1 << 16));
                for (body, flip) in sent {
                    match conn.rx.next().await {
                        Some(Ok(m)) => {
                            assert!(!flip, "opened a record with a flipped bit");
                            assert_eq!(m.body(), &body[..]);
                        }
                        Some(Err(_)) => {
                            assert!(flip, "refused an intact record");
                            break;
                        }
                        None => panic!("the stream ended before the records did"),
                    }
                }
            }
            (Ok(_), None) => {
                panic!("the layer finished a handshake its honest peer did not")
            }
            (Err(_), _) => {}
        }
    });
}
