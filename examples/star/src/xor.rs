//! `xor/1`: a pipe layer that scrambles every frame with a keystream. Not
//! cryptography (use spstack's Noise layer for that): it exists to show the
//! shape of a layer that transforms frames in place.
//!
//! * Its handshake sends one frame, an 8-byte random half of the key, and
//!   reads the peer's: both sides then hold the same key.
//! * It declares `Overhead::contiguous`: the socket hands it every frame in
//!   one unique slice (copying once only when a frame is shared or lacks
//!   room), so it XORs `wire_mut()` where it lies.
//! * It declares itself opaque: `describe` reports what it carries as
//!   opaque bytes rather than decoding them as the protocol's header.

use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{Sink, SinkExt, Stream, StreamExt};
use spstack::layer::{ComponentInfo, Handshake, Overhead, PipeLayer};
use spstack::{BoxFuture, BoxSink, BoxStream, Connection, Error, Message, Result};

/// The layer's name, as both sides announce it.
pub const NAME: &str = "xor/1";

/// The pipe layer.
pub fn layer() -> PipeLayer<Xor> {
    PipeLayer::new(Xor)
}

/// The handshake and the frame transform.
#[derive(Clone, Copy, Debug, Default)]
pub struct Xor;

fn random_u64() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

impl Handshake for Xor {
    fn info(&self) -> ComponentInfo {
        ComponentInfo::new(NAME, Overhead::contiguous(0, 0)).opaque()
    }

    fn handshake(&self, mut conn: Connection) -> BoxFuture<'static, Result<Connection>> {
        Box::pin(async move {
            let mine = random_u64();
            conn.tx.send(Message::from(&mine.to_be_bytes()[..])).await?;
            let theirs = conn.rx.next().await.ok_or(Error::ConnectionClosed)??;
            let t: [u8; 8] = theirs
                .body()
                .try_into()
                .map_err(|_| Error::layer(NAME, "the key half is not 8 bytes"))?;
            let key = mine ^ u64::from_be_bytes(t);
            conn.tx = Box::pin(Scramble {
                inner: conn.tx,
                key,
                n: 0,
            });
            conn.rx = Box::pin(Unscramble {
                inner: conn.rx,
                key,
                n: 0,
            });
            Ok(conn)
        })
    }
}

/// XORs `b` with the keystream of frame `n` (xorshift64*, seeded per frame).
fn apply(key: u64, n: u64, b: &mut [u8]) {
    let mut x = key ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for chunk in b.chunks_mut(8) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let k = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        for (d, s) in chunk.iter_mut().zip(k) {
            *d ^= s;
        }
    }
}

struct Scramble {
    inner: BoxSink,
    key: u64,
    n: u64,
}

impl Sink<Message> for Scramble {
    type Error = Error;
    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.as_mut().poll_ready(cx)
    }
    fn start_send(mut self: Pin<&mut Self>, mut m: Message) -> Result<()> {
        // already one unique slice when the socket prepared it; otherwise
        // (the layer used on its own) this makes it so, once
        m.flatten_frame();
        let (key, n) = (self.key, self.n);
        apply(key, n, m.wire_mut());
        self.n += 1;
        self.inner.as_mut().start_send(m)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.as_mut().poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.as_mut().poll_close(cx)
    }
}

struct Unscramble {
    inner: BoxStream,
    key: u64,
    n: u64,
}

impl Stream for Unscramble {
    type Item = Result<Message>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(mut m))) => {
                let (key, n) = (self.key, self.n);
                apply(key, n, m.wire_mut());
                self.n += 1;
                Poll::Ready(Some(Ok(m)))
            }
            other => other,
        }
    }
}
