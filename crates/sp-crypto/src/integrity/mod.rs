//! End-to-end integrity: an Ed25519 signature on every message, as a
//! **message layer** above the scalability protocol.
//!
//! ```no_run
//! use sp_crypto::integrity::{Integrity, IntegrityConfig};
//! use sp_crypto::keys::{SigningKeypair, TrustedSigners};
//!
//! # async fn demo(builder: sp_core::SocketBuilder, peer: ed25519_dalek::VerifyingKey) -> Result<(), Box<dyn std::error::Error>> {
//! let me = SigningKeypair::load("client.ed25519.pem".as_ref())?;
//! let trusted = TrustedSigners::from_keys([peer])?;
//! let cfg = IntegrityConfig::new(me, trusted).audience("billing")?;
//! let layer = Integrity::requester(cfg);     // REQ side; `replier` on REP, `new` one-way
//! let stats = layer.stats();                 // drop counters, before the builder takes it
//! let socket = builder.message_layer(layer).build();
//! socket.dial("tcp://10.0.0.5:5555").await?;
//! socket.send(socket.new_message(0)).await?; // new_message: tailroom for the signature
//! let reply = socket.recv().await?;          // verified, or never delivered
//! println!("{} verified, {} dropped as bad signatures", stats.verified(), stats.bad_signature());
//! # let _ = reply; Ok(()) }
//! ```
//!
//! # Where it sits and why
//!
//! Devices (raw REQ/REP, SURVEY, BUS) push and pop routing words in the SP
//! *header* at every hop. This layer works on the *body*, above the
//! protocol, so it signs only what is end to end: devices forward the
//! signature untouched and may change their routing words freely. The end
//! to end identity of a request is the signed `msg_id`, not the SP request
//! id (which is hop-local and unsigned).
//!
//! Within the body the integrity block is a **trailer**: the payload comes
//! first, unchanged, and the block follows it. SUB matches subscriptions
//! against the *start* of the body (the topic), so a signed PUB message
//! still reaches a SUB subscribed to `"weather/"`; the same holds for a raw
//! SUB in a device and for any protocol or tool that looks at the first
//! bytes of the body. Devices still pass the trailer through untouched,
//! as they pass the whole body. (SUB filters below this layer, so a message
//! for a topic nobody subscribed to is dropped there, before any
//! verification, and is not counted here.)
//!
//! # What is signed
//!
//! A canonical, length-prefixed, domain-separated record (see
//! [`encode_record`]): `"spstack/integrity/v1"`, the signer's key id
//! (SHA-256 of its public key), the **audience** (a configured string, e.g.
//! a service name: a message signed for one service does not verify at
//! another), a 128-bit `msg_id`, the sender's random `epoch`, its `seq`
//! (one counter per socket, shared by all contexts), `timestamp_ms`, the
//! optional `in_reply_to` and the body. The audience is not on the wire;
//! both ends must configure the same one.
//!
//! On the wire a fixed [`TRAILER_LEN`]-byte trailer ([`SignedTrailer`]:
//! version, key id, `msg_id`, epoch, seq, timestamp, reply flag,
//! `in_reply_to`, signature) follows the payload: the last `TRAILER_LEN`
//! bytes of the message body. It is declared as this layer's `Overhead`
//! (a trailer) and trailer field list, so `Socket::new_message` reserves
//! tailroom for it (no copy when it is appended) and `Socket::describe`
//! decodes it.
//!
//! # What the receiver refuses
//!
//! Each refused message is dropped, counted in [`IntegrityStats`] and
//! logged (a `tracing` warning with target `"spstack"` and the reason); the
//! stream goes on with the next message. In the order checked:
//!
//! | counter | why |
//! |---|---|
//! | `unsigned` | shorter than the trailer, unknown version, malformed reply flag |
//! | `unknown_signer` | key id not in the [`TrustedSigners`] (an empty set trusts nobody) |
//! | `bad_signature` | `verify_strict` fails: altered trailer or payload, other audience, forged |
//! | `stale` | timestamp older than `max_age` (30 s) or more than `max_skew` (5 s) ahead |
//! | `unbound_reply` | requester only: `in_reply_to` is not this context's outstanding request |
//! | `replayed` | (signer, epoch, seq) already seen, or below the 1024-wide window; or of a forgotten epoch and not newer than its last message; or a new epoch while the signer's `max_epochs` are all active |
//!
//! The replay window is checked last, and only signed, fresh, bound messages
//! update it (authenticate before changing state). Freshness compares the
//! sender's wall clock with ours; the replay state never does: an epoch's
//! window is forgotten only after `max_age + 2 * max_skew` of silence on the
//! monotonic clock, and the forgotten epoch's newest date is kept so its
//! messages stay refused. A wall clock that steps, here or at the sender,
//! lets no replay in and locks no honest sender out for good (see
//! [`Clock`] and `window.rs`). An old reply replayed to
//! a new request is therefore counted `unbound_reply`, the more specific
//! reason.
//!
//! # Replies
//!
//! * [`Integrity::requester`] (REQ, SURVEYOR): records the `msg_id` of each
//!   request a context sends and accepts only replies whose `in_reply_to`
//!   names it. When a REQ reply is refused, the cooked REQ below has already
//!   ended the request; the context's `recv` then fails with an
//!   [`Error::Layer`] saying the reply was rejected (instead of REQ's "no
//!   request outstanding"), and the next request works as usual.
//! * [`Integrity::replier`] (REP, RESPONDENT): remembers the `msg_id` of the
//!   last request a context received and puts it in the reply's
//!   `in_reply_to`.
//! * [`Integrity::new`] (PUSH/PULL, PUB/SUB, BUS, PAIR): one way, no binding.
//!
//! Duplicate suppression has a consequence for REQ resends: a request that
//! reached the replier once is refused as `replayed` if REQ sends the same
//! signed bytes again, so a lost *reply* is not answered twice (at most
//! once execution); a lost *request* is still delivered by the resend.
//!
//! # Costs
//!
//! Per message sent: one copy of the body into a reusable per-context
//! buffer (plain Ed25519 hashes the message twice, so the record must be
//! contiguous; no prehash variant is used), one SHA-256 of 40 bytes for the
//! `msg_id`, one signature. The trailer goes into the message's tailroom
//! when it is not shared and has room (a message from `Socket::new_message`
//! does); otherwise the message is copied once, into a buffer with room for
//! the trailer and for the protocol's header. Per message received: the same
//! record copy, one `verify_strict`, a short lock on the socket-wide replay
//! state; the trailer is cut off without moving the payload.
//!
//! # What it does not do
//!
//! Confidentiality (use the Noise pipe layer, [`crate::noise`]), hiding who
//! signs (the key id is visible to relays unless hops are encrypted), and
//! revocation beyond removing a key from [`TrustedSigners`].

