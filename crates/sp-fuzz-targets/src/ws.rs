//! What a WebSocket peer controls above the framing (sp-ws): the
//! subprotocol token that names its protocol and layer list, and the
//! opcode message layer's one-byte header.

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use sp_core::layer::MessageIo;
use sp_core::{Error, Message, ProtocolId};
use sp_ws::{Frame, Opcodes};
use tower::Layer;

use crate::input::Input;

/// Fuzz target `ws_message`: subprotocol tokens (parsed, and ours read
/// back), then messages through the opcode layer's receive path.
pub fn ws_message(data: &[u8]) {
    let mut inp = Input::new(data);
    let token = String::from_utf8_lossy(inp.chunk()).into_owned();
    if let Some(a) = sp_ws::parse_subprotocol(&token) {
        // a token we would send for what it names reads back the same
        let ours = sp_ws::subprotocol(a.protocol, &a.layers);
        assert_eq!(sp_ws::parse_subprotocol(&ours), Some(a));
    }
    let layers: Vec<String> = (0..inp.u8() % 4)
        .map(|_| String::from_utf8_lossy(inp.short()).into_owned())
        .collect();
    for p in [ProtocolId::REP0, ProtocolId::PAIR1, ProtocolId::SUB0] {
        let t = sp_ws::subprotocol(p, &layers);
        if let Some(a) = sp_ws::parse_subprotocol(&t) {
            assert_eq!(a.protocol, p);
        }
    }

    let layer = Opcodes::new();
    let stats = layer.stats();
    let (in_tx, in_rx) = mpsc::unbounded::<sp_core::Result<Message>>();
    let (out_tx, _out_rx) = mpsc::unbounded::<Message>();
    let mut io = layer.layer(MessageIo::new(
        Box::pin(out_tx.sink_map_err(|_| Error::ConnectionClosed)),
        Box::pin(in_rx),
    ));
    // what the format says of each message: its opcode byte, then a
    // payload that is UTF-8 for text, and for a close a 2-byte code and at
    // most 123 bytes of UTF-8 reason; anything else is dropped. A close is a
    // message like the others: the stream goes on after it (one peer's close
    // says nothing of a socket's other peers)
    let valid = |m: &[u8]| match m.split_first() {
        Some((1, p)) => std::str::from_utf8(p).is_ok(),
        Some((2, _)) => true,
        Some((8, p)) => p.len() >= 2 && p.len() - 2 <= 123 && std::str::from_utf8(&p[2..]).is_ok(),
        _ => false,
    };
    let mut want = Vec::new();
    let mut dropped = 0u64;
    let mut sent = 0u64;
    while !inp.is_empty() && sent < 32 {
        sent += 1;
        let m = inp.chunk();
        if valid(m) {
            want.push(m.to_vec());
        } else {
            dropped += 1;
        }
        let _ = in_tx.unbounded_send(Ok(Message::from(m)));
    }
    drop(in_tx);
    futures::executor::block_on(async {
        let mut got = Vec::new();
        while let Some(m) = io.rx.next().await {
            let m = m.expect("invalid frames are dropped, not errors");
            // the opcode moved to the header, the payload is the body
            Frame::parse(&m).expect("only valid frames are delivered");
            let mut wire = m.header().to_vec();
            wire.extend_from_slice(m.body());
            got.push(wire);
        }
        assert_eq!(got, want, "delivered vs the format");
        assert_eq!(stats.dropped(), dropped, "drops counted");
    });
}
