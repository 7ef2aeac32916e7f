//! The end-to-end integrity layer, `integrity/2` (sp-crypto `integrity/`):
//! the wire trailer parser, then the layer's whole receive path (trailer,
//! trusted signer, signature, kind and protocol pair, addressee, freshness,
//! a requester's reply binding, the replay window and its epochs, a REP's
//! memory of the requests it took and the replies it gave) and what it
//! signs, against a model written from the module's docs.
//!
//! The layer runs on a clock the input steps (`Clock`), so every verdict is
//! decided: the model says, for each message, whether it is delivered and
//! if not which counter counts it, and what the layer sends (our requests,
//! replies, and the reply a REP sends again to a resent request), byte for
//! byte.
//!
//! What the model takes as given rather than predicts:
//! * Ed25519: a message not signed by a trusted key for our audience
//!   (random bytes, a flipped bit, another audience) never verifies. The
//!   model knows which messages are genuine by how they were made.
//! * The `msg_id` of what the layer signs is a hash of a secret of the
//!   instance: the target reads it from the message, checks it was never
//!   used before, and checks the rest of the bytes.
//! * The REP's reply cache is used with no budget or with the default one,
//!   which the few small replies here never fill: which entries a full
//!   cache drops is left to `answers.rs`'s tests (it depends on the cost the
//!   cache charges per entry, a private constant).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc;
use futures::{FutureExt, SinkExt, StreamExt};
use sp_core::layer::{LayerHandle, MessageIo, MessageLayer};
use sp_core::{DropReason, Error, Message, Options, ProtocolId, ProtocolSpec};
use sp_crypto::integrity::{
    Clock, Integrity, IntegrityConfig, IntegrityCounts, RecordFields, RecordKind, SignedTrailer,
    Signer, DEFAULT_REPLY_CACHE_BYTES, FORGOTTEN, TRAILER_LEN, VERSION, WINDOW,
};
use sp_crypto::keys::SigningKeypair;
use tower::Layer;

use crate::input::Input;

/// Protocols the layer may sit on; the last is one no registry knows.
const PROTOCOLS: [ProtocolId; 12] = [
    ProtocolId::REQ0,
    ProtocolId::SURVEYOR0,
    ProtocolId::REP0,
    ProtocolId::RESPONDENT0,
    ProtocolId::PUSH0,
    ProtocolId::PULL0,
    ProtocolId::PUB0,
    ProtocolId::SUB0,
    ProtocolId::PAIR0,
    ProtocolId::PAIR1,
    ProtocolId::BUS0,
    FOREIGN,
];
const FOREIGN: ProtocolId = ProtocolId(0x7a70);
/// The peer a socket of the foreign protocol names when the layer is
/// attached to it (standalone, an unknown protocol is its own peer).
const FOREIGN_PEER: ProtocolId = ProtocolId(0x7a71);
const AUDIENCE: &str = "fuzz-service";
/// Wall clock at the start: a realistic date, so offsets never reach 0.
const WALL0: u64 = 1_700_000_000_000;
/// At most this many operations per input.
const MAX_OPS: usize = 24;

/// The clocks the layer reads, stepped by the input: the wall clock any
/// way, the monotonic clock forwards.
#[derive(Debug)]
struct FuzzClock {
    wall: AtomicU64,
    mono_ms: AtomicU64,
}

impl Clock for FuzzClock {
    fn wall_ms(&self) -> u64 {
        self.wall.load(Ordering::Relaxed)
    }
    fn monotonic(&self) -> Duration {
        Duration::from_millis(self.mono_ms.load(Ordering::Relaxed))
    }
}

impl FuzzClock {
    fn wall(&self) -> u64 {
        self.wall_ms()
    }
    fn mono(&self) -> u64 {
        self.mono_ms.load(Ordering::Relaxed)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    OneWay,
    Requester,
    Replier,
}

impl Role {
    fn sends(self) -> RecordKind {
        match self {
            Role::OneWay => RecordKind::OneWay,
            Role::Requester => RecordKind::Request,
            Role::Replier => RecordKind::Reply,
        }
    }
    fn takes(self) -> RecordKind {
        match self {
            Role::OneWay => RecordKind::OneWay,
            Role::Requester => RecordKind::Reply,
            Role::Replier => RecordKind::Request,
        }
    }
}

/// The roles the docs give the built-in protocols.
fn builtin_role(p: ProtocolId) -> Option<Role> {
    match p {
        ProtocolId::REQ0 | ProtocolId::SURVEYOR0 => Some(Role::Requester),
        ProtocolId::REP0 | ProtocolId::RESPONDENT0 => Some(Role::Replier),
        FOREIGN => None,
        _ => Some(Role::OneWay),
    }
}

/// The counters, as `IntegrityStats` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reason {
    Unsigned,
    UnknownSigner,
    BadSignature,
    Misdirected,
    Stale,
    UnboundReply,
    Duplicate,
    Replayed,
}

