//! STAR (mangos' experimental protocol, `0xa0`, its own peer): BUS with
//! forwarding. A send goes to every peer; a member forwards whatever it
//! receives to all its other peers, so every member of a tree of stars gets
//! every message once. The header is a 4-byte hop count (`00 00 00 hops`):
//! a message that has made `ttl` hops is dropped, which bounds a cycle.
//!
//! ```
//! use spstack::routing::{MemPipes, Routed, Routing};
//! use spstack::Message;
//! use spstack_example_star::star::StarRaw;
//!
//! // a member with three peers receives from pipe 2: it keeps the message
//! // and forwards a copy to pipes 1 and 3, one hop further
//! let mut pipes = MemPipes::new(&[1, 2, 3], 8);
//! let mut m = Message::from(vec![0, 0, 0, 0, b'h', b'i']);
//! assert!(matches!(StarRaw.recv(2, &mut m, &mut pipes), spstack::Verdict::Deliver));
//! assert_eq!(m.body(), b"hi");
//! assert_eq!(pipes.queued(1)[0].header(), &[0, 0, 0, 1]);
//! assert_eq!(pipes.queued(3).len(), 1);
//! assert!(pipes.queued(2).is_empty(), "never back to the sender");
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use spstack::layer::{edit_sink, ComponentInfo, CookedContext, Field, MessageIo, Overhead};
use spstack::routing::{Pipes, RecvContext, Routed, Routing};
use spstack::{
    CookedProtocol, CookedSocket, DropReason, Message, PipeEvent, PipeId, ProtocolId, ProtocolSpec,
    RawSocket, SocketBuilder, Verdict,
};

/// STAR's identity: mangos numbers it `(10 << 4)`.
pub const STAR: ProtocolSpec = ProtocolSpec::new(ProtocolId(0xa0), "star", ProtocolId(0xa0));

/// Bytes of the hop-count header.
pub const HOPS: usize = 4;

/// The routing: fan out to every peer but the one a message came from;
/// forward what arrives.
#[derive(Clone, Copy, Debug, Default)]
pub struct StarRaw;

impl Routing for StarRaw {
    fn spec(&self) -> ProtocolSpec {
        STAR
    }

    fn send(&self, msg: Message, pipes: &mut dyn Pipes) -> Routed {
        // a raw send carries its hop count, as a raw receive hands it out
        if msg.header().len() != HOPS {
            return Routed::Dropped(DropReason::Malformed);
        }
        let origin = msg.pipe();
        pipes.broadcast(msg, origin);
        Routed::Queued(None)
    }

    fn recv(&self, pipe: PipeId, msg: &mut Message, cx: &mut dyn RecvContext) -> Verdict {
        let b = msg.body();
        if b.len() < HOPS || b[..3] != [0, 0, 0] {
            return Verdict::Drop(DropReason::Malformed);
        }
        let hops = b[3];
        if hops >= cx.ttl() {
            return Verdict::Drop(DropReason::TtlExceeded);
        }
        msg.body_to_header(HOPS);
        msg.set_header(&[0, 0, 0, hops + 1]);
        // forward to the others; a member alone has nobody to forward to,
        // which is not a loss
        let pipes = cx.pipes();
        if pipes.ids().iter().any(|&p| p != pipe) {
            pipes.broadcast(msg.clone(), Some(pipe));
        }
        Verdict::Deliver
    }

    fn recv_headroom(&self) -> usize {
        0
    }

    fn header_format(&self) -> Vec<Field> {
        vec![Field::be("hops", HOPS)]
    }
}

/// How many peers a cooked STAR socket has, kept current from pipe events
/// (`socket.control::<StarControl>()`).
#[derive(Debug, Default)]
pub struct StarControl {
    peers: AtomicUsize,
}

impl StarControl {
    /// Peers connected now.
    pub fn peers(&self) -> usize {
        self.peers.load(Ordering::Relaxed)
    }
}

/// Cooked STAR: sends start at hop 0 and go to every peer; receives hand out
/// the body. Written on the public seam only ([`RawSocket`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Star;

impl CookedProtocol for Star {
    fn info(&self) -> ComponentInfo {
        ComponentInfo::new("star0", Overhead::NONE)
    }

    fn attach(&self, raw: &RawSocket) -> Arc<dyn CookedSocket> {
        let control = Arc::new(StarControl::default());
        let c = control.clone();
        raw.on_pipe_event(move |ev| {
            match ev {
                PipeEvent::AddPost(..) => {
                    c.peers.fetch_add(1, Ordering::Relaxed);
                }
                PipeEvent::RemovePost(..) => {
                    c.peers.fetch_sub(1, Ordering::Relaxed);
                }
                _ => {}
            }
            true
        });
        Arc::new(StarSocket {
            raw: raw.clone(),
            control,
        })
    }
}

struct StarSocket {
    raw: RawSocket,
    control: Arc<StarControl>,
}

impl CookedSocket for StarSocket {
    fn context(&self) -> CookedContext {
        let io = self.raw.io();
        let rx = io.rx.map(|r| {
            r.map(|mut m| {
                m.clear_header();
                m
            })
        });
        CookedContext {
            // a cooked send: hop 0, to everyone (a reused received message
            // keeps no origin pipe)
            io: MessageIo::new(
                edit_sink(io.tx, |m| {
                    m.set_header(&[0; HOPS]);
                    m.set_pipe(None);
                    Ok(())
                }),
                Box::pin(rx),
            ),
            control: Some(self.control.clone()),
        }
    }
}

fn with_transports(b: SocketBuilder) -> SocketBuilder {
    b.transport(Arc::new(spstack::Tcp))
        .transport(Arc::new(spstack::Ipc))
        .transport(Arc::new(spstack::Inproc))
}

/// A raw STAR socket (a hub, or one side of a device), with tcp, ipc, inproc.
pub fn raw() -> SocketBuilder {
    with_transports(SocketBuilder::new(StarRaw))
}

/// A cooked STAR socket, with tcp, ipc, inproc.
pub fn cooked() -> SocketBuilder {
    raw().cooked(Star)
}
