//! The pipe layer: the handshake on a new pipe, then the sealing sink and
//! opening stream that replace the pipe's halves.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::{Sink, SinkExt, Stream, StreamExt};
use sp_core::layer::{ComponentInfo, Field, Handshake, Overhead, PipeInfo};
use sp_core::{BoxFuture, BoxSink, BoxStream, Connection, Error, Message, Result};
use zeroize::Zeroize;

use super::cipher::{CipherState, MAX_NOISE_MSG, TAG_LEN};
use super::record::{self, Receiver, RekeyPolicy, Sender, RECORD_HEADER};
use super::{b64, params, NoiseConfig, Pattern, PROLOGUE_PREFIX};

/// Handshake messages of XX (3) and IK (2); a bound on the loop whatever
/// snow's state machine says.
const MAX_HANDSHAKE_STEPS: usize = 3;

/// Largest handshake message this side writes: XX message 2 with an empty
/// payload is e (32) + encrypted s (48) + empty payload tag (16).
const HANDSHAKE_OUT: usize = 256;

/// Domain separation for the IK key confirmation: its associated data is
/// this label and the handshake hash, so the tag can stand for nothing else
/// (record pieces authenticate 5 bytes of position) and proves the dialer
/// finished *this* handshake, prologue included.
const IK_CONFIRM_LABEL: &[u8] = b"spstack-noise-ik/3 key confirmation\0";

/// The Noise pipe layer (see the [module docs](super)).
pub struct Noise {
    cfg: Arc<NoiseConfig>,
}

impl Noise {
    /// The layer for this configuration.
    pub fn new(cfg: NoiseConfig) -> Noise {
        Noise { cfg: Arc::new(cfg) }
    }
}

impl Handshake for Noise {
    fn info(&self) -> ComponentInfo {
        // the record header and one piece's tag: sealed in place, so the
        // frame must be one slice; a message of more than 65514 bytes
        // carries one more tag per extra 65519-byte piece, and padding (if
        // configured) comes on top: `frame_overhead`
        ComponentInfo::new(
            self.cfg.pattern.component_name(),
            Overhead::contiguous(RECORD_HEADER, TAG_LEN),
        )
        .with_header(vec![Field::bytes("sealed_flags_len", RECORD_HEADER)])
        .with_trailer(vec![Field::bytes("poly1305_tags", TAG_LEN)])
        .opaque()
    }

    fn frame_overhead(&self, frame_len: usize) -> Option<Overhead> {
        let (head, tail) = record::room(&self.cfg.padding, frame_len);
        Some(Overhead::contiguous(head, tail))
    }

    fn handshake(&self, conn: Connection) -> BoxFuture<'static, Result<Connection>> {
        let cfg = self.cfg.clone();
        Box::pin(run(cfg, conn))
    }
}

/// `"spstack-noise/2\0" || dialer announcement || listener announcement`.
pub(crate) fn prologue(info: &PipeInfo) -> Vec<u8> {
    let (d, l) = if info.dialer {
        (&info.local, &info.peer)
    } else {
        (&info.peer, &info.local)
    };
    let mut p = PROLOGUE_PREFIX.to_vec();
    p.extend_from_slice(&d.encode());
    p.extend_from_slice(&l.encode());
    p
}

/// True for the points whose X25519 product with any clamped scalar is all
/// zeros (the small-order points, in any encoding): DH with them yields a
/// predictable secret (Noise §14). snow 0.10 computes such results without
/// complaint, so they are refused here.
pub(crate) fn is_low_order(point: &[u8; 32]) -> bool {
    // clamping makes every scalar a multiple of the cofactor, so one fixed
    // scalar suffices; constant time is not needed for a public value
    x25519_dalek::x25519([0x55; 32], *point) == [0u8; 32]
}

fn key32(b: &[u8]) -> Option<[u8; 32]> {
    b.try_into().ok()
}