mod clock;
mod record;
mod window;

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::{Signature, VerifyingKey};
use futures::{Sink, Stream};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use sp_core::layer::{ComponentInfo, Field, MessageIo, MessageLayer, Overhead};
use sp_core::{BoxSink, BoxStream, Error, Message, Result, DEFAULT_HEADROOM};

pub use clock::{Clock, SystemClock};
pub use record::{
    encode_record, RecordFields, SignedHeader, SignedTrailer, Signer, DOMAIN, HEADER_LEN,
    MAX_AUDIENCE, TRAILER_LEN, VERSION,
};
pub use window::{FORGOTTEN, WINDOW};

use crate::keys::{hex, SigningKeypair, TrustedSigners};
use window::{Refusal, ReplayGuard};

/// The layer's name, as `Socket::components` and `describe` show it.
pub const LAYER_NAME: &str = "integrity/1";

/// Default `max_age`: a message signed longer ago than this is stale.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(30);
/// Default `max_skew`: a message dated further ahead than this is stale.
pub const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(5);
/// Default bound on epochs (sender restarts / sockets sharing a key)
/// tracked per signer.
pub const DEFAULT_MAX_EPOCHS: usize = 64;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The audience does not fit its u16 length prefix.
    #[error("audience is {0} bytes; the limit is 65535 (use a short service or topic name)")]
    AudienceTooLong(usize),
}

/// What an [`Integrity`] layer signs with, trusts, and tolerates.
#[derive(Clone, Debug)]
pub struct IntegrityConfig {
    signer: Signer,
    trusted: TrustedSigners,
    max_age: Duration,
    max_skew: Duration,
    max_epochs: usize,
    clock: Arc<dyn Clock>,
}

impl IntegrityConfig {
    /// Signs with `key`; accepts messages signed by the `trusted` keys (a
    /// [`TrustedSigners`] or any list of public keys; none trusts nobody).
    /// Weak (small-order) keys are left out with a warning: strict
    /// verification would refuse all their signatures anyway.
    ///
    /// Defaults: an empty audience (set one with
    /// [`IntegrityConfig::audience`]; both ends must agree), `max_age` 30 s,
    /// `max_skew` 5 s, 64 epochs per signer.
    pub fn new(
        key: SigningKeypair,
        trusted: impl IntoIterator<Item = VerifyingKey>,
    ) -> IntegrityConfig {
        let mut set = TrustedSigners::new();
        for k in trusted {
            if set.add(k).is_err() {
                tracing::warn!(
                    target: "spstack",
                    layer = LAYER_NAME,
                    "integrity: not trusting a weak (small-order) Ed25519 public key"
                );
            }
        }
        IntegrityConfig {
            signer: Signer::without_audience(key),
            trusted: set,
            max_age: DEFAULT_MAX_AGE,
            max_skew: DEFAULT_MAX_SKEW,
            max_epochs: DEFAULT_MAX_EPOCHS,
            clock: Arc::new(SystemClock),
        }
    }

    /// Signs and verifies for `audience` (a service, topic or socket name):
    /// a message signed for another audience fails verification
    /// (`bad_signature`), which stops replay across services that share
    /// keys. Errors if it exceeds 65535 bytes.
    pub fn audience(mut self, audience: &str) -> std::result::Result<Self, ConfigError> {
        self.signer = self
            .signer
            .with_audience(audience)
            .ok_or(ConfigError::AudienceTooLong(audience.len()))?;
        Ok(self)
    }

    /// How old a message may be (by its signed timestamp) and still pass.
    pub fn max_age(mut self, d: Duration) -> Self {
        self.max_age = d;
        self
    }

    /// How far in the future a timestamp may be (clock skew) and still pass.
    pub fn max_skew(mut self, d: Duration) -> Self {
        self.max_skew = d;
        self
    }

    /// Epochs tracked per signer (each is a layer instance: a process
    /// restart or another socket with the same key). When all are in use
    /// and none has been silent for `max_age + 2 * max_skew` (measured on
    /// the monotonic clock), messages of a new epoch are refused (counted
    /// `replayed`) until one has. At least 1.
    pub fn max_epochs_per_signer(mut self, n: usize) -> Self {
        self.max_epochs = n.max(1);
        self
    }