impl Reason {
    fn name(self) -> &'static str {
        match self {
            Reason::Unsigned => "unsigned",
            Reason::UnknownSigner => "unknown_signer",
            Reason::BadSignature => "bad_signature",
            Reason::Misdirected => "misdirected",
            Reason::Stale => "stale",
            Reason::UnboundReply => "unbound_reply",
            Reason::Duplicate => "duplicate",
            Reason::Replayed => "replayed",
        }
    }
}

/// The trailer as the format's docs lay it out (`record.rs`), read without
/// the parser under test: the last `TRAILER_LEN` bytes, version 2, a known
/// kind, and only the fields the kind uses set.
fn model_parse(body: &[u8]) -> Option<([u8; 32], RecordFields, [u8; 64])> {
    let t = body.get(body.len().checked_sub(TRAILER_LEN)?..)?;
    let (version, t) = t.split_first()?;
    let (kind, t) = t.split_first()?;
    let (protocol, t) = t.split_at(2);
    let (peer, t) = t.split_at(2);
    let (key_id, t) = t.split_at(32);
    let (to, t) = t.split_at(32);
    let (msg_id, t) = t.split_at(16);
    let (epoch, t) = t.split_at(8);
    let (seq, t) = t.split_at(8);
    let (ts, t) = t.split_at(8);
    let (valid, t) = t.split_at(4);
    let (reply, sig) = t.split_at(16);
    if *version != VERSION {
        return None;
    }
    let kind = match kind {
        1 => RecordKind::Request,
        2 => RecordKind::Reply,
        3 => RecordKind::OneWay,
        _ => return None,
    };
    // all zeros is the wire's "none"
    let to: Option<[u8; 32]> = match to.iter().any(|&b| b != 0) {
        true => Some(to.try_into().ok()?),
        false => None,
    };
    let in_reply_to: Option<[u8; 16]> = match reply.iter().any(|&b| b != 0) {
        true => Some(reply.try_into().ok()?),
        false => None,
    };
    let valid_for_ms = u32::from_be_bytes(valid.try_into().ok()?);
    let fits = match kind {
        // a reply names its request by msg_id, zeros being "none": a
        // request must have one
        RecordKind::Request => in_reply_to.is_none() && msg_id.iter().any(|&b| b != 0),
        RecordKind::Reply => to.is_some() && in_reply_to.is_some() && valid_for_ms == 0,
        _ => to.is_none() && in_reply_to.is_none() && valid_for_ms == 0,
    };
    if !fits {
        return None;
    }
    let fields = RecordFields {
        kind,
        protocol: ProtocolId(u16::from_be_bytes(protocol.try_into().ok()?)),
        peer_protocol: ProtocolId(u16::from_be_bytes(peer.try_into().ok()?)),
        to,
        msg_id: msg_id.try_into().ok()?,
        epoch: u64::from_be_bytes(epoch.try_into().ok()?),
        seq: u64::from_be_bytes(seq.try_into().ok()?),
        timestamp_ms: u64::from_be_bytes(ts.try_into().ok()?),
        valid_for_ms,
        in_reply_to,
    };
    Some((key_id.try_into().ok()?, fields, sig.try_into().ok()?))
}

/// One (signer, epoch)'s replay state as `window.rs`'s docs describe it.
struct Win {
    highest: u64,
    seen: HashSet<u64>,
    max_ts: u64,
    last_seen: u64,
    floor: Option<u64>,
}

#[derive(Default)]
struct SignerModel {
    epochs: HashMap<u64, Win>,
    /// (epoch, newest timestamp), oldest first.
    forgotten: VecDeque<(u64, u64)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    Seen,
    Forgotten,
    TooManyEpochs,
}