async fn run(cfg: Arc<NoiseConfig>, mut conn: Connection) -> Result<Connection> {
    let name = cfg.pattern.component_name();
    let err = |reason: String| Error::layer(name, reason);
    let limit = conn.info.recv_limit.clone();
    let hs_limit = cfg.handshake_frame_limit.min(MAX_NOISE_MSG);
    limit.set(hs_limit);
    let dialer = conn.info.dialer;

    let prologue = prologue(&conn.info);
    let builder = snow::Builder::new(params(cfg.pattern))
        .local_private_key(cfg.keypair.secret_bytes())
        .and_then(|b| b.prologue(&prologue))
        .map_err(|e| err(format!("cannot set up the handshake: {e}")))?;
    let pinned = match (cfg.pattern, dialer) {
        (Pattern::IK, true) => match cfg.remote_static {
            Some(k) => Some(k),
            None => {
                return Err(err(
                    "an IK dialer needs the listener's static public key; set it with NoiseConfig::remote_static".into(),
                ))
            }
        },
        _ => None,
    };
    let builder = match &pinned {
        Some(k) => builder
            .remote_public_key(k)
            .map_err(|e| err(format!("cannot set the listener's key: {e}")))?,
        None => builder,
    };
    let mut hs = if dialer {
        builder.build_initiator()
    } else {
        builder.build_responder()
    }
    .map_err(|e| err(format!("cannot start the handshake: {e}")))?;

    let admit = |key: &[u8]| -> Result<[u8; 32]> {
        let k = key32(key).ok_or_else(|| err("peer static key is not 32 bytes".into()))?;
        if is_low_order(&k) {
            return Err(err(format!(
                "peer static key {} is a low-order point (all-zero Diffie-Hellman result); refused",
                b64(&k)
            )));
        }
        if cfg.accept_any || cfg.allowed.contains(&k) || pinned == Some(k) {
            Ok(k)
        } else {
            Err(err(format!(
                "peer static key {} is not in the allow-list; add it with NoiseConfig::allow",
                b64(&k)
            )))
        }
    };

    let mut out = [0u8; HANDSHAKE_OUT];
    let mut first_read = true;
    let mut peer_key: Option<[u8; 32]> = None;
    for _ in 0..MAX_HANDSHAKE_STEPS {
        if hs.is_handshake_finished() {
            break;
        }
        if hs.is_my_turn() {
            let n = hs
                .write_message(&[], &mut out)
                .map_err(|e| err(format!("cannot write a handshake message: {e}")))?;
            conn.tx.send(Message::from(&out[..n])).await?;
            continue;
        }
        let frame = read_handshake_frame(&mut conn, hs_limit).await?;
        let bytes = frame.wire();
        if first_read {
            first_read = false;
            // both patterns open the peer's first message with its ephemeral key in clear
            if let Some(e) = bytes.get(..32).and_then(key32) {
                if is_low_order(&e) {
                    return Err(err(format!(
                        "peer ephemeral key {} is a low-order point (all-zero Diffie-Hellman result); refused",
                        b64(&e)
                    )));
                }
            }
        }
        let mut payload = vec![0u8; bytes.len()];
        hs.read_message(bytes, &mut payload).map_err(|e| {
            err(format!(
                "handshake message rejected ({e}): the peer uses another pattern or key, or the SP announcements were altered in transit"
            ))
        })?;
        // check the key as soon as it is known: an XX initiator then never
        // reveals its own identity to a responder it would refuse
        if peer_key.is_none() {
            if let Some(k) = hs.get_remote_static() {
                peer_key = Some(admit(k)?);
            }
        }
    }
    if !hs.is_handshake_finished() {
        return Err(err(
            "the handshake did not finish in the pattern's messages".into(),
        ));
    }
    let peer_key = match peer_key {
        Some(k) => k,
        None => {
            let k = hs
                .get_remote_static()
                .ok_or_else(|| err("the handshake ended without the peer's static key".into()))?;
            admit(k)?
        }
    };

    let mut confirm_ad = IK_CONFIRM_LABEL.to_vec();
    confirm_ad.extend_from_slice(hs.get_handshake_hash());
    let (mut k1, mut k2) = hs.dangerously_get_raw_split();
    // split(): the first key carries initiator-to-responder traffic
    let (send_k, recv_k) = if dialer { (&k1, &k2) } else { (&k2, &k1) };
    let (mut send, mut recv) = (CipherState::new(send_k), CipherState::new(recv_k));
    k1.zeroize();
    k2.zeroize();
    drop(hs);

    if cfg.pattern == Pattern::IK {
        if dialer {
            let tag = send
                .reserve(1)
                .and_then(|n| send.seal_at(n, &confirm_ad, &mut []))
                .map_err(|e| err(format!("cannot seal the key confirmation: {e:?}")))?;
            send.commit(1);
            conn.tx.send(Message::from(&tag[..])).await?;
        } else {
            confirm_ik_dialer(&mut conn, hs_limit, &mut recv, &confirm_ad, &err).await?;
        }
    }

    let max_body = conn.info.recv_max_size;
    limit.set(record::frame_limit(max_body));
    conn.info.peer_identity = Some(peer_key.to_vec());
    let policy = RekeyPolicy {
        messages: cfg.rekey_messages,
        bytes: cfg.rekey_bytes,
    };
    conn.tx = Box::pin(SealSink {
        inner: conn.tx,
        sender: Sender::new(name, send, cfg.padding.clone(), policy),
    });
    conn.rx = Box::pin(OpenStream {
        inner: conn.rx,
        receiver: Receiver::new(name, recv, max_body),
        dead: false,
    });
    tracing::debug!(target: "spstack", layer = name, peer = %b64(&peer_key), "noise handshake complete");
    Ok(conn)
}