    /// The clocks the layer reads ([`SystemClock`] by default): for tests
    /// and simulations that step the wall clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The signer (key id, audience), e.g. to sign test records.
    pub fn signer(&self) -> &Signer {
        &self.signer
    }
}

/// Why a message was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// No (well-formed) integrity trailer.
    Unsigned,
    /// The signature does not verify for this record and audience.
    BadSignature,
    /// Signed by a key that is not trusted.
    UnknownSigner,
    /// Seen before (same signer, epoch and seq), or too old for the window.
    Replayed,
    /// Timestamp too old or too far in the future.
    Stale,
    /// A reply not bound to this context's outstanding request.
    UnboundReply,
}

impl Rejection {
    /// The counter's name.
    pub fn name(self) -> &'static str {
        match self {
            Rejection::Unsigned => "unsigned",
            Rejection::BadSignature => "bad_signature",
            Rejection::UnknownSigner => "unknown_signer",
            Rejection::Replayed => "replayed",
            Rejection::Stale => "stale",
            Rejection::UnboundReply => "unbound_reply",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Default)]
struct Counters {
    unsigned: AtomicU64,
    bad_signature: AtomicU64,
    unknown_signer: AtomicU64,
    replayed: AtomicU64,
    stale: AtomicU64,
    unbound_reply: AtomicU64,
    verified: AtomicU64,
    signed: AtomicU64,
}

/// A snapshot of an [`IntegrityStats`] handle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IntegrityCounts {
    /// Refused: no well-formed trailer.
    pub unsigned: u64,
    /// Refused: signature did not verify.
    pub bad_signature: u64,
    /// Refused: signer not trusted.
    pub unknown_signer: u64,
    /// Refused: replay.
    pub replayed: u64,
    /// Refused: timestamp out of range.
    pub stale: u64,
    /// Refused: reply not bound to the outstanding request.
    pub unbound_reply: u64,
    /// Delivered after verification.
    pub verified: u64,
    /// Signed and sent.
    pub signed: u64,
}

impl IntegrityCounts {
    /// All refusals.
    pub fn total_dropped(&self) -> u64 {
        self.unsigned
            + self.bad_signature
            + self.unknown_signer
            + self.replayed
            + self.stale
            + self.unbound_reply
    }
}

/// Counters of one layer (all contexts of its socket). Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct IntegrityStats(Arc<Counters>);

macro_rules! getters {
    ($($name:ident),*) => {$(
        #[doc = concat!("The `", stringify!($name), "` counter.")]
        pub fn $name(&self) -> u64 {
            self.0.$name.load(Ordering::Relaxed)
        }
    )*};
}

impl IntegrityStats {
    getters!(
        unsigned,
        bad_signature,
        unknown_signer,
        replayed,
        stale,
        unbound_reply,
        verified,
        signed
    );

    /// All counters at once.
    pub fn snapshot(&self) -> IntegrityCounts {
        IntegrityCounts {
            unsigned: self.unsigned(),
            bad_signature: self.bad_signature(),
            unknown_signer: self.unknown_signer(),
            replayed: self.replayed(),
            stale: self.stale(),
            unbound_reply: self.unbound_reply(),
            verified: self.verified(),
            signed: self.signed(),
        }
    }

    /// All refusals.
    pub fn total_dropped(&self) -> u64 {
        self.snapshot().total_dropped()
    }

