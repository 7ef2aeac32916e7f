//! SP length framing over a byte stream (sp-transports `stream.rs`):
//! `[u64 BE length][frame]` for TCP, `[0x01][u64 BE length][frame]` for IPC,
//! read by `FrameReader` in whatever pieces the stream delivers.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::StreamExt;
use sp_core::layer::RecvLimit;
use sp_core::transport::{AllocBudget, PipeConfig};
use sp_core::{Announcement, Error, ProtocolId};
use sp_transports::stream::{FrameReader, Framing};
use tokio::io::{AsyncRead, ReadBuf};

use crate::input::Input;

/// A stream that delivers its bytes at most `chunk` at a time (0: all that
/// fits), so partial prefixes and frames split across reads are exercised.
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut n = self.data.len().min(buf.remaining());
        if self.chunk > 0 {
            n = n.min(self.chunk);
        }
        let (a, b) = self.data.split_at(n);
        buf.put_slice(a);
        self.data = b;
        Poll::Ready(Ok(()))
    }
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    Clean,
    MidFrame,
    BadType,
    TooLarge,
}

/// The frames the format says `d` holds and how the stream ends.
fn model(d: &[u8], framing: Framing, limit: usize) -> (Vec<&[u8]>, End) {
    let plen = if framing == Framing::Ipc { 9 } else { 8 };
    let mut frames = Vec::new();
    let mut at = 0;
    loop {
        let left = &d[at..];
        if left.is_empty() {
            return (frames, End::Clean);
        }
        if left.len() < plen {
            return (frames, End::MidFrame);
        }
        if framing == Framing::Ipc && left[0] != 1 {
            return (frames, End::BadType);
        }
        let len = u64::from_be_bytes(left[plen - 8..plen].try_into().unwrap_or([0xff; 8]));
        if len > limit as u64 {
            return (frames, End::TooLarge);
        }
        let len = len as usize;
        if left.len() - plen < len {
            return (frames, End::MidFrame);
        }
        frames.push(&left[plen..plen + len]);
        at += plen + len;
    }
}

fn classify(e: &Error) -> End {
    match e {
        Error::TooLarge { .. } => End::TooLarge,
        e if e.to_string().contains("ipc message type") => End::BadType,
        e if e.to_string().contains("mid-frame") => End::MidFrame,
        e => panic!("unexpected error reading frames: {e:?}"),
    }
}

/// Fuzz target `stream_frames`: the frames a peer sends on an open TCP or
/// IPC pipe, under a receive limit, in pieces.
pub fn stream_frames(data: &[u8]) {
    let mut inp = Input::new(data);
    let flags = inp.u8();
    let framing = if flags & 1 == 0 {
        Framing::Tcp
    } else {
        Framing::Ipc
    };
    // small limits, the default, and one above the growing-buffer threshold (4 MiB)
    let limit = match (flags >> 1) & 3 {
        0 => inp.u8() as usize,
        1 => inp.u16() as usize,
        2 => 1 << 20,
        _ => (5 << 20) + inp.u16() as usize,
    };
    // the socket's allocation budget decides which path a large frame takes:
    // none (every frame grows as its bytes come), a few KiB (some frames
    // allocated whole, some grown), or enough for any frame whole
    let budget_bytes = match (flags >> 3) & 3 {
        0 => 0,
        1 => inp.u16() as usize,
        2 => 1 << 16,
        _ => 64 << 20,
    };
    let budget = AllocBudget::new(budget_bytes);
    let chunk = inp.u8() as usize;
    let headroom = inp.u8() as usize % 64;
    let stream = inp.rest();
    let cfg = PipeConfig {
        recv_max_size: limit,
        recv_headroom: headroom,
        local: Announcement {
            protocol: ProtocolId::PULL0,
            layers: Vec::new(),
        },
        recv_limit: RecvLimit::new(limit),
        counters: Default::default(),
        alloc_budget: budget.clone(),
        // the reader under test does not exchange headers
        plain_peer_ok: false,
    };
    let (want, want_end) = model(stream, framing, limit);
    let mut reader = FrameReader::new(
        Chunked {
            data: stream,
            chunk,
        },
        framing,
        &cfg,
    );
    let mut got = Vec::new();
    let end = futures::executor::block_on(async {
        // every frame costs at least its prefix, so this bounds the loop
        for _ in 0..=stream.len() / 8 + 1 {
            match reader.next().await {
                Some(Ok(m)) => {
                    assert!(m.header().is_empty(), "a transport frame has no header yet");
                    got.push(m.body().to_vec());
                }
                Some(Err(e)) => {
                    assert!(
                        reader.next().await.is_none(),
                        "the stream ends after an error"
                    );
                    return classify(&e);
                }
                None => return End::Clean,
            }
        }
        panic!(
            "more frames than a stream of {} bytes can hold",
            stream.len()
        );
    });
    // a reader that ended, however, holds none of the budget: a peer that
    // announced a large frame and hung up must not shrink it for the
    // socket's other pipes
    drop(reader);
    assert_eq!(budget.available(), budget_bytes, "budget given back");
    assert_eq!(got.len(), want.len(), "frames read (ended {end:?})");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
    assert_eq!(end, want_end);
}
