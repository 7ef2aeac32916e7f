//! WebSocket opcodes end to end: a message layer above the scalability
//! protocol that marks each message TEXT, BINARY or CLOSE, whatever the
//! transports under it (WebSocket, TCP, a device in between).
//!
//! The mark is a 1-byte header in front of the body, declared as the field
//! `opcode`:
//!
//! | byte | meaning | rest of the body |
//! |---|---|---|
//! | `0x01` | text | UTF-8 (checked on send and on receive) |
//! | `0x02` | binary | anything |
//! | `0x08` | close | u16 BE code, then a UTF-8 reason of at most 123 bytes |
//!
//! Sending: build messages with [`text`], [`binary`] and [`close`]; a message
//! built any other way goes out as binary. Receiving: [`Frame::parse`] says
//! what arrived; the body of a received message is the payload (the opcode
//! byte is moved into the message's header). Invalid frames received (bad
//! UTF-8, unknown opcode, short close) are dropped and counted in
//! [`OpcodeStats`]; invalid frames sent fail the send.
//!
//! # A close is a message, not the end of the stream
//!
//! A received close is handed to the application like any other message,
//! with the pipe it came from ([`Message::pipe`]); the layer's stream goes
//! on. What a close ends is for the application to decide, because the
//! layer cannot know it:
//! - on a socket with many peers (REP, PULL, BUS, SURVEYOR...) one peer's
//!   close says nothing about the others, and ending the stream would let
//!   any one client stop a server;
//! - the mark is end to end: through a device, the pipe a close arrives on
//!   is the device's, carrying other peers' messages too;
//! - even a PAIR outlives its peer: a dialer redials, another peer may
//!   connect.
//!
//! So: on a single-peer socket, stop reading at a close if that is the
//! conversation's end; on a directly connected peer, hang up on it with
//! `socket.raw().close_pipe(id)` if it should go; otherwise carry on.
//!
//! ```
//! use sp_ws::{Frame, Opcodes};
//! let layer = Opcodes::new();          // add with SocketBuilder::message_layer
//! let m = sp_ws::text("héllo");
//! assert_eq!(Frame::parse(&m).unwrap(), Frame::Text("héllo"));
//! let c = sp_ws::close(1000, "bye").unwrap();
//! assert_eq!(Frame::parse(&c).unwrap(), Frame::Close { code: 1000, reason: "bye" });
//! # let _ = layer;
//! ```

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::{Sink, Stream};
use sp_core::layer::{ComponentInfo, Field, MessageIo, MessageLayer, Overhead};
use sp_core::{BoxSink, BoxStream, Error, Message, Result};

/// Text opcode.
pub const OP_TEXT: u8 = 0x01;
/// Binary opcode.
pub const OP_BINARY: u8 = 0x02;
/// Close opcode.
pub const OP_CLOSE: u8 = 0x08;
/// Longest close reason, in bytes (a WebSocket control frame's 125 minus the code).
pub const MAX_CLOSE_REASON: usize = 123;

/// A close code (RFC 6455 §7.4).
pub type CloseCode = u16;

/// Why a frame is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpcodeError {
    /// The message has no opcode byte at all.
    #[error("message has no opcode byte (was it received without the sp_ws::Opcodes layer?)")]
    Missing,
    /// Not 0x01, 0x02 or 0x08.
    #[error("unknown opcode {0:#04x}")]
    Unknown(u8),
    /// A text frame or close reason that is not UTF-8.
    #[error("text is not valid UTF-8 (at byte {0})")]
    Utf8(usize),
    /// A close frame shorter than its 2-byte code.
    #[error("close frame without its 2-byte code")]
    ShortClose,
    /// A close reason over 123 bytes.
    #[error("close reason of {0} bytes exceeds {MAX_CLOSE_REASON}")]
    ReasonTooLong(usize),
}

impl From<OpcodeError> for Error {
    fn from(e: OpcodeError) -> Error {
        Error::layer(NAME, e.to_string())
    }
}

const NAME: &str = "ws-opcodes/1";

/// What a message carries, seen through the opcode layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A text message.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
    /// A peer closed, with a code and a reason. The socket's stream goes
    /// on: see the module docs for what to do with it.
    Close {
        /// The close code.
        code: CloseCode,
        /// The reason, at most 123 bytes of UTF-8.
        reason: &'a str,
    },
}

impl<'a> Frame<'a> {
    /// Reads a message received through [`Opcodes`] (opcode in the header's
    /// last byte, payload in the body) or built by [`text`], [`binary`] or
    /// [`close`].
    pub fn parse(m: &'a Message) -> Result<Frame<'a>, OpcodeError> {
        let op = *m.header().last().ok_or(OpcodeError::Missing)?;
        decode(op, m.body())
    }
}

fn decode(op: u8, body: &[u8]) -> Result<Frame<'_>, OpcodeError> {
    match op {
        OP_TEXT => std::str::from_utf8(body)
            .map(Frame::Text)
            .map_err(|e| OpcodeError::Utf8(e.valid_up_to())),
        OP_BINARY => Ok(Frame::Binary(body)),
        OP_CLOSE => {
            let (code, reason) = body
                .split_first_chunk::<2>()
                .ok_or(OpcodeError::ShortClose)?;
            if reason.len() > MAX_CLOSE_REASON {
                return Err(OpcodeError::ReasonTooLong(reason.len()));
            }
            let reason =
                std::str::from_utf8(reason).map_err(|e| OpcodeError::Utf8(e.valid_up_to()))?;
            Ok(Frame::Close {
                code: u16::from_be_bytes(*code),
                reason,
            })
        }
        o => Err(OpcodeError::Unknown(o)),
    }
}

fn marked(op: u8, body: &[u8]) -> Message {
    let mut m = Message::from(body);
    m.set_header(&[op]);
    m
}