    fn count(&self, r: Rejection) {
        let c = match r {
            Rejection::Unsigned => &self.0.unsigned,
            Rejection::BadSignature => &self.0.bad_signature,
            Rejection::UnknownSigner => &self.0.unknown_signer,
            Rejection::Replayed => &self.0.replayed,
            Rejection::Stale => &self.0.stale,
            Rejection::UnboundReply => &self.0.unbound_reply,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    OneWay,
    Requester,
    Replier,
}

/// State of one socket's layer, shared by every context's wrapper.
struct Shared {
    signer: Signer,
    trusted: TrustedSigners,
    max_age_ms: u64,
    max_skew_ms: u64,
    epoch: u64,
    /// Secret of this instance from which msg_ids are derived.
    salt: [u8; 32],
    seq: AtomicU64,
    replay: Mutex<ReplayGuard>,
    stats: IntegrityStats,
    clock: Arc<dyn Clock>,
    /// The socket's counters (set when the socket is built).
    socket: std::sync::OnceLock<sp_core::layer::LayerHandle>,
}

/// 32 bytes from the OS RNG; if it fails (it practically never does after
/// boot), a hash of the time, the process id and a counter, which is still
/// distinct per instance, so epochs and msg_ids stay unique.
fn instance_random() -> [u8; 32] {
    let mut b = [0u8; 32];
    if OsRng.try_fill_bytes(&mut b).is_ok() {
        return b;
    }
    static N: AtomicU64 = AtomicU64::new(0);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = Sha256::new();
    h.update(t.to_be_bytes());
    h.update(std::process::id().to_be_bytes());
    h.update(N.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    h.finalize().into()
}

fn duration_ms(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

impl Shared {
    fn msg_id(&self, seq: u64) -> [u8; 16] {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update(seq.to_be_bytes());
        let d = h.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&d[..16]);
        id
    }

    fn reject(&self, r: Rejection, why: &str, key_id: Option<&[u8; 32]>) -> Rejection {
        self.stats.count(r);
        // and where the application looks first: the socket's counters
        if let Some(h) = self.socket.get() {
            h.dropped(sp_core::DropReason::Rejected);
        }
        tracing::warn!(
            target: "spstack",
            layer = LAYER_NAME,
            reason = r.name(),
            signer = key_id.map(|k| hex(&k[..8])).unwrap_or_default(),
            "integrity: dropped a message: {why}"
        );
        r
    }

    /// Checks a received message body (payload, then trailer); on success
    /// returns the trailer.
    fn verify(
        &self,
        body: &[u8],
        expect_reply_to: Option<Option<[u8; 16]>>,
        buf: &mut Vec<u8>,
    ) -> std::result::Result<SignedTrailer, Rejection> {
        let h = SignedTrailer::parse(body)
            .map_err(|why| self.reject(Rejection::Unsigned, why, None))?;
        let Some(key) = self.trusted.get(&h.key_id) else {
            return Err(self.reject(
                Rejection::UnknownSigner,
                "signer is not in the trusted set; add its public key to TrustedSigners if it should be",
                Some(&h.key_id),
            ));
        };
        // the body is at least TRAILER_LEN long: parse checked it
        encode_record(
            buf,
            &h.key_id,
            self.signer.audience(),
            &h.fields,
            &body[..body.len() - TRAILER_LEN],
        );
        let sig = Signature::from_bytes(&h.signature);
        if key.verify_strict(buf, &sig).is_err() {
            return Err(self.reject(
                Rejection::BadSignature,
                "signature does not verify (message altered, forged, or signed for another audience)",
                Some(&h.key_id),
            ));
        }
        let now = self.clock.wall_ms();
        let ts = h.fields.timestamp_ms;
        if ts.saturating_add(self.max_age_ms) < now {
            return Err(self.reject(
                Rejection::Stale,
                "timestamp older than max_age (replay of an old message, or a slow clock at the sender)",
                Some(&h.key_id),
            ));
        }
        if ts > now.saturating_add(self.max_skew_ms) {
            return Err(self.reject(
                Rejection::Stale,
                "timestamp further in the future than max_skew (check the sender's clock)",
                Some(&h.key_id),
            ));
        }
        if let Some(expected) = expect_reply_to {
            if expected.is_none() || h.fields.in_reply_to != expected {
                return Err(self.reject(
                    Rejection::UnboundReply,
                    "reply is not bound to this context's outstanding request",
                    Some(&h.key_id),
                ));
            }
        }
        let verdict = self
            .replay
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .accept(
                &h.key_id,
                h.fields.epoch,
                h.fields.seq,
                ts,
                self.clock.monotonic(),
            );
        match verdict {
            Ok(()) => Ok(h),
            Err(Refusal::Seen) => Err(self.reject(
                Rejection::Replayed,
                "(signer, epoch, seq) already seen or below the replay window",
                Some(&h.key_id),
            )),
            Err(Refusal::Forgotten) => Err(self.reject(
                Rejection::Replayed,
                "of an epoch forgotten after a long silence, and dated no later than its last accepted message (a replay, or the sender's clock stepped back)",
                Some(&h.key_id),
            )),
            Err(Refusal::TooManyEpochs) => Err(self.reject(
                Rejection::Replayed,
                "too many live epochs for this signer (raise max_epochs_per_signer if many sockets share the key)",
                Some(&h.key_id),
            )),
        }
    }
}

/// The integrity message layer. Build one per socket; the socket applies
/// it to every context, and they share its sequence counter, replay
/// windows and stats.
pub struct Integrity {
    shared: Arc<Shared>,
    role: Role,
}

impl fmt::Debug for Integrity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Integrity")
            .field("role", &self.role)
            .field("signer", &hex(&self.shared.signer.key_id()))
            .field("epoch", &self.shared.epoch)
            .finish_non_exhaustive()
    }
}

impl Integrity {
    fn with_role(cfg: IntegrityConfig, role: Role) -> Integrity {
        let epoch_bytes = instance_random();
        let mut e = [0u8; 8];
        e.copy_from_slice(&epoch_bytes[..8]);
        Integrity {
            shared: Arc::new(Shared {
                max_age_ms: duration_ms(cfg.max_age),
                max_skew_ms: duration_ms(cfg.max_skew),
                epoch: u64::from_be_bytes(e),
                salt: instance_random(),
                seq: AtomicU64::new(0),
                // an epoch silent this long can only send fresh messages
                // again if a wall clock stepped; forgetting it is then
                // covered by the forgotten-epoch list (see window.rs)
                replay: Mutex::new(ReplayGuard::new(
                    cfg.max_epochs,
                    cfg.max_age + cfg.max_skew * 2,
                )),
                stats: IntegrityStats::default(),
                clock: cfg.clock.clone(),
                socket: std::sync::OnceLock::new(),
                signer: cfg.signer,
                trusted: cfg.trusted,
            }),
            role,
        }
    }

    /// One-way use (PUSH/PULL, PUB/SUB, BUS, PAIR): signs and verifies, no
    /// reply binding.
    pub fn new(cfg: IntegrityConfig) -> Integrity {
        Integrity::with_role(cfg, Role::OneWay)
    }

    /// The requesting side (REQ, SURVEYOR): a reply is accepted only if it
    /// names the context's outstanding request in `in_reply_to`.
    pub fn requester(cfg: IntegrityConfig) -> Integrity {
        Integrity::with_role(cfg, Role::Requester)
    }

    /// The answering side (REP, RESPONDENT): a reply names the request last
    /// received on its context.
    pub fn replier(cfg: IntegrityConfig) -> Integrity {
        Integrity::with_role(cfg, Role::Replier)
    }

    /// The counters, shared with the layer (take it before the builder does).
    pub fn stats(&self) -> IntegrityStats {
        self.shared.stats.clone()
    }