/// One handshake frame, refused above `limit` bytes.
async fn read_handshake_frame(conn: &mut Connection, limit: usize) -> Result<Message> {
    let frame = match conn.rx.next().await {
        Some(f) => f?,
        None => return Err(Error::ConnectionClosed),
    };
    // the transport enforced the limit before allocating; a transport
    // without a reader limit (or a frame with a pipe header) still stops here
    if frame.wire().len() > limit {
        return Err(Error::TooLarge {
            size: frame.wire().len() as u64,
            limit,
        });
    }
    Ok(frame)
}

/// The IK listener's proof that the dialer holds this handshake's keys.
///
/// IK message 1 is replayable: it carries the dialer's static key and
/// nothing the listener chose, so reading it and answering message 2
/// proves nothing about who sent it. Only the dialer that made message 1
/// (holding its ephemeral and static secrets) can derive the keys that
/// message 2 leads to; one tag under those keys, over the handshake hash,
/// is the proof. Until it verifies no pipe exists, so a replayer only ever
/// holds a half-open slot, under the handshake deadline like any other.
async fn confirm_ik_dialer(
    conn: &mut Connection,
    limit: usize,
    recv: &mut CipherState,
    ad: &[u8],
    err: &impl Fn(String) -> Error,
) -> Result<()> {
    let frame = read_handshake_frame(conn, limit).await?;
    let tag = frame.wire();
    if tag.len() != TAG_LEN {
        return Err(err(format!(
            "the dialer's key confirmation is {} bytes, not {TAG_LEN}; the peer is broken",
            tag.len()
        )));
    }
    let n = recv
        .reserve(1)
        .map_err(|e| err(format!("cannot open the key confirmation: {e:?}")))?;
    recv.open_at(n, ad, &mut [], tag).map_err(|_| {
        err("the dialer's key confirmation failed: it does not hold this handshake's keys (a replayed IK message 1, or a broken peer)".into())
    })?;
    recv.commit(1);
    Ok(())
}

/// Seals every outgoing message into one frame.
struct SealSink {
    inner: BoxSink,
    sender: Sender,
}

impl Sink<Message> for SealSink {
    type Error = Error;
    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.as_mut().poll_ready(cx)
    }
    fn start_send(mut self: Pin<&mut Self>, m: Message) -> Result<()> {
        let sealed = self.sender.seal(m)?;
        self.inner.as_mut().start_send(sealed)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.as_mut().poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.as_mut().poll_close(cx)
    }
}

/// Opens every incoming frame; after the first bad one, ends.
struct OpenStream {
    inner: BoxStream,
    receiver: Receiver,
    dead: bool,
}

impl Stream for OpenStream {
    type Item = Result<Message>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        if self.dead {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(m))) => match self.receiver.open(m) {
                Ok(m) => Poll::Ready(Some(Ok(m))),
                Err(e) => {
                    self.dead = true;
                    Poll::Ready(Some(Err(e)))
                }
            },
            Poll::Ready(Some(Err(e))) => {
                self.dead = true;
                Poll::Ready(Some(Err(e)))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_order_points_are_detected() {
        // the canonical small-order points of Curve25519 (0, 1, order 8 and
        // the non-canonical p, p+1) and a normal public key
        let zero = [0u8; 32];
        let mut one = [0u8; 32];
        one[0] = 1;
        let order8 = [
            0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f,
            0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16,
            0x5f, 0x49, 0xb8, 0x00,
        ];
        let mut p = [0xffu8; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        let mut p1 = p;
        p1[0] = 0xee;
        for k in [zero, one, order8, p, p1] {
            assert!(is_low_order(&k), "{k:02x?}");
        }
        let good = super::super::StaticKeypair::generate().public();
        assert!(!is_low_order(&good));
    }

    #[test]
    fn snow_accepts_a_low_order_ephemeral_so_we_must_check() {
        // the claim in is_low_order's docs: snow computes an all-zero DH
        // without error, so the check above is needed
        let params = params(Pattern::XX);
        let mut r = snow::Builder::new(params.clone())
            .local_private_key(&[3u8; 32])
            .expect("key")
            .build_responder()
            .expect("responder");
        let mut msg1 = [0u8; 32];
        msg1[0] = 1; // u = 1, order 4
        let mut payload = [0u8; 64];
        assert!(r.read_message(&msg1, &mut payload).is_ok());
        let mut out = [0u8; 256];
        assert!(
            r.write_message(&[], &mut out).is_ok(),
            "snow ran ee with a low-order point"
        );
    }
}