/// A REP's memory of a request it took, and of its reply.
struct Kept {
    keep_until: u64,
    /// (payload, requester, in_reply_to)
    answer: Option<(Vec<u8>, [u8; 32], [u8; 16])>,
}

type RequestKey = ([u8; 32], u64, u64);

/// What the layer's rules say about every message, and what it signs.
struct Model {
    role: Role,
    protocol: ProtocolId,
    peer: ProtocolId,
    /// Signed into our requests.
    valid_for_ms: u32,
    keeps_replies: bool,
    cache: bool,
    our_id: [u8; 32],
    trusted: Vec<[u8; 32]>,
    answered_by: Option<Vec<[u8; 32]>>,
    max_age: u64,
    max_skew: u64,
    max_request_age: u64,
    max_epochs: usize,
    signers: HashMap<[u8; 32], SignerModel>,
    kept: HashMap<RequestKey, Kept>,
    /// Our next sequence number.
    seq: u64,
    /// Requester: the request outstanding (msg_id, addressee).
    waiting: Option<([u8; 16], Option<[u8; 32]>)>,
    /// Requester: a refusal since our last request.
    refused: Option<Reason>,
    /// Replier: the request to answer (msg_id, requester, key).
    answering: Option<([u8; 16], [u8; 32], RequestKey)>,
    counts: IntegrityCounts,
}

/// What the model says becomes of a received message.
enum Verdict {
    Deliver,
    Refuse(Reason),
    /// Refused as a duplicate, and answered again with this
    /// (payload, requester, in_reply_to).
    Reanswer((Vec<u8>, [u8; 32], [u8; 16])),
}

impl Model {
    /// The server our requests are addressed to: the only one allowed.
    fn addressed(&self) -> Option<[u8; 32]> {
        match self.answered_by.as_deref() {
            Some([one]) => Some(*one),
            _ => None,
        }
    }

    /// How old a message of this kind may be.
    fn max_age_of(&self, kind: RecordKind, valid_for_ms: u32) -> u64 {
        if kind == RecordKind::Request {
            self.max_age
                .max(u64::from(valid_for_ms).min(self.max_request_age))
        } else {
            self.max_age
        }
    }

    fn replay(
        &mut self,
        key_id: [u8; 32],
        epoch: u64,
        seq: u64,
        ts: u64,
        now: u64,
    ) -> Result<(), Refusal> {
        let forget_after = self.max_age + 2 * self.max_skew;
        let max_epochs = self.max_epochs;
        let st = self.signers.entry(key_id).or_default();
        if let Some(w) = st.epochs.get_mut(&epoch) {
            if w.floor.is_some_and(|f| ts <= f) {
                return Err(Refusal::Forgotten);
            }
            if (seq <= w.highest && w.highest - seq >= WINDOW) || !w.seen.insert(seq) {
                return Err(Refusal::Seen);
            }
            w.highest = w.highest.max(seq);
            w.max_ts = w.max_ts.max(ts);
            w.last_seen = w.last_seen.max(now);
            return Ok(());
        }
        let floor = match st.forgotten.iter().find(|(e, _)| *e == epoch) {
            Some(&(_, hi)) if ts <= hi => return Err(Refusal::Forgotten),
            Some(&(_, hi)) => Some(hi),
            None => None,
        };
        if st.epochs.len() >= max_epochs {
            // the epoch silent longest (the clock moves between messages,
            // so there is one)
            let (&old, w) = st
                .epochs
                .iter()
                .min_by_key(|(_, w)| w.last_seen)
                .expect("max_epochs is at least 1");
            if now.saturating_sub(w.last_seen) < forget_after {
                return Err(Refusal::TooManyEpochs);
            }
            let max_ts = w.max_ts;
            st.epochs.remove(&old);
            st.forgotten.retain(|(e, _)| *e != old);
            if st.forgotten.len() >= FORGOTTEN {
                st.forgotten.pop_front();
            }
            st.forgotten.push_back((old, max_ts));
        }
        if floor.is_some() {
            st.forgotten.retain(|(e, _)| *e != epoch);
        }
        st.epochs.insert(
            epoch,
            Win {
                highest: seq,
                seen: HashSet::from([seq]),
                max_ts: ts,
                last_seen: now,
                floor,
            },
        );
        Ok(())
    }