    /// This instance's random epoch.
    pub fn epoch(&self) -> u64 {
        self.shared.epoch
    }

    /// The signer's key id.
    pub fn key_id(&self) -> [u8; 32] {
        self.shared.signer.key_id()
    }

    /// `body` signed as this layer would send it one way (next `seq` of
    /// this instance, current time, no `in_reply_to`): `body` then the
    /// trailer, in one message body. For tools and tests that put signed messages on a
    /// raw socket. Never fails today; the `Result` leaves room for signers
    /// whose key lives elsewhere (an agent or HSM).
    pub fn sign_message(&self, body: &[u8]) -> Result<Message> {
        let s = &self.shared;
        let seq = s.seq.fetch_add(1, Ordering::Relaxed);
        let fields = RecordFields {
            msg_id: s.msg_id(seq),
            epoch: s.epoch,
            seq,
            timestamp_ms: s.clock.wall_ms(),
            in_reply_to: None,
        };
        let mut buf = Vec::new();
        let trailer = s.signer.sign_into(&fields, body, &mut buf);
        let mut m = Message::with_capacity(DEFAULT_HEADROOM, body.len(), TRAILER_LEN);
        m.body_mut().copy_from_slice(body);
        m.extend_body(&trailer);
        s.stats.0.signed.fetch_add(1, Ordering::Relaxed);
        Ok(m)
    }
}

/// Trailer fields, in wire order, as `Socket::describe` shows them.
fn trailer_fields() -> Vec<Field> {
    vec![
        Field::be("version", 1),
        Field::bytes("signer_key_id", 32),
        Field::bytes("msg_id", 16),
        Field::be("epoch", 8),
        Field::be("seq", 8),
        Field::be("timestamp_ms", 8),
        Field::be("reply_flag", 1),
        Field::bytes("in_reply_to", 16),
        Field::bytes("signature", 64),
    ]
}

impl MessageLayer for Integrity {
    fn attach(&self, handle: &sp_core::layer::LayerHandle) {
        let _ = self.shared.socket.set(handle.clone());
    }
    fn info(&self) -> ComponentInfo {
        // signing and verifying copy the body once into the record
        // Ed25519 signs (counted)
        ComponentInfo::new(LAYER_NAME, Overhead::trailer(TRAILER_LEN))
            .with_trailer(trailer_fields())
            .copying()
    }
}

/// Per-context state shared by the context's two halves.
#[derive(Default)]
struct CtxState {
    /// Requester: msg_id of the outstanding request. Replier: msg_id of the
    /// request being answered.
    current: Option<[u8; 16]>,
    /// Requester: a reply was refused since the last send.
    refused: Option<Rejection>,
}

type Ctx = Arc<Mutex<CtxState>>;

fn lock(c: &Ctx) -> std::sync::MutexGuard<'_, CtxState> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

impl tower::Layer<MessageIo> for Integrity {
    type Service = MessageIo;
    fn layer(&self, io: MessageIo) -> MessageIo {
        let ctx: Ctx = Arc::default();
        MessageIo::new(
            Box::pin(SignSink {
                inner: io.tx,
                shared: self.shared.clone(),
                role: self.role,
                ctx: ctx.clone(),
                buf: Vec::new(),
            }),
            Box::pin(VerifyStream {
                inner: io.rx,
                shared: self.shared.clone(),
                role: self.role,
                ctx,
                buf: Vec::new(),
            }),
        )
    }
}

/// Signs on the way down.
struct SignSink {
    inner: BoxSink,
    shared: Arc<Shared>,
    role: Role,
    ctx: Ctx,
    /// The record under construction, reused across messages.
    buf: Vec<u8>,
}

impl SignSink {
    fn sign(&mut self, mut m: Message) -> Message {
        let s = &self.shared;
        let seq = s.seq.fetch_add(1, Ordering::Relaxed);
        let msg_id = s.msg_id(seq);
        let in_reply_to = match self.role {
            Role::Replier => lock(&self.ctx).current.take(),
            _ => None,
        };
        let fields = RecordFields {
            msg_id,
            epoch: s.epoch,
            seq,
            timestamp_ms: s.clock.wall_ms(),
            in_reply_to,
        };
        let trailer = s.signer.sign_into(&fields, m.body(), &mut self.buf);
        if !m.is_unique() || m.tailroom() < TRAILER_LEN {
            // one copy into a buffer with room for this trailer behind and
            // the protocol's header in front (extend_body alone would copy
            // with no headroom, and the protocol would copy a second time);
            // room the caller reserved beyond that is kept for layers below
            let mut fresh = Message::with_capacity(
                m.headroom().max(DEFAULT_HEADROOM) + m.header().len(),
                m.body().len(),
                m.tailroom().max(TRAILER_LEN),
            );
            fresh.body_mut().copy_from_slice(m.body());
            if !m.header().is_empty() {
                fresh.push_header(m.header());
            }
            fresh.set_pipe(m.pipe());
            m = fresh;
        }
        m.extend_body(&trailer);
        if self.role == Role::Requester {
            let mut c = lock(&self.ctx);
            c.current = Some(msg_id);
            c.refused = None;
        }
        s.stats.0.signed.fetch_add(1, Ordering::Relaxed);
        m
    }
}

impl Sink<Message> for SignSink {
    type Error = Error;
    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.as_mut().poll_ready(cx)
    }
    fn start_send(mut self: Pin<&mut Self>, m: Message) -> Result<()> {
        let m = self.sign(m);
        self.inner.as_mut().start_send(m)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.as_mut().poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.as_mut().poll_close(cx)
    }
}

