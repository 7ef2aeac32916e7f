//! The end-to-end integrity layer (sp-crypto `integrity/`): the wire
//! trailer parser, and the layer's whole receive path (trusted signer,
//! signature, freshness, reply binding, replay window).

use std::collections::{HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use sp_core::layer::MessageIo;
use sp_core::{Error, Message};
use sp_crypto::integrity::{Integrity, IntegrityConfig, RecordFields, SignedTrailer, Signer};
use sp_crypto::integrity::{TRAILER_LEN, WINDOW};
use sp_crypto::keys::SigningKeypair;
use tower::Layer;

use crate::input::Input;

/// Timestamp offsets from now, in ms: stale, fresh, fresh, fresh, too far ahead
/// (the layer's defaults: 30 s old at most, 5 s ahead at most).
const OFFSETS: [i64; 5] = [-3_600_000, -10_000, 0, 2_000, 60_000];

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    OneWay,
    Requester,
    Replier,
}

/// The replay rule of the layer's docs: per (signer, epoch) a sequence
/// number is accepted once, and not at all `WINDOW` or more below the
/// highest seen; at most `max_epochs` epochs (none ages out here: every
/// accepted timestamp is fresh).
struct Model {
    max_epochs: usize,
    epochs: HashMap<u64, (u64, HashSet<u64>)>,
}

impl Model {
    fn accept(&mut self, epoch: u64, seq: u64) -> bool {
        if !self.epochs.contains_key(&epoch) && self.epochs.len() >= self.max_epochs {
            return false;
        }
        let (highest, seen) = self.epochs.entry(epoch).or_insert((seq, HashSet::new()));
        if seq + WINDOW <= *highest || seen.contains(&seq) {
            return false;
        }
        *highest = (*highest).max(seq);
        seen.insert(seq);
        true
    }
}

/// Fuzz target `integrity`: the trailer parser (a parsed trailer encodes
/// back to its bytes), then messages through the layer's receive path:
/// bytes from the input, or records from the input signed by a trusted
/// key, some with a bit flipped. What the layer delivers must be exactly
/// what its rules accept, in order.
pub fn integrity(data: &[u8]) {
    let mut inp = Input::new(data);
    let raw = inp.chunk();
    if let Ok(t) = SignedTrailer::parse(raw) {
        assert_eq!(&t.to_bytes()[..], &raw[raw.len() - TRAILER_LEN..]);
    }

    let mode = inp.u8();
    let role = match mode % 3 {
        0 => Role::OneWay,
        1 => Role::Requester,
        _ => Role::Replier,
    };
    let max_epochs = 1 + (mode as usize >> 2) % 3;
    let trusted = SigningKeypair::from_bytes(&[5; 32]);
    let signer = Signer::new(SigningKeypair::from_bytes(&[5; 32]), "").expect("empty audience");
    let cfg = IntegrityConfig::new(
        SigningKeypair::from_bytes(&[6; 32]),
        [trusted.verifying_key()],
    )
    .max_epochs_per_signer(max_epochs);
    let layer = match role {
        Role::OneWay => Integrity::new(cfg),
        Role::Requester => Integrity::requester(cfg),
        Role::Replier => Integrity::replier(cfg),
    };
    let (out_tx, mut out_rx) = mpsc::unbounded::<Message>();
    let (in_tx, in_rx) = mpsc::unbounded::<sp_core::Result<Message>>();
    let mut io = layer.layer(MessageIo::new(
        Box::pin(out_tx.sink_map_err(|_| Error::ConnectionClosed)),
        Box::pin(in_rx),
    ));

    futures::executor::block_on(async {
        // a requester binds replies to the request it sent last
        let request_id = if role == Role::Requester {
            io.tx
                .send(Message::from(&b"request"[..]))
                .await
                .expect("sign");
            let sent = out_rx.next().await.expect("the signed request");
            let t = SignedTrailer::parse(sent.body()).expect("our own trailer");
            Some(t.fields.msg_id)
        } else {
            None
        };
        let mut model = Model {
            max_epochs,
            epochs: HashMap::new(),
        };
        let mut want: Vec<Vec<u8>> = Vec::new();
        let mut n = 0;
        while !inp.is_empty() && n < 12 {
            n += 1;
            let op = inp.u8();
            let wire = if op % 3 == 0 {
                // bytes that know no key: never accepted
                inp.chunk().to_vec()
            } else {
                let offset = OFFSETS[inp.u8() as usize % OFFSETS.len()];
                let mut msg_id = [0u8; 16];
                msg_id[..2].copy_from_slice(&inp.u16().to_be_bytes());
                let in_reply_to = match inp.u8() % 3 {
                    0 => None,
                    1 => request_id.or(Some([1; 16])),
                    _ => Some([2; 16]),
                };
                let fields = RecordFields {
                    msg_id,
                    // few epochs and nearby sequence numbers: replays and
                    // the window's edge are likely
                    epoch: u64::from(inp.u8() % 4),
                    seq: u64::from(inp.u16()) * 8,
                    timestamp_ms: (now_ms() + offset) as u64,
                    in_reply_to,
                };
                let body = inp.short().to_vec();
                let mut wire = signer.sign_with(&fields, &body);
                let flip = op % 3 == 2;
                if flip {
                    let at = inp.u16() as usize % (wire.len() * 8);
                    wire[at / 8] ^= 1 << (at % 8);
                }
                let fresh = (-30_000..=5_000).contains(&offset);
                let bound = role != Role::Requester || in_reply_to == request_id;
                if !flip && fresh && bound && model.accept(fields.epoch, fields.seq) {
                    want.push(body);
                }
                wire
            };
            in_tx
                .unbounded_send(Ok(Message::from(wire)))
                .expect("the layer reads");
        }
        drop(in_tx);
        let mut got = Vec::new();
        while let Some(m) = io.rx.next().await {
            got.push(m.expect("refusals are dropped, not errors").body().to_vec());
            assert!(got.len() <= n, "more messages out than in");
        }
        assert_eq!(got, want, "delivered vs the layer's rules");
    });
}
