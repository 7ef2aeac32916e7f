//! Network-level targets, as libzmq's fuzzers are: a real socket listens
//! (on an in-memory stream transport, so no system call stands between the
//! fuzzer and the code), the fuzz input is everything a peer writes on one
//! connection, and then the socket must still serve a good peer.
//!
//! The runtime and the sockets are made once per process; each input opens
//! a connection, writes, hangs up, waits for the socket to close its end,
//! then runs one honest exchange on a fresh connection.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use sp_core::{Error, ProtocolId, Socket, SocketBuilder};
use sp_protocols::pubsub::{Sub0, SubControl};
use sp_protocols::{raw, Plain, Rep0, Respondent0, Respondent0Raw};
use sp_transports::Framed;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, Mutex};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::input::Input;
use crate::mem::{mem_streams, MemConnector};

/// Far longer than any step takes: past it the socket is stuck (a hang is
/// a finding, reported as a panic).
pub(crate) const LIMIT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The application answers each request with its body (REP, RESPONDENT).
    Echo,
    /// The application only receives (PULL, SUB).
    Deliver,
}

struct Server {
    socket: Socket,
    conn: MemConnector,
    kind: Kind,
    /// The SP header a good peer sends.
    peer: ProtocolId,
    /// Bodies the application received.
    got: Mutex<mpsc::UnboundedReceiver<Vec<u8>>>,
}

/// The application: receives forever (until the socket closes), records
/// what it got, answers when the protocol answers.
pub(crate) fn serve(socket: Socket, kind: Kind) -> mpsc::UnboundedReceiver<Vec<u8>> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match socket.recv().await {
                Ok(m) => {
                    let _ = tx.send(m.body().to_vec());
                    if kind == Kind::Echo {
                        let _ = socket.send(m.body().to_vec()).await;
                    }
                }
                Err(Error::Closed) => return,
                Err(_) => tokio::task::yield_now().await,
            }
        }
    });
    rx
}

pub(crate) fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
}

struct Tcp {
    rt: Runtime,
    servers: Vec<Server>,
}

fn tcp() -> &'static Tcp {
    static H: OnceLock<Tcp> = OnceLock::new();
    H.get_or_init(|| {
        let rt = runtime();
        let servers = rt.block_on(async {
            let sub = Sub0::new();
            let specs: Vec<(SocketBuilder, Kind, ProtocolId)> = vec![
                (
                    SocketBuilder::new(raw::Rep0Raw).cooked(Rep0),
                    Kind::Echo,
                    ProtocolId::REQ0,
                ),
                (
                    SocketBuilder::new(raw::Pull0Raw).cooked(Plain::PULL0),
                    Kind::Deliver,
                    ProtocolId::PUSH0,
                ),
                (
                    SocketBuilder::new(sub.raw_protocol()).cooked(sub),
                    Kind::Deliver,
                    ProtocolId::PUB0,
                ),
                (
                    SocketBuilder::new(Respondent0Raw).cooked(Respondent0),
                    Kind::Echo,
                    ProtocolId::SURVEYOR0,
                ),
            ];
            let mut servers = Vec::new();
            for (b, kind, peer) in specs {
                let (streams, conn) = mem_streams();
                let socket = b
                    .transport(Arc::new(Framed::new(streams, &["fuzz"])))
                    .build();
                if let Some(subs) = socket.control::<SubControl>() {
                    subs.subscribe(b"").expect("subscribe to everything");
                }
                socket.listen("fuzz://fuzz:1").await.expect("listen");
                let got = Mutex::new(serve(socket.clone(), kind));
                servers.push(Server {
                    socket,
                    conn,
                    kind,
                    peer,
                    got,
                });
            }
            servers
        });
        Tcp { rt, servers }
    })
}