    fn refuse(&mut self, r: Reason) -> Verdict {
        let c = &mut self.counts;
        *match r {
            Reason::Unsigned => &mut c.unsigned,
            Reason::UnknownSigner => &mut c.unknown_signer,
            Reason::BadSignature => &mut c.bad_signature,
            Reason::Misdirected => &mut c.misdirected,
            Reason::Stale => &mut c.stale,
            Reason::UnboundReply => &mut c.unbound_reply,
            Reason::Duplicate => &mut c.duplicate,
            Reason::Replayed => &mut c.replayed,
        } += 1;
        if self.role == Role::Requester {
            self.refused = Some(r);
        }
        Verdict::Refuse(r)
    }

    /// The checks of `Shared::verify`, in the documented order. `genuine`:
    /// these exact bytes were signed by a trusted key for our audience.
    fn receive(&mut self, body: &[u8], genuine: bool, wall: u64, mono: u64) -> Verdict {
        let Some((key_id, f, _)) = model_parse(body) else {
            return self.refuse(Reason::Unsigned);
        };
        if !self.trusted.contains(&key_id) {
            return self.refuse(Reason::UnknownSigner);
        }
        if !genuine {
            return self.refuse(Reason::BadSignature);
        }
        if f.kind != self.role.takes()
            || f.protocol != self.peer
            || f.peer_protocol != self.protocol
            || (self.role == Role::Replier && f.to.is_some_and(|to| to != self.our_id))
        {
            return self.refuse(Reason::Misdirected);
        }
        let max_age = self.max_age_of(f.kind, f.valid_for_ms);
        let ts = f.timestamp_ms;
        if ts.saturating_add(max_age) < wall || ts > wall.saturating_add(self.max_skew) {
            return self.refuse(Reason::Stale);
        }
        if self.role == Role::Requester {
            let bound = self.waiting.is_some_and(|(msg_id, to)| {
                f.in_reply_to == Some(msg_id)
                    && f.to == Some(self.our_id)
                    && match (to, &self.answered_by) {
                        (Some(server), _) => key_id == server,
                        (None, Some(set)) => set.contains(&key_id),
                        (None, None) => true,
                    }
            });
            if !bound {
                return self.refuse(Reason::UnboundReply);
            }
        }
        let verdict = self.replay(key_id, f.epoch, f.seq, ts, mono);
        let key = (key_id, f.epoch, f.seq);
        let keeps = self.keeps_replies && self.cache;
        if verdict.is_ok() && keeps {
            let left = ts.saturating_add(max_age).saturating_sub(wall);
            self.kept.insert(
                key,
                Kept {
                    keep_until: mono + left + self.max_skew,
                    answer: None,
                },
            );
        }
        let known = match verdict {
            Err(Refusal::Seen | Refusal::Forgotten) if keeps => {
                self.kept.get(&key).filter(|k| k.keep_until > mono)
            }
            _ => None,
        };
        match (verdict, known) {
            (Ok(()), _) => {
                self.counts.verified += 1;
                if self.role == Role::Replier {
                    self.answering = Some((f.msg_id, key_id, key));
                }
                Verdict::Deliver
            }
            (
                Err(_),
                Some(Kept {
                    answer: Some(a), ..
                }),
            ) => {
                let a = a.clone();
                self.refuse(Reason::Duplicate);
                Verdict::Reanswer(a)
            }
            (Err(_), Some(Kept { answer: None, .. })) => self.refuse(Reason::Duplicate),
            (Err(_), None) => self.refuse(Reason::Replayed),
        }
    }

    /// The fields of the next message we sign (the msg_id is the layer's
    /// secret: filled in from the message).
    fn next_fields(
        &mut self,
        to: Option<[u8; 32]>,
        in_reply_to: Option<[u8; 16]>,
        wall: u64,
        epoch: u64,
    ) -> RecordFields {
        let seq = self.seq;
        self.seq += 1;
        self.counts.signed += 1;
        RecordFields {
            kind: self.role.sends(),
            protocol: self.protocol,
            peer_protocol: self.peer,
            to,
            msg_id: [0; 16],
            epoch,
            seq,
            timestamp_ms: wall,
            valid_for_ms: if self.role == Role::Requester {
                self.valid_for_ms
            } else {
                0
            },
            in_reply_to,
        }
    }
}