/// Verifies on the way up; drops and counts what fails.
struct VerifyStream {
    inner: BoxStream,
    shared: Arc<Shared>,
    role: Role,
    ctx: Ctx,
    buf: Vec<u8>,
}

/// Refused messages handled in one poll before yielding, so a flood of
/// garbage cannot hold the executor thread.
const DROP_BUDGET: usize = 64;

impl Stream for VerifyStream {
    type Item = Result<Message>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        let this = self.get_mut();
        for _ in 0..DROP_BUDGET {
            let mut m = match this.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(m))) => m,
                Poll::Ready(Some(Err(Error::State(what)))) if this.role == Role::Requester => {
                    // REQ ends a request when a reply arrives, even one this
                    // layer then refuses: say that, not "send one first"
                    let refused = lock(&this.ctx).refused.take();
                    return Poll::Ready(Some(Err(match refused {
                        Some(r) => Error::layer(
                            LAYER_NAME,
                            format!("the reply to this context's request was refused ({r}) and not delivered; send the request again"),
                        ),
                        None => Error::State(what),
                    })));
                }
                other => return other,
            };
            let expect = match this.role {
                Role::Requester => Some(lock(&this.ctx).current),
                _ => None,
            };
            match this.shared.verify(m.body(), expect, &mut this.buf) {
                Ok(h) => {
                    // parse checked the body holds the trailer; the payload
                    // stays where it is
                    m.trim_body_back(TRAILER_LEN);
                    if this.role == Role::Replier {
                        lock(&this.ctx).current = Some(h.fields.msg_id);
                    }
                    this.shared.stats.0.verified.fetch_add(1, Ordering::Relaxed);
                    return Poll::Ready(Some(Ok(m)));
                }
                Err(r) => {
                    if this.role == Role::Requester {
                        lock(&this.ctx).refused = Some(r);
                    }
                }
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::SinkExt as _;

    fn cfg(key: &SigningKeypair, trusted: &[&SigningKeypair], aud: &str) -> IntegrityConfig {
        IntegrityConfig::new(key.clone(), trusted.iter().map(|k| k.verifying_key()))
            .audience(aud)
            .unwrap()
    }

    fn shared_of(i: &Integrity) -> Arc<Shared> {
        i.shared.clone()
    }

    #[test]
    fn trailer_round_trips_and_declared_overhead_matches() {
        let k = SigningKeypair::generate();
        let s = Signer::new(k.clone(), "svc").unwrap();
        let f = RecordFields {
            msg_id: [3; 16],
            epoch: 0x0102_0304_0506_0708,
            seq: 42,
            timestamp_ms: 1_700_000_000_000,
            in_reply_to: Some([9; 16]),
        };
        let wire = s.sign_with(&f, b"body");
        assert_eq!(wire.len(), 4 + TRAILER_LEN);
        assert_eq!(&wire[..4], b"body", "the payload comes first, unchanged");
        let h = SignedTrailer::parse(&wire).unwrap();
        assert_eq!(h.fields, f);
        assert_eq!(h.key_id, k.key_id());
        assert_eq!(&h.to_bytes()[..], &wire[4..]);
        // parsing the trailer alone gives the same
        assert_eq!(SignedTrailer::parse(&wire[4..]).unwrap(), h);
        // the former names still work
        assert_eq!(HEADER_LEN, TRAILER_LEN);
        let _: SignedHeader = h;
        let layer = Integrity::new(cfg(&k, &[&k], "svc"));
        let info = layer.info();
        assert_eq!(info.overhead.header, 0, "nothing in front of the payload");
        assert_eq!(info.overhead.trailer, TRAILER_LEN);
        assert!(info.header.is_empty());
        let declared: usize = info
            .trailer
            .iter()
            .map(|f| match f.kind {
                sp_core::layer::FieldKind::Uint { width, .. } => width,
                sp_core::layer::FieldKind::Bytes(n) => n,
                sp_core::layer::FieldKind::Backtrace => 0,
            })
            .sum();
        assert_eq!(declared, TRAILER_LEN);
        // describe reads the declared fields back from the end of the body
        let d = sp_core::describe::describe_frame(&[info], &wire);
        assert_eq!(d.error, None);
        assert_eq!(d.body, b"body");
        assert_eq!(d.field("seq").unwrap().bytes, 42u64.to_be_bytes());
        assert_eq!(d.field("signature").unwrap().offset, wire.len() - 64);
    }

    #[test]
    fn parse_refuses_short_unknown_version_and_loose_reply_bytes() {
        assert!(SignedTrailer::parse(&[1u8; TRAILER_LEN - 1]).is_err());
        let k = SigningKeypair::generate();
        let s = Signer::new(k, "a").unwrap();
        let f = RecordFields {
            msg_id: [0; 16],
            epoch: 1,
            seq: 1,
            timestamp_ms: 1,
            in_reply_to: None,
        };
        // a payload in front: offsets count from the start of the trailer
        let good = s.sign_with(&f, b"topic/");
        let t = good.len() - TRAILER_LEN;
        assert_eq!(t, 6);
        assert!(SignedTrailer::parse(&good).is_ok());
        let mut v = good.clone();
        v[t] = 2; // version
        assert!(SignedTrailer::parse(&v).is_err());
        let mut v = good.clone();
        v[t + 1 + 32 + 16 + 24] = 2; // reply flag
        assert!(SignedTrailer::parse(&v).is_err());
        let mut v = good.clone();
        v[t + 1 + 32 + 16 + 24 + 1] = 1; // in_reply_to without the flag
        assert!(SignedTrailer::parse(&v).is_err());
        // one byte lost at the end: the trailer is read from the wrong place
        assert!(SignedTrailer::parse(&good[..good.len() - 1]).is_err());
    }

    #[test]
    fn audience_is_signed_and_every_record_field_matters() {
        let k = SigningKeypair::generate();
        let a = Integrity::new(cfg(&k, &[&k], "billing"));
        let b = Integrity::new(cfg(&k, &[&k], "shipping"));
        let f = RecordFields {
            msg_id: [1; 16],
            epoch: 5,
            seq: 0,
            timestamp_ms: SystemClock.wall_ms(),
            in_reply_to: None,
        };
        let wire = a.shared.signer.sign_with(&f, b"pay 10");
        let mut buf = Vec::new();
        assert_eq!(
            shared_of(&b).verify(&wire, None, &mut buf).unwrap_err(),
            Rejection::BadSignature,
            "a message for another audience must not verify"
        );
        assert!(shared_of(&a).verify(&wire, None, &mut buf).is_ok());
        // flipping any single byte of the payload or trailer breaks it (or makes it unsigned)
        for i in 0..wire.len() {
            let mut w = wire.clone();
            w[i] ^= 0x01;
            let fresh = Integrity::new(cfg(&k, &[&k], "billing"));
            assert!(
                shared_of(&fresh).verify(&w, None, &mut buf).is_err(),
                "byte {i} is not protected"
            );
        }
        assert_eq!(a.stats().bad_signature(), 0);
        assert_eq!(b.stats().bad_signature(), 1);
    }

    #[test]
    fn signing_uses_the_tailroom_without_copying() {
        let k = SigningKeypair::generate();
        let layer = Integrity::new(cfg(&k, &[&k], "x"));
        let mut sink = SignSink {
            inner: Box::pin(futures::sink::drain().sink_map_err(|e| match e {})),
            shared: layer.shared.clone(),
            role: Role::OneWay,
            ctx: Arc::default(),
            buf: Vec::new(),
        };
        let mut m = Message::with_capacity(16, 7, TRAILER_LEN + 8);
        m.body_mut().copy_from_slice(b"payload");
        let ptr = m.body().as_ptr();
        let signed = sink.sign(m);
        assert_eq!(signed.tailroom(), 8, "the trailer went into the tailroom");
        assert_eq!(
            signed.headroom(),
            16,
            "the headroom is left for the protocol"
        );
        assert_eq!(signed.body().as_ptr(), ptr, "the body did not move");
        assert_eq!(&signed.body()[..7], b"payload");
        assert_eq!(signed.body().len(), 7 + TRAILER_LEN);
        // too little tailroom: one copy, leaving room for the protocol below
        let small = sink.sign(Message::from(&b"p"[..]));
        assert!(small.headroom() >= DEFAULT_HEADROOM);
        assert_eq!(&small.body()[..1], b"p");
        assert_eq!(small.body().len(), 1 + TRAILER_LEN);
        // shared (e.g. kept for a resend): copied, the other holder unchanged
        let mut held = Message::with_capacity(4, 1, TRAILER_LEN);
        held.body_mut().copy_from_slice(b"q");
        let copy = sink.sign(held.clone());
        assert_eq!(held.body(), b"q");
        assert_eq!(&copy.body()[..1], b"q");
        assert_ne!(copy.body().as_ptr(), held.body().as_ptr());
        assert!(copy.headroom() >= DEFAULT_HEADROOM);
        let mut buf = Vec::new();
        for m in [&signed, &small, &copy] {
            assert!(layer.shared.verify(m.body(), None, &mut buf).is_ok());
        }
        assert_eq!(layer.stats().signed(), 3);
    }

    #[test]
    fn sign_message_keeps_the_payload_in_front_for_topic_matching() {
        let k = SigningKeypair::generate();
        let layer = Integrity::new(cfg(&k, &[&k], ""));
        let m = layer.sign_message(b"weather/paris 21C").unwrap();
        assert!(m.body().starts_with(b"weather/paris 21C"));
        assert_eq!(m.body().len(), 17 + TRAILER_LEN);
        assert!(m.headroom() >= DEFAULT_HEADROOM);
    }

    /// A clock the test steps by hand.
    #[derive(Debug, Default)]
    struct ManualClock {
        wall: AtomicU64,
        mono_ms: AtomicU64,
    }

    impl Clock for ManualClock {
        fn wall_ms(&self) -> u64 {
            self.wall.load(Ordering::SeqCst)
        }
        fn monotonic(&self) -> Duration {
            Duration::from_millis(self.mono_ms.load(Ordering::SeqCst))
        }
    }

    impl ManualClock {
        fn at(wall: u64) -> Arc<ManualClock> {
            let c = ManualClock::default();
            c.wall.store(wall, Ordering::SeqCst);
            Arc::new(c)
        }
        /// Real time passes: both clocks move.
        fn pass(&self, ms: u64) {
            self.wall.fetch_add(ms, Ordering::SeqCst);
            self.mono_ms.fetch_add(ms, Ordering::SeqCst);
        }
        /// The wall clock is set to `wall` (a step): the monotonic one
        /// does not move.
        fn set_wall(&self, wall: u64) {
            self.wall.store(wall, Ordering::SeqCst);
        }
    }

    const T: u64 = 1_700_000_000_000;
    const HOUR: u64 = 3_600_000;

    fn fields_at(epoch: u64, seq: u64, ts: u64) -> RecordFields {
        RecordFields {
            msg_id: [seq as u8; 16],
            epoch,
            seq,
            timestamp_ms: ts,
            in_reply_to: None,
        }
    }

    /// A receiver trusting `sender`, on `clock`, tracking `epochs` epochs.
    fn receiver(sender: &SigningKeypair, clock: &Arc<ManualClock>, epochs: usize) -> Integrity {
        let me = SigningKeypair::generate();
        Integrity::new(
            cfg(&me, &[sender], "svc")
                .max_epochs_per_signer(epochs)
                .clock(clock.clone()),
        )
    }

    #[test]
    fn a_wall_clock_step_back_locks_no_honest_sender_out() {
        let k = SigningKeypair::generate();
        let signer = Signer::new(k.clone(), "svc").unwrap();
        // both clocks an hour ahead (a bad NTP server, a wrong RTC at boot)
        let clock = ManualClock::at(T + HOUR);
        let rx = receiver(&k, &clock, 1);
        let mut buf = Vec::new();
        let early = signer.sign_with(&fields_at(1, 0, T + HOUR), b"a");
        assert!(rx.shared.verify(&early, None, &mut buf).is_ok());
        // corrected; a minute later the sender restarts as a new epoch
        clock.set_wall(T);
        clock.pass(60_000);
        let restart = signer.sign_with(&fields_at(2, 0, T + 60_000), b"b");
        assert!(
            rx.shared.verify(&restart, None, &mut buf).is_ok(),
            "an honest sender was locked out until the old future date"
        );
        // the early message, replayed once the wall clock is wrong again,
        // is still refused although its window is gone
        clock.set_wall(T + HOUR);
        assert_eq!(
            rx.shared.verify(&early, None, &mut buf).unwrap_err(),
            Rejection::Replayed
        );
        let s = rx.stats().snapshot();
        assert_eq!((s.replayed, s.total_dropped()), (1, 1), "{s:?}");
    }

    #[test]
    fn a_receiver_clock_stepping_forward_and_back_accepts_no_replay() {
        let k = SigningKeypair::generate();
        let signer = Signer::new(k.clone(), "svc").unwrap();
        let clock = ManualClock::at(T);
        let rx = receiver(&k, &clock, 2);
        let mut buf = Vec::new();
        let m = signer.sign_with(&fields_at(1, 0, T), b"pay");
        assert!(rx.shared.verify(&m, None, &mut buf).is_ok());
        // the wall clock jumps an hour ahead, one second passes: by the wall
        // clock epoch 1 is long dead, but it has been silent for a second
        clock.set_wall(T + HOUR);
        clock.pass(1_000);
        for e in [2, 3] {
            let other = signer.sign_with(&fields_at(e, 0, T + HOUR + 1_000), b"x");
            let r = rx.shared.verify(&other, None, &mut buf);
            if e == 2 {
                assert!(r.is_ok());
            } else {
                // no room: epoch 1 is not forgotten on the wall clock's word
                assert_eq!(r.unwrap_err(), Rejection::Replayed);
            }
        }
        // stepped back: epoch 1's message is fresh again, and still seen
        clock.set_wall(T + 2_000);
        assert_eq!(
            rx.shared.verify(&m, None, &mut buf).unwrap_err(),
            Rejection::Replayed
        );
        // once epoch 1 has really been silent long enough, a new epoch gets
        // its room, and epoch 1's message stays refused
        clock.pass(DEFAULT_MAX_AGE.as_millis() as u64 + 2 * DEFAULT_MAX_SKEW.as_millis() as u64);
        let later = clock.wall_ms();
        let fresh = signer.sign_with(&fields_at(4, 0, later), b"y");
        assert!(rx.shared.verify(&fresh, None, &mut buf).is_ok());
        clock.set_wall(T + 2_000);
        assert_eq!(
            rx.shared.verify(&m, None, &mut buf).unwrap_err(),
            Rejection::Replayed
        );
        let s = rx.stats().snapshot();
        assert_eq!((s.replayed, s.total_dropped()), (3, 3), "{s:?}");
    }

    #[test]
    fn a_sender_whose_clock_stepped_back_keeps_its_epoch_and_its_replays_stay_refused() {
        let k = SigningKeypair::generate();
        let signer = Signer::new(k.clone(), "svc").unwrap();
        let clock = ManualClock::at(T);
        let rx = receiver(&k, &clock, 4);
        let mut buf = Vec::new();
        let sent: Vec<Vec<u8>> = (0..3)
            .map(|i| signer.sign_with(&fields_at(1, i, T + i), b"m"))
            .collect();
        for m in &sent {
            assert!(rx.shared.verify(m, None, &mut buf).is_ok());
        }
        // the sender's clock steps back 20 s (within max_age): its next
        // messages pass, its old ones still do not
        let back = signer.sign_with(&fields_at(1, 3, T - 20_000), b"n");
        assert!(rx.shared.verify(&back, None, &mut buf).is_ok());
        for m in &sent {
            assert_eq!(
                rx.shared.verify(m, None, &mut buf).unwrap_err(),
                Rejection::Replayed
            );
        }
        // stepped back beyond max_age: stale (a clock problem, not a
        // replay), and accepted again once the clock is right
        let far = signer.sign_with(&fields_at(1, 4, T - HOUR), b"o");
        assert_eq!(
            rx.shared.verify(&far, None, &mut buf).unwrap_err(),
            Rejection::Stale
        );
        let fixed = signer.sign_with(&fields_at(1, 5, T + 10), b"p");
        assert!(rx.shared.verify(&fixed, None, &mut buf).is_ok());
    }
}