/// Writes `bytes` as the peer, hangs up, and reads until the socket closes
/// its end too.
pub(crate) async fn peer_writes(io: DuplexStream, bytes: &[u8]) {
    let (mut r, mut w) = tokio::io::split(io);
    let write = async {
        let _ = w.write_all(bytes).await;
        let _ = w.shutdown().await;
    };
    let drain = async {
        let mut b = [0u8; 4096];
        while let Ok(n) = r.read(&mut b).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::join!(write, drain);
}

pub(crate) fn frame(body: &[u8]) -> Vec<u8> {
    [&(body.len() as u64).to_be_bytes()[..], body].concat()
}

pub(crate) static GOOD: AtomicU32 = AtomicU32::new(0);

impl Server {
    /// One honest exchange on a new connection.
    async fn serves_a_good_peer(&self) {
        let n = GOOD.fetch_add(1, Ordering::Relaxed) & 0x7fff_ffff;
        let body = format!("good peer {n}").into_bytes();
        let msg = match self.kind {
            // a request or survey id, then the body
            Kind::Echo => [&(n | 0x8000_0000).to_be_bytes()[..], &body].concat(),
            Kind::Deliver => body.clone(),
        };
        let (mut r, mut w) = tokio::io::split(self.conn.connect());
        let p = self.peer.0.to_be_bytes();
        w.write_all(&[0, b'S', b'P', 0, p[0], p[1], 0, 0])
            .await
            .expect("the socket reads a good header");
        let mut hdr = [0u8; 8];
        r.read_exact(&mut hdr)
            .await
            .expect("the socket announces itself");
        assert_eq!(&hdr[..4], b"\0SP\0");
        w.write_all(&frame(&msg)).await.expect("a good frame");
        match self.kind {
            Kind::Echo => {
                let mut len = [0u8; 8];
                r.read_exact(&mut len).await.expect("a reply");
                let mut reply = vec![0u8; (u64::from_be_bytes(len) as usize).min(1 << 16)];
                r.read_exact(&mut reply).await.expect("the reply's bytes");
                assert_eq!(reply, msg, "the reply to a good request");
            }
            Kind::Deliver => {
                let mut got = self.got.lock().await;
                loop {
                    let m = got.recv().await.expect("the application runs");
                    if m == body {
                        break;
                    }
                }
            }
        }
        // hang up (dropping a split half would not) and wait for the socket to
        let _ = w.shutdown().await;
        let mut sink = [0u8; 256];
        while let Ok(n) = r.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
        // what the application received is not kept from one input to the next
        let mut got = self.got.lock().await;
        while got.try_recv().is_ok() {}
    }
}

/// Fuzz target `socket_tcp`: everything a peer writes on a TCP-framed
/// connection (SP header, layer list, length-prefixed frames with protocol
/// headers) into a listening REP, PULL, SUB or RESPONDENT socket.
pub fn socket_tcp(data: &[u8]) {
    let h = tcp();
    let mut inp = Input::new(data);
    let s = &h.servers[inp.u8() as usize % h.servers.len()];
    let bytes = inp.rest();
    h.rt.block_on(async {
        if tokio::time::timeout(LIMIT, peer_writes(s.conn.connect(), bytes))
            .await
            .is_err()
        {
            panic!("the socket kept a connection open after its peer hung up");
        }
        if tokio::time::timeout(LIMIT, s.serves_a_good_peer())
            .await
            .is_err()
        {
            panic!("a good peer was not served after the fuzz input");
        }
        // both connections were closed by the socket (their reads ended);
        // a pipe's removal may be counted just after its stream closes
        let st = s.socket.stats();
        assert!(
            st.pipes_opened - st.pipes_closed <= 1,
            "pipes left in the socket: {st:?}"
        );
    });
}

struct Ws {
    rt: Runtime,
    conn: MemConnector,
}

fn ws() -> &'static Ws {
    static H: OnceLock<Ws> = OnceLock::new();
    H.get_or_init(|| {
        let rt = runtime();
        let conn = rt.block_on(async {
            let (streams, conn) = mem_streams();
            let socket = SocketBuilder::new(raw::Rep0Raw)
                .cooked(Rep0)
                .transport(Arc::new(sp_ws::Ws::new(streams)))
                .build();
            socket.listen("ws://fuzz:1/sp").await.expect("listen");
            // the receiver is dropped: replies are checked on the wire
            drop(serve(socket.clone(), Kind::Echo));
            // the socket lives as long as the process, through its task
            std::mem::forget(socket);
            conn
        });
        Ws { rt, conn }
    })
}

async fn ws_good_peer(conn: &MemConnector) {
    let n = GOOD.fetch_add(1, Ordering::Relaxed) & 0x7fff_ffff;
    let mut req = "ws://fuzz:1/sp".into_client_request().expect("a request");
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "rep.sp.nanomsg.org".parse().expect("a header value"),
    );
    let (mut ws, _) = tokio_tungstenite::client_async(req, conn.connect())
        .await
        .expect("the upgrade of a good peer");
    let msg = [&(n | 0x8000_0000).to_be_bytes()[..], b"good peer"].concat();
    ws.send(WsMessage::Binary(msg.clone().into()))
        .await
        .expect("send");
    loop {
        match ws.next().await {
            Some(Ok(WsMessage::Binary(b))) => {
                assert_eq!(&b[..], &msg[..], "the reply to a good request");
                break;
            }
            Some(Ok(_)) => continue,
            other => panic!("no reply to a good request: {other:?}"),
        }
    }
    let _ = ws.close(None).await;
    while let Some(Ok(_)) = ws.next().await {}
}

/// Fuzz target `ws_upgrade`: everything a client writes on a `ws://`
/// connection (the HTTP upgrade request head, then WebSocket frames) into a
/// listening REP socket, as its port router, the handshake and the pipe's
/// driver see it.
pub fn ws_upgrade(data: &[u8]) {
    let h = ws();
    h.rt.block_on(async {
        if tokio::time::timeout(LIMIT, peer_writes(h.conn.connect(), data))
            .await
            .is_err()
        {
            panic!("the socket kept a connection open after its peer hung up");
        }
        if tokio::time::timeout(LIMIT, ws_good_peer(&h.conn))
            .await
            .is_err()
        {
            panic!("a good peer was not served after the fuzz input");
        }
    });
}