/// What the layer sent must be `fields` over `payload` signed by us, byte
/// for byte (Ed25519 is deterministic), with a msg_id never used before.
fn check_signed(
    sent: &Message,
    us: &Signer,
    mut fields: RecordFields,
    payload: &[u8],
    header: &[u8],
    msg_ids: &mut HashSet<[u8; 16]>,
) -> [u8; 16] {
    let t = SignedTrailer::parse(sent.body()).expect("the layer's own trailer parses");
    fields.msg_id = t.fields.msg_id;
    assert!(msg_ids.insert(fields.msg_id), "a msg_id used twice");
    assert_eq!(sent.header(), header, "header of what the layer sent");
    assert_eq!(
        sent.body(),
        &us.sign_with(&fields, payload)[..],
        "what the layer signed vs {fields:?}"
    );
    fields.msg_id
}

/// A timestamp offset from the receiver's wall clock, often at an edge of
/// what freshness allows.
fn offset(inp: &mut Input, max_age: u64, skew: u64) -> i64 {
    let (age, skew) = (max_age as i64, skew as i64);
    match inp.u8() % 8 {
        0 => 0,
        1 => -age,
        2 => -age - 1,
        3 => skew,
        4 => skew + 1,
        5 => i64::from(inp.u16() as i16) * 4,
        6 => i64::from(inp.u32() as i32),
        _ => -age + i64::from(inp.u8() as i8),
    }
}

