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
    let mut sent = 0u64;
    while !inp.is_empty() && sent < 32 {
        sent += 1;
        let _ = in_tx.unbounded_send(Ok(Message::from(inp.chunk())));
    }
    drop(in_tx);
    futures::executor::block_on(async {
        let mut got = 0u64;
        let mut closed = false;
        while let Some(m) = io.rx.next().await {
            let m = m.expect("invalid frames are dropped, not errors");
            assert!(!closed, "a message after the close");
            got += 1;
            match Frame::parse(&m).expect("only valid frames are delivered") {
                Frame::Close { reason, .. } => {
                    assert!(reason.len() <= 123 /* a control frame's 125 bytes less the code */);
                    closed = true;
                }
                Frame::Text(_) | Frame::Binary(_) => {}
            }
        }
        assert!(got + stats.dropped() <= sent);
    });
}
