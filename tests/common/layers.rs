//! Layers written for the tests: two pipe layers and two message layers that
//! exercise the layer API the way real ones (AEAD, signatures) will.
#![allow(dead_code)]

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::{Sink, SinkExt, Stream, StreamExt};
use spstack::layer::{
    ComponentInfo, Field, Handshake, MessageIo, MessageLayer, Overhead, PipeLayer,
};
use spstack::{BoxFuture, BoxSink, BoxStream, Connection, Error, Message, Result};

fn fnv(parts: &[&[u8]], key: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5 ^ key;
    for p in parts {
        for &b in *p {
            h ^= b as u32;
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    h
}

// ---------- pipe layer 1: a length tag the peer checks ----------

/// Prepends the inner frame length (u32 BE); the receiver checks it. Its
/// handshake exchanges one frame ("LT" + version) to prove layers can talk
/// before the pipe joins the socket.
pub struct LengthTag;

impl Handshake for LengthTag {
    fn info(&self) -> ComponentInfo {
        ComponentInfo::new("lentag/1", Overhead::header(4))
            .with_header(vec![Field::be("inner_len", 4)])
    }
    fn handshake(&self, mut conn: Connection) -> BoxFuture<'static, Result<Connection>> {
        Box::pin(async move {
            conn.tx.send(Message::from(&b"LT1"[..])).await?;
            let hello = conn.rx.next().await.ok_or(Error::ConnectionClosed)??;
            if hello.body() != b"LT1" {
                return Err(Error::layer("lentag/1", "bad hello"));
            }
            conn.tx = Box::pin(TagSink(conn.tx));
            conn.rx = Box::pin(TagStream(conn.rx));
            Ok(conn)
        })
    }
}

struct TagSink(BoxSink);
impl Sink<Message> for TagSink {
    type Error = Error;
    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.0.as_mut().poll_ready(cx)
    }
    fn start_send(mut self: Pin<&mut Self>, mut m: Message) -> Result<()> {
        let n = m.frame_len() as u32;
        m.push_frame_header(&n.to_be_bytes());
        self.0.as_mut().start_send(m)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.0.as_mut().poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.0.as_mut().poll_close(cx)
    }
}

struct TagStream(BoxStream);
impl Stream for TagStream {
    type Item = Result<Message>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        match self.0.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(mut m))) => {
                let b = m.body();
                if b.len() < 4
                    || u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize != b.len() - 4
                {
                    return Poll::Ready(Some(Err(Error::layer(
                        "lentag/1",
                        "length tag does not match the frame",
                    ))));
                }
                m.trim_body_front(4);
                Poll::Ready(Some(Ok(m)))
            }
            other => other,
        }
    }
}

// ---------- pipe layer 2: a keyed checksum trailer ----------

/// Appends a keyed FNV-1a checksum (u32 BE). The key is agreed in the
/// handshake from both sides' random halves, so a frame replayed into
/// another pipe fails. Declares that it does not need contiguity.
pub struct Checksum;

impl Handshake for Checksum {
    fn info(&self) -> ComponentInfo {
        ComponentInfo::new("crc/1", Overhead::trailer(4))
            .with_trailer(vec![Field::be("checksum", 4)])
    }
    fn handshake(&self, mut conn: Connection) -> BoxFuture<'static, Result<Connection>> {
        Box::pin(async move {
            let mine = fastrand_u32();
            conn.tx.send(Message::from(&mine.to_be_bytes()[..])).await?;
            let theirs = conn.rx.next().await.ok_or(Error::ConnectionClosed)??;
            let t: [u8; 4] = theirs
                .body()
                .try_into()
                .map_err(|_| Error::layer("crc/1", "bad key frame"))?;
            let key = mine ^ u32::from_be_bytes(t);
            conn.tx = Box::pin(CrcSink(conn.tx, key));
            conn.rx = Box::pin(CrcStream(conn.rx, key));
            Ok(conn)
        })
    }
}

fn fastrand_u32() -> u32 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(7);
    fnv(&[&n.to_le_bytes()], std::process::id())
}