/// A text message.
pub fn text(s: &str) -> Message {
    marked(OP_TEXT, s.as_bytes())
}

/// A binary message (what a message without a mark is sent as, too).
pub fn binary(b: &[u8]) -> Message {
    marked(OP_BINARY, b)
}

/// A close message: `code`, then `reason` (at most 123 bytes).
pub fn close(code: CloseCode, reason: &str) -> Result<Message, OpcodeError> {
    if reason.len() > MAX_CLOSE_REASON {
        return Err(OpcodeError::ReasonTooLong(reason.len()));
    }
    let mut body = Vec::with_capacity(2 + reason.len());
    body.extend_from_slice(&code.to_be_bytes());
    body.extend_from_slice(reason.as_bytes());
    Ok(marked(OP_CLOSE, &body))
}

/// Counters of the opcode layer.
#[derive(Debug, Default)]
pub struct OpcodeStats {
    dropped: AtomicU64,
    /// The socket's counters, where the drops show too.
    socket: std::sync::OnceLock<sp_core::layer::LayerHandle>,
}

impl OpcodeStats {
    fn drop_one(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        if let Some(h) = self.socket.get() {
            h.dropped(sp_core::DropReason::Rejected);
        }
    }
}

impl OpcodeStats {
    /// Invalid frames received and dropped (bad UTF-8, unknown opcode,
    /// malformed close).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The opcode message layer. Add it with `SocketBuilder::message_layer` on
/// both ends; a device in between forwards the mark untouched.
#[derive(Clone, Debug, Default)]
pub struct Opcodes {
    stats: Arc<OpcodeStats>,
}

impl Opcodes {
    /// A new layer with its own counters.
    pub fn new() -> Opcodes {
        Opcodes::default()
    }
    /// Its counters (shared by every context of the socket).
    pub fn stats(&self) -> Arc<OpcodeStats> {
        self.stats.clone()
    }
}

impl tower::Layer<MessageIo> for Opcodes {
    type Service = MessageIo;
    fn layer(&self, io: MessageIo) -> MessageIo {
        MessageIo::new(
            Box::pin(OpSink { inner: io.tx }),
            Box::pin(OpStream {
                inner: io.rx,
                stats: self.stats.clone(),
            }),
        )
    }
}

impl MessageLayer for Opcodes {
    fn attach(&self, handle: &sp_core::layer::LayerHandle) {
        let _ = self.stats.socket.set(handle.clone());
    }
    fn info(&self) -> ComponentInfo {
        ComponentInfo::new(NAME, Overhead::header(1)).with_header(vec![Field::be("opcode", 1)])
    }
}

struct OpSink {
    inner: BoxSink,
}

/// Moves the mark (the header's last byte, when the header is one byte
/// longer than whole 4-byte backtrace words) to the front of the body, or
/// marks an unmarked message binary.
fn encode(mut m: Message) -> Result<Message> {
    let h = m.header();
    if h.len() % 4 == 1 {
        let op = h[h.len() - 1];
        decode(op, m.body())?;
        let rest = h[..h.len() - 1].to_vec();
        m.clear_header();
        m.prepend_body(&[op]);
        if !rest.is_empty() {
            m.push_header(&rest);
        }
    } else {
        m.prepend_body(&[OP_BINARY]);
    }
    Ok(m)
}

impl Sink<Message> for OpSink {
    type Error = Error;
    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.as_mut().poll_ready(cx)
    }
    fn start_send(mut self: Pin<&mut Self>, m: Message) -> Result<()> {
        let m = encode(m)?;
        self.inner.as_mut().start_send(m)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.as_mut().poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.as_mut().poll_close(cx)
    }
}

struct OpStream {
    inner: BoxStream,
    stats: Arc<OpcodeStats>,
}

impl Stream for OpStream {
    type Item = Result<Message>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        loop {
            let mut m = match self.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(m))) => m,
                other => return other,
            };
            let Some(&op) = m.body().first() else {
                self.stats.drop_one();
                tracing::debug!(target: "spstack", "ws-opcodes: empty message dropped");
                continue;
            };
            if let Err(e) = decode(op, &m.body()[1..]) {
                self.stats.drop_one();
                tracing::debug!(target: "spstack", error = %e, "ws-opcodes: invalid frame dropped");
                continue;
            }
            // the opcode joins the header: the body is the payload, and
            // Frame::parse finds the mark without a copy
            m.body_to_header(1);
            return Poll::Ready(Some(Ok(m)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_moves_the_mark_into_the_body() {
        let m = encode(text("hi")).expect("valid");
        assert!(m.header().is_empty());
        assert_eq!(m.body(), b"\x01hi");
        let plain = encode(Message::from(&b"raw"[..])).expect("valid");
        assert_eq!(plain.body(), b"\x02raw");
        // a raw socket's backtrace stays in the header
        let mut r = binary(b"x");
        r.push_header(&[0x80, 0, 0, 1]);
        let r = encode(r).expect("valid");
        assert_eq!(r.header(), &[0x80, 0, 0, 1]);
        assert_eq!(r.body(), b"\x02x");
    }

    #[test]
    fn invalid_frames_are_refused_on_send() {
        let mut bad = Message::from(&[0xff, 0xfe][..]);
        bad.set_header(&[OP_TEXT]);
        assert!(matches!(encode(bad), Err(Error::Layer { .. })));
        assert_eq!(
            close(1000, &"x".repeat(124)).expect_err("too long"),
            OpcodeError::ReasonTooLong(124)
        );
        assert_eq!(decode(0x08, &[3]), Err(OpcodeError::ShortClose));
        assert_eq!(decode(0x09, b""), Err(OpcodeError::Unknown(9)));
    }
}