/// Fuzz target `integrity`: the trailer parser against a reading of the
/// format (and a parsed trailer encodes back to its bytes), then the layer
/// on a socket of the input's protocol (attached as a socket attaches it,
/// or standalone with `on_protocol`) receiving bytes from the input and
/// records signed by trusted, untrusted and wrongly-audienced keys with
/// fields from the input (kind, protocol pair, addressee, epoch, seq,
/// timestamp at freshness' edges, resend validity, reply binding), some
/// with a bit flipped, some sent again byte for byte; sending requests,
/// replies and one-way messages; the clocks stepping. Every delivery and
/// every counter, and every message the layer signs, equal the model's.
pub fn integrity(data: &[u8]) {
    let mut inp = Input::new(data);
    let raw = inp.chunk();
    let parsed = SignedTrailer::parse(raw);
    assert_eq!(
        parsed.ok().map(|t| (t.key_id, t.fields, t.signature)),
        model_parse(raw),
        "trailer parser vs the format"
    );
    if let Ok(t) = parsed {
        assert_eq!(&t.to_bytes()[..], &raw[raw.len() - TRAILER_LEN..]);
    }

    // the socket
    let protocol = PROTOCOLS[inp.u8() as usize % PROTOCOLS.len()];
    let s = inp.u8();
    let asked = match s % 3 {
        0 => None,
        1 => Some(Role::Requester),
        _ => Some(Role::Replier),
    };
    let attached = s & 4 != 0;
    let req_resend = match (s >> 3) & 3 {
        0 => None,
        1 => Some(Duration::from_millis(u64::from(inp.u16()))),
        2 => Some(Duration::from_secs(60)),
        // past u32 milliseconds: the signed validity saturates
        _ => Some(Duration::from_secs(u64::from(u32::MAX))),
    };
    let ours = SigningKeypair::from_bytes(&[6; 32]);
    let a = SigningKeypair::from_bytes(&[5; 32]);
    let b = SigningKeypair::from_bytes(&[7; 32]);
    let untrusted = SigningKeypair::from_bytes(&[8; 32]);
    let answered_by = match (s >> 5) & 3 {
        0 => None,
        1 => Some(vec![a.verifying_key()]),
        2 => Some(vec![a.verifying_key(), b.verifying_key()]),
        // nobody may answer
        _ => Some(vec![]),
    };
    let t = inp.u8();
    let max_epochs = 1 + (t as usize % 3);
    let cache = t & 4 == 0;
    let max_age = u64::from(inp.u16());
    let max_skew = u64::from(inp.u16());
    let max_request_age = u64::from(inp.u16()) * 8;
    let clock = Arc::new(FuzzClock {
        wall: AtomicU64::new(WALL0 + u64::from(inp.u16()) * 1000),
        mono_ms: AtomicU64::new(1_000_000),
    });

    let mut cfg = IntegrityConfig::new(
        ours.clone(),
        [a.verifying_key(), b.verifying_key()],
        AUDIENCE,
    )
    .expect("an audience")
    .max_age(Duration::from_millis(max_age))
    .max_skew(Duration::from_millis(max_skew))
    .max_request_age(Duration::from_millis(max_request_age))
    .max_epochs_per_signer(max_epochs)
    .reply_cache_bytes(if cache { DEFAULT_REPLY_CACHE_BYTES } else { 0 })
    .clock(clock.clone());
    if let Some(keys) = &answered_by {
        cfg = cfg.answered_by(keys.iter().copied());
    }
    let us = cfg.signer().clone();
    let mut layer = match asked {
        None => Integrity::new(cfg),
        Some(Role::Requester) => Integrity::requester(cfg),
        Some(_) => Integrity::replier(cfg),
    };
    let stats = layer.stats();
    let registered_peer = protocol.spec().map(|s| s.peer);
    let (peer, handle) = if attached {
        let peer = registered_peer.unwrap_or(FOREIGN_PEER);
        let mut opts = Options::default();
        opts.req_resend = req_resend;
        let h = LayerHandle::detached("integrity/2")
            .with_protocol(ProtocolSpec::new(protocol, "fuzz", peer))
            .with_options(opts);
        layer.attach(&h);
        (peer, Some(h))
    } else {
        layer = layer.on_protocol(protocol);
        (registered_peer.unwrap_or(protocol), None)
    };
    let role = builtin_role(protocol).unwrap_or(asked.unwrap_or(Role::OneWay));
    // a REQ on a socket resends every req_resend: it signs two of them
    // plus the skew; standalone it knows of no resends
    let valid_for_ms = match req_resend {
        Some(d) if attached && role == Role::Requester && protocol == ProtocolId::REQ0 => {
            let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            ms.saturating_mul(2)
                .saturating_add(max_skew)
                .min(u64::from(u32::MAX)) as u32
        }
        _ => 0,
    };
    let id_of = |k: &SigningKeypair| k.key_id().to_bytes();
    let mut model = Model {
        role,
        protocol,
        peer,
        valid_for_ms,
        keeps_replies: role == Role::Replier && peer == ProtocolId::REQ0,
        cache,
        our_id: id_of(&ours),
        trusted: vec![id_of(&a), id_of(&b)],
        answered_by: answered_by.map(|ks| {
            let mut ids: Vec<[u8; 32]> = ks
                .iter()
                .map(|k| sp_crypto::keys::key_id_of(k).to_bytes())
                .collect();
            ids.sort_unstable();
            ids
        }),
        max_age,
        max_skew,
        max_request_age,
        max_epochs,
        signers: HashMap::new(),
        kept: HashMap::new(),
        seq: 0,
        waiting: None,
        refused: None,
        answering: None,
        counts: IntegrityCounts::default(),
    };
    let epoch = layer.epoch();
    // the keys messages come signed by: trusted, trusted, not trusted, and
    // trusted but for another service
    let signers = [
        (Signer::new(a.clone(), AUDIENCE).expect("audience"), true),
        (Signer::new(b.clone(), AUDIENCE).expect("audience"), true),
        (Signer::new(untrusted, AUDIENCE).expect("audience"), false),
        (Signer::new(a, "another-service").expect("audience"), false),
    ];
    let other_ids = [[3u8; 32], id_of(&b)];

    let (out_tx, mut out_rx) = mpsc::unbounded::<Message>();
    let (in_tx, in_rx) = mpsc::unbounded::<sp_core::Result<Message>>();
    let mut io = layer.layer(MessageIo::new(
        Box::pin(out_tx.sink_map_err(|_| Error::ConnectionClosed)),
        Box::pin(in_rx),
    ));
    let mut msg_ids = HashSet::new();
    // what was received so far (bytes, genuine), for resends and replays
    let mut history: Vec<(Vec<u8>, bool)> = Vec::new();
    // msg_ids of our requests, newest last
    let mut requests: Vec<[u8; 16]> = Vec::new();

    futures::executor::block_on(async {
        for _ in 0..MAX_OPS {
            if inp.is_empty() {
                break;
            }
            let op = inp.u8();
            // every operation takes a millisecond of monotonic time, so no
            // two epochs were last seen at the same instant
            clock.mono_ms.fetch_add(1, Ordering::Relaxed);
            let incoming = match op % 8 {
                0 => Some((inp.chunk().to_vec(), false)),
                1..=3 => {
                    let (signer, genuine) = &signers[inp.u8() as usize % signers.len()];
                    let k = inp.u8();
                    let kind = if k & 0x10 != 0 {
                        role.takes()
                    } else {
                        [RecordKind::Request, RecordKind::Reply, RecordKind::OneWay][k as usize % 3]
                    };
                    let (from, to_p) = match (k >> 5) & 3 {
                        0 | 3 => (peer, protocol),
                        1 => (protocol, peer),
                        _ => (
                            PROTOCOLS[inp.u8() as usize % PROTOCOLS.len()],
                            PROTOCOLS[inp.u8() as usize % PROTOCOLS.len()],
                        ),
                    };
                    let f = inp.u8();
                    let to = match f % 4 {
                        0 if kind != RecordKind::OneWay => Some(model.our_id),
                        0 | 1 => None,
                        2 => Some(model.our_id),
                        _ => Some(other_ids[(f as usize >> 2) % 2]),
                    };
                    let in_reply_to = match (f >> 3) % 4 {
                        0 if kind == RecordKind::Reply => {
                            Some(requests.last().copied().unwrap_or([1; 16]))
                        }
                        0 | 1 => None,
                        2 => Some([2; 16]),
                        // an older request of ours
                        _ => Some(requests.first().copied().unwrap_or([1; 16])),
                    };
                    let valid_for_ms = match (f >> 5) % 4 {
                        0 | 1 => 0,
                        2 => u32::from(inp.u16()) * 8,
                        _ => u32::MAX,
                    };
                    let mut msg_id = [0u8; 16];
                    msg_id[..2].copy_from_slice(&inp.u16().to_be_bytes());
                    // few epochs, so that max_epochs and forgetting are reached
                    let e = u64::from(inp.u8() % 5);
                    let highest = model
                        .signers
                        .get(&signer.key_id())
                        .and_then(|s| s.epochs.get(&e))
                        .map_or(0, |w| w.highest);
                    let sq = inp.u8();
                    let seq = match sq % 4 {
                        0 => u64::from(sq >> 2),
                        1 => highest.saturating_add_signed(i64::from(inp.u8() as i8)),
                        // at the window's lower edge
                        2 => (highest + u64::from(inp.u8() & 3)).saturating_sub(WINDOW),
                        _ => u64::from(inp.u16()) * 8,
                    };
                    let off = offset(&mut inp, model.max_age_of(kind, valid_for_ms), max_skew);
                    let fields = RecordFields {
                        kind,
                        protocol: from,
                        peer_protocol: to_p,
                        to,
                        msg_id,
                        epoch: e,
                        seq,
                        timestamp_ms: clock.wall().saturating_add_signed(off),
                        valid_for_ms,
                        in_reply_to,
                    };
                    let body = inp.short();
                    let mut wire = signer.sign_with(&fields, body);
                    let mut genuine = *genuine;
                    if op & 0x18 == 0x18 {
                        let at = inp.u16() as usize % (wire.len() * 8);
                        wire[at / 8] ^= 1 << (at % 8);
                        genuine = false;
                    }
                    Some((wire, genuine))
                }
                // the very bytes of an earlier message again: a REQ's
                // resend, or an attacker's replay
                4 if !history.is_empty() => {
                    Some(history[inp.u8() as usize % history.len()].clone())
                }
                4 | 5 => {
                    let body = inp.short().to_vec();
                    let wall = clock.wall();
                    let sent = io.tx.send(Message::from(&body[..])).await;
                    let (to, in_reply_to, answered) = match role {
                        Role::Requester => (model.addressed(), None, None),
                        Role::OneWay => (None, None, None),
                        Role::Replier => match model.answering.take() {
                            Some((msg_id, requester, key)) => {
                                (Some(requester), Some(msg_id), Some(key))
                            }
                            None => {
                                assert!(
                                    matches!(sent, Err(Error::State(_))),
                                    "a reply with no request to answer: {sent:?}"
                                );
                                assert!(out_rx.next().now_or_never().is_none(), "nothing sent");
                                continue;
                            }
                        },
                    };
                    sent.expect("signing succeeds");
                    let fields = model.next_fields(to, in_reply_to, wall, epoch);
                    let m = out_rx
                        .next()
                        .now_or_never()
                        .flatten()
                        .expect("the signed message went down");
                    let msg_id = check_signed(&m, &us, fields, &body, &[], &mut msg_ids);
                    if role == Role::Requester {
                        model.waiting = Some((msg_id, to));
                        model.refused = None;
                        requests.push(msg_id);
                    }
                    // a REP keeps the reply for a resend of its request,
                    // while that request could still be fresh
                    if let (Some(key), Some(requester), Some(reply_to)) =
                        (answered, to, in_reply_to)
                    {
                        let mono = clock.mono();
                        if let Some(k) = model.kept.get_mut(&key).filter(|k| k.keep_until > mono) {
                            k.answer = Some((body.clone(), requester, reply_to));
                        }
                    }
                    None
                }
                6 => {
                    let c = inp.u8();
                    let d = inp.u16();
                    if c & 1 != 0 {
                        let step = i64::from(d as i16) * if c & 2 != 0 { 64 } else { 1 };
                        let w = clock.wall().saturating_add_signed(step);
                        clock.wall.store(w, Ordering::Relaxed);
                    }
                    if c & 4 != 0 {
                        clock.mono_ms.fetch_add(
                            u64::from(d) * if c & 8 != 0 { 16 } else { 1 },
                            Ordering::Relaxed,
                        );
                    }
                    None
                }
                _ => {
                    // an error from below: a REQ's "no request outstanding"
                    // after the layer refused the reply that ended it
                    in_tx
                        .unbounded_send(Err(Error::State("fuzz: no request outstanding")))
                        .expect("the layer reads");
                    let e = match io.rx.next().now_or_never() {
                        Some(Some(Err(e))) => e,
                        other => panic!("an error from below must come up: {other:?}"),
                    };
                    match (role, model.refused.take()) {
                        (Role::Requester, Some(r)) => assert!(
                            matches!(e, Error::Layer { .. }) && e.to_string().contains(r.name()),
                            "the refusal ({}) is said: {e}",
                            r.name()
                        ),
                        _ => assert!(matches!(e, Error::State(_)), "passed up unchanged: {e:?}"),
                    }
                    None
                }
            };
            if let Some((wire, genuine)) = incoming {
                let header = if op & 0x40 != 0 {
                    inp.u32().to_be_bytes().to_vec()
                } else {
                    Vec::new()
                };
                let mut m = Message::from(&wire[..]);
                if !header.is_empty() {
                    m.push_header(&header);
                }
                in_tx.unbounded_send(Ok(m)).expect("the layer reads");
                let verdict = model.receive(&wire, genuine, clock.wall(), clock.mono());
                let got = io.rx.next().now_or_never();
                let payload = &wire[..wire.len().saturating_sub(TRAILER_LEN)];
                match verdict {
                    Verdict::Deliver => {
                        let m = match got {
                            Some(Some(Ok(m))) => m,
                            other => panic!("the model delivers this, the layer: {other:?}"),
                        };
                        assert_eq!(m.body(), payload, "delivered payload");
                        assert_eq!(m.header(), &header[..], "header passed through");
                    }
                    Verdict::Refuse(r) => {
                        assert!(
                            got.is_none(),
                            "the model refuses this ({}), the layer: {got:?}",
                            r.name()
                        );
                    }
                    Verdict::Reanswer(_) => {
                        assert!(
                            got.is_none(),
                            "the model answers this again, the layer: {got:?}"
                        );
                    }
                }
                if let Verdict::Reanswer((reply, requester, in_reply_to)) = verdict {
                    let fields =
                        model.next_fields(Some(requester), Some(in_reply_to), clock.wall(), epoch);
                    model.counts.reanswered += 1;
                    let m = out_rx
                        .next()
                        .now_or_never()
                        .flatten()
                        .expect("a resent request is answered again");
                    check_signed(&m, &us, fields, &reply, &header, &mut msg_ids);
                }
                history.push((wire, genuine));
            }
            assert!(
                out_rx.next().now_or_never().is_none(),
                "the layer sent something the model did not"
            );
            assert_eq!(stats.snapshot(), model.counts, "counters");
            if let Some(h) = &handle {
                assert_eq!(
                    h.counters().snapshot().drops(DropReason::Rejected),
                    model.counts.total_dropped(),
                    "refusals counted at the socket"
                );
            }
        }
    });
}