struct CrcSink(BoxSink, u32);
impl Sink<Message> for CrcSink {
    type Error = Error;
    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.0.as_mut().poll_ready(cx)
    }
    fn start_send(mut self: Pin<&mut Self>, mut m: Message) -> Result<()> {
        let sum = fnv(&m.frame_parts(), self.1);
        m.push_frame_trailer(&sum.to_be_bytes());
        self.0.as_mut().start_send(m)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.0.as_mut().poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.0.as_mut().poll_close(cx)
    }
}

struct CrcStream(BoxStream, u32);
impl Stream for CrcStream {
    type Item = Result<Message>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        let key = self.1;
        match self.0.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(mut m))) => {
                let b = m.body();
                if b.len() < 4 {
                    return Poll::Ready(Some(Err(Error::layer(
                        "crc/1",
                        "frame shorter than its checksum",
                    ))));
                }
                let (data, sum) = b.split_at(b.len() - 4);
                if fnv(&[data], key).to_be_bytes() != sum {
                    return Poll::Ready(Some(Err(Error::layer("crc/1", "checksum mismatch"))));
                }
                m.trim_body_back(4);
                Poll::Ready(Some(Ok(m)))
            }
            other => other,
        }
    }
}

// ---------- message layer 1: a per-context sequence number ----------

/// Prepends a u64 BE sequence number per context; records what it receives.
#[derive(Clone, Default)]
pub struct Seq {
    pub seen: Arc<Mutex<Vec<u64>>>,
}

impl MessageLayer for Seq {
    fn info(&self) -> ComponentInfo {
        ComponentInfo::new("seq/1", Overhead::header(8)).with_header(vec![Field::be("seq", 8)])
    }
}

impl tower::Layer<MessageIo> for Seq {
    type Service = MessageIo;
    fn layer(&self, inner: MessageIo) -> MessageIo {
        let seen = self.seen.clone();
        let mut next = 0u64;
        let tx = inner.tx.with(move |mut m: Message| {
            m.prepend_body(&next.to_be_bytes());
            next += 1;
            std::future::ready(Ok::<_, Error>(m))
        });
        let rx = inner.rx.map(move |r| {
            let mut m = r?;
            let b = m.body();
            if b.len() < 8 {
                return Err(Error::layer("seq/1", "missing sequence number"));
            }
            let n = u64::from_be_bytes(b[..8].try_into().unwrap_or_default());
            seen.lock().unwrap().push(n);
            m.trim_body_front(8);
            Ok(m)
        });
        MessageIo::new(Box::pin(tx), Box::pin(rx))
    }
}

// ---------- message layer 2: a 2-byte magic the peer checks ----------

/// Prepends `S` `P`; the peer refuses messages without it.
pub struct Magic;

impl MessageLayer for Magic {
    fn info(&self) -> ComponentInfo {
        ComponentInfo::new("magic/1", Overhead::header(2))
            .with_header(vec![Field::bytes("magic", 2)])
    }
}

impl tower::Layer<MessageIo> for Magic {
    type Service = MessageIo;
    fn layer(&self, inner: MessageIo) -> MessageIo {
        let tx = inner.tx.with(|mut m: Message| {
            m.prepend_body(b"SP");
            std::future::ready(Ok::<_, Error>(m))
        });
        let rx = inner.rx.map(|r| {
            let mut m = r?;
            if !m.body().starts_with(b"SP") {
                return Err(Error::layer("magic/1", "missing magic"));
            }
            m.trim_body_front(2);
            Ok(m)
        });
        MessageIo::new(Box::pin(tx), Box::pin(rx))
    }
}

/// The full test stack on a builder: both pipe layers, both message layers.
pub fn full_stack(b: spstack::SocketBuilder, seq: Seq) -> spstack::SocketBuilder {
    b.pipe_layer(PipeLayer::new(LengthTag))
        .pipe_layer(PipeLayer::new(Checksum))
        .message_layer(seq)
        .message_layer(Magic)
}
