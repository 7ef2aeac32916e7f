//! End-to-end integrity: an Ed25519 signature on every message, as a
//! **message layer** above the scalability protocol.
//!
//! ```no_run
//! use sp_crypto::integrity::{Integrity, IntegrityConfig};
//! use sp_crypto::keys::{SigningKeypair, TrustedSigners};
//!
//! # async fn demo(builder: sp_core::SocketBuilder, server: ed25519_dalek::VerifyingKey) -> Result<(), Box<dyn std::error::Error>> {
//! let me = SigningKeypair::load("client.ed25519.pem".as_ref())?;
//! let trusted = TrustedSigners::from_keys([server])?;
//! let cfg = IntegrityConfig::new(me, trusted, "billing")? // the service both ends sign for
//!     .answered_by([server]);                // only this server may answer
//! let layer = Integrity::new(cfg);           // role and protocol pair from the socket (REQ here)
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
//! [`encode_record`]): `"spstack/integrity/v2"`, the **audience**, the
//! message's **kind** and **protocol pair**, the signer's key id (SHA-256 of
//! its public key), the addressee `to`, a 128-bit `msg_id`, the sender's
//! random `epoch`, its `seq` (one counter per socket, shared by all
//! contexts), `timestamp_ms`, a request's `valid_for_ms`, `in_reply_to` and
//! the body.
//!
//! * The **audience** names the service both ends serve. It is required
//!   ([`IntegrityConfig::new`] refuses an empty one): keys are often shared
//!   across services (one trust directory per deployment), a message is
//!   bound to its service only by this name, and any default would be the
//!   same for every service that forgot to set one. It is not on the wire;
//!   both ends configure the same one.
//! * The **kind** (request, reply or one-way) and the **protocol pair**
//!   (the sender's SP protocol and the one it is meant for, from the socket
//!   the layer is built into: `LayerHandle::protocol`) say which exchange
//!   the message belongs to. A reply cannot be reflected back as a request,
//!   a PUSH job cannot be fed to a REP, a survey is not a request.
//! * **`to`**: a request names the one server it is addressed to when the
//!   requester allows only one ([`IntegrityConfig::answered_by`]), and any
//!   other server refuses it; a reply names the requester it answers.
//! * **`in_reply_to`**: a reply names the `msg_id` of its request.
//! * **`valid_for_ms`**: how long a request's sender may send it again
//!   (see [Resends](#resends)).
//!
//! On the wire a fixed [`TRAILER_LEN`]-byte trailer ([`SignedTrailer`]:
//! version 2, kind, protocol, peer protocol, key id, `to`, `msg_id`, epoch,
//! seq, timestamp, validity, `in_reply_to`, signature) follows the payload:
//! the last `TRAILER_LEN` bytes of the message body. It is declared as this layer's
//! `Overhead` (a trailer) and trailer field list, so `Socket::new_message`
//! reserves tailroom for it (no copy when it is appended) and
//! `Socket::describe` and `spcat decode` read it. The layer's name carries
//! the format's version (`integrity/2`): a version-1 peer's messages are
//! refused as `unsigned`, and ours by it.
//!
//! # What the receiver refuses
//!
//! Each refused message is dropped, counted in [`IntegrityStats`] and in
//! the socket's own counters (`socket.stats()`, `DropReason::Rejected`),
//! and logged (a `tracing` warning with target `"spstack"` and the reason;
//! a debug line for a `duplicate`, the normal price of a lost message); the
//! stream goes on with the next message. In the order checked:
//!
//! | counter | why |
//! |---|---|
//! | `unsigned` | shorter than the trailer, unknown version or kind, a field its kind does not use set (or one it needs missing) |
//! | `unknown_signer` | key id not in the [`TrustedSigners`] (an empty set trusts nobody) |
//! | `bad_signature` | `verify_strict` fails (or its checks, in a batch: see [Costs](#costs)): altered trailer or payload, other audience, forged |
//! | `misdirected` | signed for another kind (a reply at a REP, a request at a PULL...) or protocol pair, or a request addressed to another server |
//! | `stale` | timestamp older than `max_age` (30 s; a request: its `valid_for_ms`, at most `max_request_age`, 5 min) or more than `max_skew` (5 s) ahead |
//! | `unbound_reply` | requester only: not a reply to this context's outstanding request, not meant for this requester, or signed by a server the request did not allow |
//! | `duplicate` | replier only: a request it took already, sent again (a REQ resend, or a replay of it); answered again from the reply cache if it was answered (`reanswered`), never run twice |
//! | `replayed` | (signer, epoch, seq) already seen, or below the 1024-wide window; or of a forgotten epoch and not newer than its last message; or a new epoch while the signer's `max_epochs` are all active |
//!
//! The replay window is checked last, and only signed, fresh, bound
//! messages update it (authenticate before changing state): an old reply
//! replayed to a new request is therefore counted `unbound_reply`, the more
//! specific reason.
//!
//! Freshness compares the sender's wall clock with ours; the replay state
//! never does: an epoch's window is forgotten only after
//! `max_age + 2 * max_skew` of silence on the monotonic clock, and the
//! forgotten epoch's newest date is kept so its messages stay refused. A
//! wall clock that steps, here or at the sender, lets no replay in and locks
//! no honest sender out for good (see [`Clock`]). A sender whose clock
//! stepped back keeps its epoch (sequence numbers decide), and is refused as
//! `stale` only while its clock is more than `max_age` behind ours.
//!
//! # Roles
//!
//! The socket's protocol decides what the layer signs and takes
//! ([`Integrity::new`]; [`Integrity::requester`] and [`Integrity::replier`]
//! give a role to a protocol from another crate):
//!
//! * **Requester** (REQ, SURVEYOR): signs requests, records the `msg_id` of
//!   each one a context sends, and accepts only replies that name it, are
//!   meant for this requester, and are signed by a server the request
//!   allowed: the one it was addressed to, or any of
//!   [`IntegrityConfig::answered_by`] (by default any trusted key). When a
//!   REQ reply is refused, the cooked REQ below has already ended the
//!   request; the context's `recv` then fails with an [`Error::Layer`]
//!   saying the reply was rejected (instead of REQ's "no request
//!   outstanding"), and the next request works as usual.
//! * **Replier** (REP, RESPONDENT): accepts only requests addressed to it or
//!   to no server in particular, remembers the last one a context received,
//!   and signs the reply for exactly that request and requester.
//! * **One way** (PUSH/PULL, PUB/SUB, BUS, PAIR): no binding beyond the
//!   kind and protocol pair.
//!
//! # Resends
//!
//! REQ sends a request again when no reply came within its resend interval
//! (`Options::req_resend`, 60 s by default), and it sends the very bytes it
//! was given: the signed request, with its first timestamp. Two things make
//! that work without weakening replay protection:
//!
//! * **The request says how long it may be resent.** A REQ's layer reads
//!   the resend interval from the socket's options (`LayerHandle::options`)
//!   and signs `valid_for_ms` = two intervals plus `max_skew` (125 s by
//!   default) into each request. The replier takes a request that old (or
//!   its own `max_age`, if longer), but never older than its own
//!   [`IntegrityConfig::max_request_age`] (5 min): so the first and second
//!   resends of a lost request verify, a third is `stale`.
//! * **The replier takes each request once.** A resend carries the same
//!   (signer, epoch, seq), which the replay window has seen. A REP
//!   remembers the requests it took and the replies it gave them (within
//!   [`IntegrityConfig::reply_cache_bytes`], until the request could no
//!   longer be fresh, on the monotonic clock): a request sent again while
//!   it is being answered is dropped (its reply is coming), one answered
//!   already gets the same reply again, signed anew; both count as
//!   `duplicate`. So a lost request is recovered by the resend, a lost reply
//!   by the replier answering the resend, and a request runs at most once:
//!   one the application took and never answered (a failed handler) is not
//!   run again on a resend either; the requester gets no reply and should
//!   send a new request.
//!
//! A captured request replayed later is handled the same way: never run
//! again while the replier runs (the replay window and the forgotten-epoch
//! list refuse it even after the reply is no longer kept), at most answered
//! with the reply its sender already got, signed for that sender. The one
//! cost of the longer validity: a replier that restarts has lost its replay
//! state, and a request captured less than `valid_for_ms` before (at most
//! `max_request_age`) runs again there; without resends (`valid_for_ms`
//! 0) that exposure is `max_age`, as for every other message. A REQ whose
//! resend goes to another server (a pool behind a device) may have a
//! request run by two servers, as any REQ does. Addressing requests to one
//! server ([`IntegrityConfig::answered_by`] with one key) rules that out:
//! the others refuse them. Pool members that share one signing key are one
//! server to this layer, and each may run a resent request once.
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
//! Verification is the larger cost (about 1.6 signatures' worth), so a
//! one-way receiver (PULL, SUB, BUS, PAIR) takes every message the protocol
//! below has ready when it is polled, up to 64 (and 256 KiB), and verifies
//! their signatures as **one batch** (`ed25519_dalek::verify_batch`): at 64
//! messages of 64 bytes, 181 k instructions per message against 410 k (see
//! `benches/README.md`). It never waits for a batch to fill: one ready
//! message is verified alone, at once. The messages that pass are
//! delivered in arrival order; the others are dropped and counted as above.
//! Each signature first passes alone the checks `verify_strict` adds to the
//! group equation: `S` canonical, `R` canonically encoded and not of small
//! order, the signer's key in the prime-order subgroup (else it is verified
//! alone). A batch whose equation fails is verified again one message at a
//! time, so one bad signature costs its neighbours only time, and the next
//! messages (64, doubling while batches keep failing) are verified one by
//! one, so bad signatures sent on purpose cannot make verification much
//! slower than without batches. One thing differs from `verify_strict`:
//! the batch checks one combination of the equations, its coefficients
//! hashed from the whole batch (ed25519-dalek's), which can cancel
//! a torsion component (order 2, 4 or 8) that a signer put into `R` on
//! purpose, where `verify_strict` refuses such a signature alone. Only the
//! holder of the signing key can make one, it authenticates exactly the
//! message that key signed, and nothing here depends on a signature's bytes
//! (replay state is keyed on signer, epoch and seq); checking every `R` for
//! torsion would cost a scalar multiplication, more than the batch saves.
//! [`IntegrityConfig::batch_verification`] turns batches off. Requesters and
//! repliers always verify one message at a time: a REQ reads one reply per
//! request, and a REP routes its answer by the request it read last, so
//! neither may read ahead.
//!
//! A REP keeps
//! each reply's signed record (no copy: the signing buffer is handed over,
//! so the next reply allocates a new one) while a resend of its request may
//! come, within the cache's byte budget; answering a resend again costs a
//! signature and two copies of the reply.
//!
//! # What it does not do
//!
//! Confidentiality (use the Noise pipe layer, [`crate::noise`]), hiding who
//! signs (the key id is visible to relays unless hops are encrypted), and
//! revocation beyond removing a key from [`TrustedSigners`].

mod answers;
mod batch;
mod clock;
mod record;
mod window;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::{Signature, VerifyingKey};
use futures::{Sink, Stream};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use sp_core::layer::{ComponentInfo, Field, MessageIo, MessageLayer, Overhead};
use sp_core::{
    BoxSink, BoxStream, Error, Message, ProtocolId, ProtocolSpec, Result, DEFAULT_HEADROOM,
};

pub use clock::{Clock, SystemClock};
pub use record::{
    encode_record, RecordFields, RecordKind, SignedHeader, SignedTrailer, Signer, DOMAIN,
    HEADER_LEN, MAX_AUDIENCE, TRAILER_LEN, VERSION,
};
pub use window::{FORGOTTEN, WINDOW};

use crate::keys::{hex, key_id_of, SigningKeypair, TrustedSigners};
use answers::{Answer, Answers, Known, RequestKey};
use window::{Refusal, ReplayGuard};

/// The layer's name, as `Socket::components` and `describe` show it. The
/// version is the record format's: a peer with another one verifies nothing
/// of ours (its trailer has another version byte, its record another
/// domain), and `describe` / `spcat decode` read the right fields.
pub const LAYER_NAME: &str = "integrity/2";

/// Default `max_age`: a message signed longer ago than this is stale.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(30);
/// Default `max_skew`: a message dated further ahead than this is stale.
pub const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(5);
/// Default bound on epochs (sender restarts / sockets sharing a key)
/// tracked per signer.
pub const DEFAULT_MAX_EPOCHS: usize = 64;
/// Default `max_request_age`: the longest a replier takes a request its
/// requester says it may resend (two of REQ's default 60 s resends fit).
pub const DEFAULT_MAX_REQUEST_AGE: Duration = Duration::from_secs(300);
/// Default budget of a replier's memory of answered requests.
pub const DEFAULT_REPLY_CACHE_BYTES: usize = 4 << 20;
/// How many of REQ's resend intervals a request stays valid for: the
/// original and two resends (one lost resend is recovered too).
const RESENDS_COVERED: u32 = 2;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The audience does not fit its u16 length prefix.
    #[error("audience is {0} bytes; the limit is 65535 (use a short service or topic name)")]
    AudienceTooLong(usize),
    /// No audience was given.
    #[error("the audience (service name) is empty; name the service both ends serve, e.g. \"billing\", so that a message signed for one service never verifies at another that trusts the same keys")]
    NoAudience,
}

/// What an [`Integrity`] layer signs with, trusts, and tolerates.
#[derive(Clone, Debug)]
pub struct IntegrityConfig {
    signer: Signer,
    trusted: TrustedSigners,
    answered_by: Option<Vec<[u8; 32]>>,
    max_age: Duration,
    max_skew: Duration,
    max_request_age: Duration,
    max_epochs: usize,
    reply_cache_bytes: usize,
    clock: Arc<dyn Clock>,
    batch: bool,
}

impl IntegrityConfig {
    /// Signs with `key` for the service named `audience`; accepts messages
    /// signed by the `trusted` keys (a [`TrustedSigners`] or any list of
    /// public keys; none trusts nobody) for the same audience. Weak
    /// (small-order) keys are left out with a warning: strict verification
    /// would refuse all their signatures anyway.
    ///
    /// The audience is required and must not be empty: keys are often
    /// shared across services (one trust directory per deployment), and a
    /// message is bound to its service only by this name. Any default would
    /// be the same for every service that forgot to set one. Errors if it is
    /// empty or exceeds 65535 bytes.
    ///
    /// Defaults: every trusted key may answer a request
    /// ([`IntegrityConfig::answered_by`]), `max_age` 30 s, `max_skew` 5 s,
    /// `max_request_age` 5 min, 64 epochs per signer, a 4 MiB reply cache,
    /// the system clocks.
    pub fn new(
        key: SigningKeypair,
        trusted: impl IntoIterator<Item = VerifyingKey>,
        audience: &str,
    ) -> std::result::Result<IntegrityConfig, ConfigError> {
        if audience.is_empty() {
            return Err(ConfigError::NoAudience);
        }
        let signer =
            Signer::new(key, audience).ok_or(ConfigError::AudienceTooLong(audience.len()))?;
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
        Ok(IntegrityConfig {
            signer,
            trusted: set,
            answered_by: None,
            max_age: DEFAULT_MAX_AGE,
            max_skew: DEFAULT_MAX_SKEW,
            max_request_age: DEFAULT_MAX_REQUEST_AGE,
            max_epochs: DEFAULT_MAX_EPOCHS,
            reply_cache_bytes: DEFAULT_REPLY_CACHE_BYTES,
            clock: Arc::new(SystemClock),
            batch: true,
        })
    }

    /// The servers whose replies a requester (REQ, SURVEYOR) accepts: a
    /// reply signed by any other key, even a trusted one, is refused as
    /// `unbound_reply`. With exactly one key, every request is also
    /// addressed to that server (its key id is signed into the request), and
    /// any other server refuses it (`misdirected`): a device cannot have a
    /// request executed by a second server. By default any trusted key may
    /// answer and requests are addressed to no one in particular. The keys
    /// must also be trusted.
    pub fn answered_by(mut self, servers: impl IntoIterator<Item = VerifyingKey>) -> Self {
        let mut ids: Vec<[u8; 32]> = servers
            .into_iter()
            .map(|k| key_id_of(&k).to_bytes())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        self.answered_by = Some(ids);
        self
    }

    /// How old a message may be (by its signed timestamp) and still pass.
    /// A request its requester may resend for longer says so, and is taken
    /// that long (up to [`IntegrityConfig::max_request_age`]).
    pub fn max_age(mut self, d: Duration) -> Self {
        self.max_age = d;
        self
    }

    /// Replier: the longest a request is taken when its requester says it
    /// may resend it for longer than `max_age` (a REQ signs two of its
    /// resend intervals plus `max_skew`). This is how long a captured
    /// request stays replayable at a replier that restarted (its replay
    /// state is in memory); a running replier never takes it twice.
    pub fn max_request_age(mut self, d: Duration) -> Self {
        self.max_request_age = d;
        self
    }

    /// Replier (REP): bytes kept of the replies to requests that may still
    /// be resent, so a request whose reply was lost is answered again
    /// without running twice. 0 keeps nothing: such a resend is dropped
    /// (`duplicate`) and the requester never gets its reply.
    pub fn reply_cache_bytes(mut self, bytes: usize) -> Self {
        self.reply_cache_bytes = bytes;
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

    /// One-way sockets (PUSH/PULL, PUB/SUB, BUS, PAIR): whether the
    /// signatures of the messages that are ready together are verified as
    /// one batch (default: on). Each signature still passes, on its own,
    /// every check `verify_strict` adds to the group equation (canonical S,
    /// canonically encoded R, R and the key not of small order, the key in
    /// the prime-order subgroup), and a batch that fails is checked again
    /// one by one, so a bad signature is found and counted and its
    /// neighbours are delivered. Off: one `verify_strict` per message, as
    /// requesters and repliers always do. What differs, and why it is safe,
    /// is in the [costs](crate::integrity#costs) section: a signature whose R carries a
    /// torsion component, which only the holder of the signing key can make,
    /// may pass in a batch though `verify_strict` refuses it alone.
    pub fn batch_verification(mut self, on: bool) -> Self {
        self.batch = on;
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
    /// Signed for another role, protocol pair or server.
    Misdirected,
    /// Seen before (same signer, epoch and seq), or too old for the window.
    Replayed,
    /// A request this replier took already, sent again (a REQ resend, or a
    /// replay of it): not delivered again; answered again if its reply is
    /// kept.
    Duplicate,
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
            Rejection::Misdirected => "misdirected",
            Rejection::Replayed => "replayed",
            Rejection::Duplicate => "duplicate",
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
    misdirected: AtomicU64,
    replayed: AtomicU64,
    duplicate: AtomicU64,
    stale: AtomicU64,
    unbound_reply: AtomicU64,
    verified: AtomicU64,
    signed: AtomicU64,
    reanswered: AtomicU64,
    batches: AtomicU64,
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
    /// Refused: signed for another role, protocol pair or server.
    pub misdirected: u64,
    /// Refused: replay.
    pub replayed: u64,
    /// Not delivered again: a request taken already (answered again when
    /// its reply is kept, see `reanswered`).
    pub duplicate: u64,
    /// Refused: timestamp out of range.
    pub stale: u64,
    /// Refused: reply not bound to the outstanding request.
    pub unbound_reply: u64,
    /// Delivered after verification.
    pub verified: u64,
    /// Signed and sent.
    pub signed: u64,
    /// Replies sent again, signed anew, to a request sent again.
    pub reanswered: u64,
}

impl IntegrityCounts {
    /// All refusals.
    pub fn total_dropped(&self) -> u64 {
        self.unsigned
            + self.bad_signature
            + self.unknown_signer
            + self.misdirected
            + self.replayed
            + self.duplicate
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
        misdirected,
        replayed,
        duplicate,
        stale,
        unbound_reply,
        verified,
        signed,
        reanswered
    );

    /// All counters at once.
    pub fn snapshot(&self) -> IntegrityCounts {
        IntegrityCounts {
            unsigned: self.unsigned(),
            bad_signature: self.bad_signature(),
            unknown_signer: self.unknown_signer(),
            misdirected: self.misdirected(),
            replayed: self.replayed(),
            duplicate: self.duplicate(),
            stale: self.stale(),
            unbound_reply: self.unbound_reply(),
            verified: self.verified(),
            signed: self.signed(),
            reanswered: self.reanswered(),
        }
    }

    /// All refusals.
    pub fn total_dropped(&self) -> u64 {
        self.snapshot().total_dropped()
    }

    /// Batch equations computed (one per batch of two signatures or more;
    /// see [costs](crate::integrity#costs)): `verified` over this is about
    /// the batch size. Not in [`IntegrityCounts`], which counts messages.
    pub fn batches(&self) -> u64 {
        self.0.batches.load(Ordering::Relaxed)
    }

    fn count(&self, r: Rejection) {
        let c = match r {
            Rejection::Unsigned => &self.0.unsigned,
            Rejection::BadSignature => &self.0.bad_signature,
            Rejection::UnknownSigner => &self.0.unknown_signer,
            Rejection::Misdirected => &self.0.misdirected,
            Rejection::Replayed => &self.0.replayed,
            Rejection::Duplicate => &self.0.duplicate,
            Rejection::Stale => &self.0.stale,
            Rejection::UnboundReply => &self.0.unbound_reply,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Which side of an exchange a socket is on: what it signs, what it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    OneWay,
    Requester,
    Replier,
}

impl Role {
    /// The role the built-in protocols have; `None` for a protocol from
    /// another crate, which says its role by the constructor it uses.
    fn of(p: ProtocolId) -> Option<Role> {
        match p {
            ProtocolId::REQ0 | ProtocolId::SURVEYOR0 => Some(Role::Requester),
            ProtocolId::REP0 | ProtocolId::RESPONDENT0 => Some(Role::Replier),
            ProtocolId::PAIR0
            | ProtocolId::PAIR1
            | ProtocolId::PUB0
            | ProtocolId::SUB0
            | ProtocolId::PUSH0
            | ProtocolId::PULL0
            | ProtocolId::BUS0 => Some(Role::OneWay),
            _ => None,
        }
    }
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

/// What the layer signs for: its role and the socket's protocol pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Binding {
    role: Role,
    protocol: ProtocolId,
    peer: ProtocolId,
    /// Requester: how long its protocol may resend a request (signed into
    /// it); 0 if it does not.
    valid_for_ms: u32,
    /// Replier: its requesters resend, so replies are kept for them.
    keeps_replies: bool,
}

impl Binding {
    /// The binding on a socket of protocol `spec`, for a layer built with
    /// role `asked` (if any). A built-in protocol's own role wins: a REP
    /// only ever answers, whatever constructor made its layer.
    fn of(spec: ProtocolSpec, asked: Option<Role>) -> Binding {
        let role = match (Role::of(spec.id), asked) {
            (Some(r), Some(a)) if r != a => {
                tracing::warn!(
                    target: "spstack",
                    layer = LAYER_NAME,
                    protocol = spec.name,
                    "integrity: built as {a:?} into a {} socket, which is {r:?}; signing as {r:?}",
                    spec.name
                );
                r
            }
            (Some(r), _) => r,
            (None, Some(a)) => a,
            (None, None) => Role::OneWay,
        };
        Binding {
            role,
            protocol: spec.id,
            peer: spec.peer,
            valid_for_ms: 0,
            keeps_replies: false,
        }
    }

    /// What the socket's options say about resends: a REQ resends a
    /// request every `req_resend`, so it signs it valid for that many
    /// resends (whatever the replier's `max_age`, which this side does not
    /// know; the replier takes the longer of the two, within its own bound);
    /// a REP is the peer of such resends and keeps replies.
    fn with_resends(mut self, opts: Option<&sp_core::Options>, s: &Shared) -> Binding {
        if self.role == Role::Requester && self.protocol == ProtocolId::REQ0 {
            if let Some(d) = opts.and_then(|o| o.req_resend) {
                let want = duration_ms(d)
                    .saturating_mul(u64::from(RESENDS_COVERED))
                    .saturating_add(s.max_skew_ms);
                self.valid_for_ms = want.min(u64::from(u32::MAX)) as u32;
            }
        }
        self.keeps_replies = self.role == Role::Replier && self.peer == ProtocolId::REQ0;
        self
    }
}

/// A request a requester context waits on.
#[derive(Clone, Copy, Debug)]
struct Outstanding {
    msg_id: [u8; 16],
    /// The server it was addressed to, if one.
    to: Option<[u8; 32]>,
}

/// The request a replier context answers.
#[derive(Clone, Copy, Debug)]
struct Answering {
    msg_id: [u8; 16],
    requester: [u8; 32],
    key: RequestKey,
}

/// State of one socket's layer, shared by every context's wrapper.
struct Shared {
    signer: Signer,
    trusted: TrustedSigners,
    /// The servers that may answer (sorted), `None`: any trusted one.
    answered_by: Option<Vec<[u8; 32]>>,
    max_age_ms: u64,
    max_skew_ms: u64,
    max_request_age_ms: u64,
    epoch: u64,
    /// Secret of this instance from which msg_ids are derived.
    salt: [u8; 32],
    seq: AtomicU64,
    replay: Mutex<ReplayGuard>,
    /// Replier: requests taken and their replies, for resends.
    answers: Mutex<Answers>,
    stats: IntegrityStats,
    clock: Arc<dyn Clock>,
    /// The socket's counters (set when the socket is built).
    socket: OnceLock<sp_core::layer::LayerHandle>,
    /// Role and protocol pair, from the socket the layer was built into.
    bound: OnceLock<Binding>,
    /// One-way: verify what is ready together as one batch.
    batch: bool,
    /// Per trusted key id: may it join a batch (`batch::batchable_key`, a
    /// scalar multiplication, so answered once per key).
    batchable: Mutex<HashMap<[u8; 32], bool>>,
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

fn lock_answers(a: &Mutex<Answers>) -> std::sync::MutexGuard<'_, Answers> {
    a.lock().unwrap_or_else(|e| e.into_inner())
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

    /// The server every request is addressed to: the only one allowed to
    /// answer, if there is only one.
    fn addressed(&self) -> Option<[u8; 32]> {
        match self.answered_by.as_deref() {
            Some([one]) => Some(*one),
            _ => None,
        }
    }

    /// The fields of the next message this layer signs as `kind`.
    fn next_fields(
        &self,
        b: Binding,
        to: Option<[u8; 32]>,
        in_reply_to: Option<[u8; 16]>,
    ) -> RecordFields {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        RecordFields {
            kind: b.role.sends(),
            protocol: b.protocol,
            peer_protocol: b.peer,
            to,
            msg_id: self.msg_id(seq),
            epoch: self.epoch,
            seq,
            timestamp_ms: self.clock.wall_ms(),
            valid_for_ms: if b.role == Role::Requester {
                b.valid_for_ms
            } else {
                0
            },
            in_reply_to,
        }
    }

    fn reject(&self, r: Rejection, why: &str, key_id: Option<&[u8; 32]>) -> Rejection {
        self.stats.count(r);
        // and where the application looks first: the socket's counters
        if let Some(h) = self.socket.get() {
            h.dropped(sp_core::DropReason::Rejected);
        }
        let signer = key_id.map(|k| hex(&k[..8])).unwrap_or_default();
        if r == Rejection::Duplicate {
            // the normal price of a lost message, not an attack
            tracing::debug!(target: "spstack", layer = LAYER_NAME, reason = r.name(), signer, "integrity: {why}");
        } else {
            tracing::warn!(
                target: "spstack",
                layer = LAYER_NAME,
                reason = r.name(),
                signer,
                "integrity: dropped a message: {why}"
            );
        }
        r
    }

    /// Checks a received message body (payload, then trailer) taken by a
    /// socket bound as `b`; a requester passes the request its context
    /// waits on. On success returns the trailer. A replier given a request
    /// it answered already gets [`Rejection::Duplicate`] and, in `again`,
    /// the reply to send once more.
    fn verify(
        &self,
        body: &[u8],
        b: Option<Binding>,
        waiting: Option<Outstanding>,
        buf: &mut Vec<u8>,
        again: &mut Option<Answer>,
    ) -> std::result::Result<SignedTrailer, Rejection> {
        let (h, key) = self.signed_record(body, buf)?;
        let sig = Signature::from_bytes(&h.signature);
        if key.verify_strict(buf, &sig).is_err() {
            return Err(self.bad_signature(&h));
        }
        self.after_signature(h, b, waiting, again)
    }

    /// The checks before the signature: a well-formed trailer and a trusted
    /// signer; writes the signed record into `buf`.
    fn signed_record(
        &self,
        body: &[u8],
        buf: &mut Vec<u8>,
    ) -> std::result::Result<(SignedTrailer, &VerifyingKey), Rejection> {
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
        Ok((h, key))
    }

    fn bad_signature(&self, h: &SignedTrailer) -> Rejection {
        self.reject(
            Rejection::BadSignature,
            "signature does not verify (message altered, forged, or signed for another audience)",
            Some(&h.key_id),
        )
    }

    /// Whether `key` may join a batch, answered once per key.
    fn batchable(&self, key_id: &[u8; 32], key: &VerifyingKey) -> bool {
        let mut known = self.batchable.lock().unwrap_or_else(|e| e.into_inner());
        // bounded: only trusted keys get here
        *known
            .entry(*key_id)
            .or_insert_with(|| batch::batchable_key(key))
    }

    /// The checks after the signature, in the order of the module docs'
    /// table; the replay state changes only for a message that passes them
    /// all.
    fn after_signature(
        &self,
        h: SignedTrailer,
        b: Option<Binding>,
        waiting: Option<Outstanding>,
        again: &mut Option<Answer>,
    ) -> std::result::Result<SignedTrailer, Rejection> {
        // signed, so these say what the signer meant: a message is only
        // taken in the exchange it was signed for
        let f = &h.fields;
        let Some(b) = b else {
            return Err(self.reject(
                Rejection::Misdirected,
                "the layer knows no protocol (not built into a socket, and no on_protocol)",
                Some(&h.key_id),
            ));
        };
        if f.kind != b.role.takes() {
            let why = format!(
                "a {} where a {} socket takes a {} (reflected or replayed into the wrong direction)",
                f.kind.name(),
                b.protocol.name(),
                b.role.takes().name()
            );
            return Err(self.reject(Rejection::Misdirected, &why, Some(&h.key_id)));
        }
        if f.protocol != b.peer || f.peer_protocol != b.protocol {
            let why = format!(
                "signed by a {} socket for {}; this {} socket takes messages of {} for {}",
                f.protocol.name(),
                f.peer_protocol.name(),
                b.protocol.name(),
                b.peer.name(),
                b.protocol.name()
            );
            return Err(self.reject(Rejection::Misdirected, &why, Some(&h.key_id)));
        }
        if b.role == Role::Replier && f.to.is_some_and(|to| to != self.signer.key_id()) {
            return Err(self.reject(
                Rejection::Misdirected,
                "request addressed to another server",
                Some(&h.key_id),
            ));
        }
        let now = self.clock.wall_ms();
        let ts = f.timestamp_ms;
        // a request its requester resends stays valid for those resends,
        // within this replier's own bound
        let max_age = if f.kind == RecordKind::Request {
            self.max_age_ms
                .max(u64::from(f.valid_for_ms).min(self.max_request_age_ms))
        } else {
            self.max_age_ms
        };
        if ts.saturating_add(max_age) < now {
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
        if b.role == Role::Requester {
            self.check_bound(&h, waiting)?;
        }
        let mono = self.clock.monotonic();
        let verdict = self
            .replay
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .accept(&h.key_id, f.epoch, f.seq, ts, mono);
        let key: RequestKey = (h.key_id, f.epoch, f.seq);
        let keeps = b.keeps_replies;
        if verdict.is_ok() && keeps {
            // a resend can come while the request is fresh: until then (on
            // the monotonic clock) it and its reply are remembered
            let left = ts.saturating_add(max_age).saturating_sub(now);
            let keep = Duration::from_millis(left.saturating_add(self.max_skew_ms));
            lock_answers(&self.answers).taken(key, mono + keep, mono);
        }
        let known = match verdict {
            Err(Refusal::Seen | Refusal::Forgotten) if keeps => {
                lock_answers(&self.answers).known(&key, mono)
            }
            _ => Known::Unknown,
        };
        match (verdict, known) {
            (Ok(()), _) => Ok(h),
            // taken here before: never run again; answered again if the
            // reply is kept, else its reply is still to come
            (Err(_), Known::Answered(a)) => {
                *again = Some(a);
                Err(self.reject(
                    Rejection::Duplicate,
                    "a request answered already, sent again (a lost reply, or a replay of it): its reply goes out again",
                    Some(&h.key_id),
                ))
            }
            (Err(_), Known::Taken) => Err(self.reject(
                Rejection::Duplicate,
                "a request taken already and not answered yet, sent again: its reply will follow",
                Some(&h.key_id),
            )),
            (Err(Refusal::Seen), Known::Unknown) => Err(self.reject(
                Rejection::Replayed,
                "(signer, epoch, seq) already seen or below the replay window",
                Some(&h.key_id),
            )),
            (Err(Refusal::Forgotten), Known::Unknown) => Err(self.reject(
                Rejection::Replayed,
                "of an epoch forgotten after a long silence, and dated no later than its last accepted message (a replay, or the sender's clock stepped back)",
                Some(&h.key_id),
            )),
            (Err(Refusal::TooManyEpochs), _) => Err(self.reject(
                Rejection::Replayed,
                "too many live epochs for this signer (raise max_epochs_per_signer if many sockets share the key)",
                Some(&h.key_id),
            )),
        }
    }

    /// A reply must answer the request its context waits on, be meant for
    /// this requester, and come from a server that request allowed.
    fn check_bound(
        &self,
        h: &SignedTrailer,
        waiting: Option<Outstanding>,
    ) -> std::result::Result<(), Rejection> {
        let unbound = |why: &str| Err(self.reject(Rejection::UnboundReply, why, Some(&h.key_id)));
        let Some(w) = waiting else {
            return unbound("no request outstanding on this context");
        };
        if h.fields.in_reply_to != Some(w.msg_id) {
            return unbound("reply is not bound to this context's outstanding request");
        }
        if h.fields.to != Some(self.signer.key_id()) {
            return unbound("reply answers another requester");
        }
        let allowed = match (w.to, &self.answered_by) {
            (Some(server), _) => h.key_id == server,
            (None, Some(set)) => set.binary_search(&h.key_id).is_ok(),
            (None, None) => true,
        };
        if !allowed {
            return unbound("answered by a server this request did not allow (answered_by)");
        }
        Ok(())
    }
}

/// The integrity message layer. Build one per socket; the socket applies
/// it to every context, and they share its sequence counter, replay
/// windows and stats.
///
/// What it signs as, and what it takes, follows the socket's protocol: a
/// REQ or SURVEYOR signs requests and takes only replies to them, a REP or
/// RESPONDENT takes only requests and signs replies, the other built-in
/// protocols sign and take one-way messages; the protocol pair is signed
/// with every message. [`Integrity::requester`] and [`Integrity::replier`]
/// give that role to a protocol from another crate.
pub struct Integrity {
    shared: Arc<Shared>,
    /// The role asked for by the constructor.
    asked: Option<Role>,
    /// The binding given by [`Integrity::on_protocol`], until a socket's.
    preset: Option<Binding>,
}

impl fmt::Debug for Integrity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Integrity")
            .field("binding", &self.binding())
            .field("signer", &hex(&self.shared.signer.key_id()))
            .field("epoch", &self.shared.epoch)
            .finish_non_exhaustive()
    }
}

impl Integrity {
    fn with_role(cfg: IntegrityConfig, asked: Option<Role>) -> Integrity {
        let epoch_bytes = instance_random();
        let mut e = [0u8; 8];
        e.copy_from_slice(&epoch_bytes[..8]);
        Integrity {
            shared: Arc::new(Shared {
                max_age_ms: duration_ms(cfg.max_age),
                max_skew_ms: duration_ms(cfg.max_skew),
                max_request_age_ms: duration_ms(cfg.max_request_age),
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
                answers: Mutex::new(Answers::new(cfg.reply_cache_bytes)),
                stats: IntegrityStats::default(),
                clock: cfg.clock.clone(),
                socket: OnceLock::new(),
                bound: OnceLock::new(),
                signer: cfg.signer,
                trusted: cfg.trusted,
                answered_by: cfg.answered_by,
                batch: cfg.batch,
                batchable: Mutex::new(HashMap::new()),
            }),
            asked,
            preset: None,
        }
    }

    /// The layer for any built-in protocol: its role (request, reply or
    /// one-way) and protocol pair come from the socket it is built into.
    /// On a protocol from another crate it signs one way.
    pub fn new(cfg: IntegrityConfig) -> Integrity {
        Integrity::with_role(cfg, None)
    }

    /// The requesting side (REQ, SURVEYOR, or a request/reply protocol from
    /// another crate): a reply is accepted only if it names the context's
    /// outstanding request in `in_reply_to`, answers this requester, and is
    /// signed by a server [`IntegrityConfig::answered_by`] allows.
    pub fn requester(cfg: IntegrityConfig) -> Integrity {
        Integrity::with_role(cfg, Some(Role::Requester))
    }

    /// The answering side (REP, RESPONDENT, or one from another crate):
    /// takes only requests (addressed to it or to any server) and signs
    /// each reply for the request last received on its context.
    pub fn replier(cfg: IntegrityConfig) -> Integrity {
        Integrity::with_role(cfg, Some(Role::Replier))
    }

    /// Signs for `protocol` (and its peer) without being built into a
    /// socket: for tools and tests that sign with [`Integrity::sign_message`]
    /// and put the result on a raw socket. A socket the layer is built into
    /// decides instead.
    pub fn on_protocol(mut self, protocol: ProtocolId) -> Integrity {
        let spec = protocol
            .spec()
            .unwrap_or(ProtocolSpec::new(protocol, "unknown", protocol));
        self.preset = Some(Binding::of(spec, self.asked).with_resends(None, &self.shared));
        self
    }

    fn binding(&self) -> Option<Binding> {
        self.shared.bound.get().copied().or(self.preset)
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
    pub fn key_id(&self) -> crate::keys::SigningKeyId {
        crate::keys::SigningKeyId::from_bytes(self.shared.signer.key_id())
    }

    /// `body` signed as this layer would send it (next `seq` of this
    /// instance, current time): a request on a requester (addressed as
    /// [`IntegrityConfig::answered_by`] says), a one-way message otherwise;
    /// `body` then the trailer, in one message body. For tools and tests
    /// that put signed messages on a raw socket. Errors on a replier (a
    /// reply needs the request it answers) and on a layer that knows no
    /// protocol yet ([`Integrity::on_protocol`]).
    pub fn sign_message(&self, body: &[u8]) -> Result<Message> {
        let s = &self.shared;
        let b = self.binding().ok_or_else(|| {
            Error::layer(
                LAYER_NAME,
                "no protocol to sign for: build the layer into a socket or call on_protocol",
            )
        })?;
        let to = match b.role {
            Role::Replier => {
                return Err(Error::layer(
                    LAYER_NAME,
                    "a replier signs replies, and a reply needs the request it answers",
                ))
            }
            Role::Requester => s.addressed(),
            Role::OneWay => None,
        };
        let fields = s.next_fields(b, to, None);
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
        Field::be("kind", 1),
        Field::be("protocol", 2),
        Field::be("peer_protocol", 2),
        Field::bytes("signer_key_id", 32),
        Field::bytes("to", 32),
        Field::bytes("msg_id", 16),
        Field::be("epoch", 8),
        Field::be("seq", 8),
        Field::be("timestamp_ms", 8),
        Field::be("valid_for_ms", 4),
        Field::bytes("in_reply_to", 16),
        Field::bytes("signature", 64),
    ]
}

impl MessageLayer for Integrity {
    fn attach(&self, handle: &sp_core::layer::LayerHandle) {
        let _ = self.shared.socket.set(handle.clone());
        if let Some(spec) = handle.protocol() {
            let b = Binding::of(spec, self.asked).with_resends(handle.options(), &self.shared);
            if self.shared.bound.set(b).is_err() && self.shared.bound.get() != Some(&b) {
                tracing::warn!(
                    target: "spstack",
                    layer = LAYER_NAME,
                    "integrity: one layer built into sockets of different protocols; it signs for the first (build one layer per socket)"
                );
            }
        }
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
    /// Requester: the request outstanding on this context.
    waiting: Option<Outstanding>,
    /// Replier: the request being answered.
    answering: Option<Answering>,
    /// Requester: a reply was refused since the last send.
    refused: Option<Rejection>,
}

type Ctx = Arc<Mutex<CtxState>>;

fn lock(c: &Ctx) -> std::sync::MutexGuard<'_, CtxState> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

/// The context's sending half below this layer, shared by both of ours.
type Tx = Arc<Mutex<BoxSink>>;

fn lock_tx(t: &Tx) -> std::sync::MutexGuard<'_, BoxSink> {
    t.lock().unwrap_or_else(|e| e.into_inner())
}

impl tower::Layer<MessageIo> for Integrity {
    type Service = MessageIo;
    fn layer(&self, io: MessageIo) -> MessageIo {
        let ctx: Ctx = Arc::default();
        let binding = self.binding();
        // the receiving half answers a resent request itself, on the
        // context it arrived on, so both halves send
        let tx: Tx = Arc::new(Mutex::new(io.tx));
        MessageIo::new(
            Box::pin(SignSink {
                inner: tx.clone(),
                shared: self.shared.clone(),
                binding,
                ctx: ctx.clone(),
                buf: Vec::new(),
            }),
            Box::pin(VerifyStream {
                inner: io.rx,
                tx,
                out: None,
                flushing: false,
                shared: self.shared.clone(),
                binding,
                ctx,
                buf: Vec::new(),
                ready: VecDeque::new(),
                after: None,
                records: Vec::new(),
                taken: Vec::new(),
                signed: Vec::new(),
                items: Vec::new(),
                ok: Vec::new(),
                scratch: batch::Scratch::default(),
                single_left: 0,
                backoff: BACKOFF_START,
            }),
        )
    }
}

/// Signs on the way down.
struct SignSink {
    inner: Tx,
    shared: Arc<Shared>,
    binding: Option<Binding>,
    ctx: Ctx,
    /// The record under construction, reused across messages.
    buf: Vec<u8>,
}

impl SignSink {
    fn sign(&mut self, mut m: Message) -> Result<Message> {
        let s = &self.shared;
        let b = self.binding.ok_or_else(|| {
            Error::layer(
                LAYER_NAME,
                "no protocol to sign for: the layer was not built into a socket",
            )
        })?;
        let mut answering = None;
        let (to, in_reply_to) = match b.role {
            Role::Replier => {
                // a reply is signed for exactly the request it answers
                let Some(a) = lock(&self.ctx).answering.take() else {
                    return Err(Error::State(
                        "no request to reply to on this context: receive one first",
                    ));
                };
                answering = Some(a);
                (Some(a.requester), Some(a.msg_id))
            }
            Role::Requester => (s.addressed(), None),
            Role::OneWay => (None, None),
        };
        let fields = s.next_fields(b, to, in_reply_to);
        let trailer = s.signer.sign_into(&fields, m.body(), &mut self.buf);
        if let (Some(a), true) = (answering, b.keeps_replies) {
            // the record holds the reply's payload already: keep it whole
            // (no copy; the next record gets a new buffer)
            let answer = Answer {
                record: Arc::new(std::mem::take(&mut self.buf)),
                payload_len: m.body().len(),
                requester: a.requester,
                in_reply_to: a.msg_id,
            };
            lock_answers(&s.answers).answered(&a.key, answer, s.clock.monotonic());
        }
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
            sp_core::record_copy(m.body().len());
            if !m.header().is_empty() {
                fresh.push_header(m.header());
            }
            fresh.set_pipe(m.pipe());
            m = fresh;
        }
        m.extend_body(&trailer);
        if b.role == Role::Requester {
            let mut c = lock(&self.ctx);
            c.waiting = Some(Outstanding {
                msg_id: fields.msg_id,
                to,
            });
            c.refused = None;
        }
        s.stats.0.signed.fetch_add(1, Ordering::Relaxed);
        Ok(m)
    }
}

impl Sink<Message> for SignSink {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        lock_tx(&self.inner).as_mut().poll_ready(cx)
    }
    fn start_send(mut self: Pin<&mut Self>, m: Message) -> Result<()> {
        let m = self.sign(m)?;
        lock_tx(&self.inner).as_mut().start_send(m)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        lock_tx(&self.inner).as_mut().poll_flush(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        lock_tx(&self.inner).as_mut().poll_close(cx)
    }
}

/// Verifies on the way up; drops and counts what fails.
struct VerifyStream {
    inner: BoxStream,
    /// The context's sending half, for replies sent again.
    tx: Tx,
    /// A reply to send again, waiting for room below.
    out: Option<Message>,
    /// `out` was handed over and is being flushed.
    flushing: bool,
    shared: Arc<Shared>,
    binding: Option<Binding>,
    ctx: Ctx,
    buf: Vec<u8>,
    /// One-way, batched: messages that passed every check, in arrival
    /// order, not yet delivered.
    ready: VecDeque<Message>,
    /// What the stream below gave after the last batch's messages (its end
    /// or an error): given once `ready` is empty, so order is kept.
    after: Option<Option<Result<Message>>>,
    /// The batch's signed records, kept for the next batch.
    records: Vec<Vec<u8>>,
    /// Buffers of a batch, kept so a receiver allocates nothing of its own
    /// per message: the messages taken, those with a trusted signer, their
    /// signatures, the verdicts.
    taken: Vec<Message>,
    signed: Vec<(Message, SignedTrailer)>,
    items: Vec<batch::Item>,
    ok: Vec<bool>,
    scratch: batch::Scratch,
    /// Messages still to verify one by one after a failed batch.
    single_left: usize,
    /// The next such stretch, doubling while batches keep failing.
    backoff: usize,
}

/// Refused messages handled in one poll before yielding, so a flood of
/// garbage cannot hold the executor thread.
const DROP_BUDGET: usize = 64;

/// Most messages in one batch: the batch equation saves little more per
/// signature beyond this (ed25519-dalek's multiscalar multiplication), and
/// each message of a batch waits for all of it.
const BATCH_MAX: usize = 64;
/// Stop taking messages into a batch past this many body bytes: the
/// records are copies of the bodies, and for large messages hashing, not
/// the curve, is the cost batching cannot cut.
const BATCH_BYTES: usize = 256 << 10;
/// After a failed batch, this many messages are verified one by one before
/// batching again, doubling (up to `BACKOFF_MAX`) while batches keep
/// failing: a peer that mixes bad signatures in then costs about one
/// `verify_strict` per message, as without batching, not that plus a
/// wasted batch.
const BACKOFF_START: usize = 64;
const BACKOFF_MAX: usize = 4096;
/// Bytes of record buffers (beyond the first) kept between batches: a full
/// batch's worth, so steady traffic allocates none, and no more however
/// message sizes mix.
const KEEP_RECORDS: usize = 2 * BATCH_BYTES;

impl VerifyStream {
    /// The kept reply to a request sent again, signed anew (its own seq and
    /// a fresh timestamp: the first one may be too old by now).
    /// `header` is the request's as it arrived: empty above cooked REP
    /// (which routes by the context), the backtrace above a raw REP.
    fn reanswer(&mut self, a: &Answer, header: &[u8]) -> Option<Message> {
        let s = &self.shared;
        let b = self.binding?;
        let payload = a.payload();
        let fields = s.next_fields(b, Some(a.requester), Some(a.in_reply_to));
        let trailer = s.signer.sign_into(&fields, payload, &mut self.buf);
        let mut m = Message::with_capacity(DEFAULT_HEADROOM, payload.len(), TRAILER_LEN);
        m.body_mut().copy_from_slice(payload);
        sp_core::record_copy(payload.len());
        m.extend_body(&trailer);
        if !header.is_empty() {
            m.push_header(header);
        }
        s.stats.0.signed.fetch_add(1, Ordering::Relaxed);
        s.stats.0.reanswered.fetch_add(1, Ordering::Relaxed);
        Some(m)
    }

    /// Sends `out` on this context. It must leave before the next request
    /// is read: the protocol below routes it like the request just read
    /// (REP: by its backtrace), which the next read replaces.
    fn poll_out(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut tx = lock_tx(&self.tx);
        if let Some(m) = self.out.take() {
            match tx.as_mut().poll_ready(cx) {
                Poll::Pending => {
                    self.out = Some(m);
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => {
                    tracing::debug!(target: "spstack", layer = LAYER_NAME, error = %e, "integrity: could not send a reply again");
                    return Poll::Ready(());
                }
                Poll::Ready(Ok(())) => match tx.as_mut().start_send(m) {
                    Ok(()) => self.flushing = true,
                    Err(e) => {
                        tracing::debug!(target: "spstack", layer = LAYER_NAME, error = %e, "integrity: could not send a reply again");
                        return Poll::Ready(());
                    }
                },
            }
        }
        if self.flushing {
            if tx.as_mut().poll_flush(cx).is_pending() {
                return Poll::Pending;
            }
            self.flushing = false;
        }
        Poll::Ready(())
    }
}

impl VerifyStream {
    /// The next verified message of a batch, or what the stream below gave
    /// after it.
    fn take_ready(&mut self) -> Option<Option<Result<Message>>> {
        if let Some(m) = self.ready.pop_front() {
            self.shared.stats.0.verified.fetch_add(1, Ordering::Relaxed);
            return Some(Some(Ok(m)));
        }
        self.after.take()
    }

    /// One-way sockets: takes every message the stream below has ready
    /// (never waiting for more), checks them, their signatures as one
    /// batch, and delivers those that pass in order.
    fn poll_batch(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        let mut refused = 0;
        while refused < DROP_BUDGET {
            let mut bytes = 0;
            while self.taken.len() < BATCH_MAX && bytes < BATCH_BYTES {
                match self.inner.as_mut().poll_next(cx) {
                    Poll::Ready(Some(Ok(m))) => {
                        bytes += m.body().len();
                        self.taken.push(m);
                    }
                    Poll::Ready(end) => {
                        if self.taken.is_empty() {
                            return Poll::Ready(end);
                        }
                        self.after = Some(end);
                        break;
                    }
                    Poll::Pending if self.taken.is_empty() => return Poll::Pending,
                    Poll::Pending => break,
                }
            }
            let n = self.taken.len();
            self.check_batch();
            refused += n - self.ready.len();
            if let Some(next) = self.take_ready() {
                return Poll::Ready(next);
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// The checks of [`Shared::verify`] for several messages, the
    /// signatures as one batch (see [`batch`]); what passes goes to
    /// `ready`, in order.
    fn check_batch(&mut self) {
        let s = &*self.shared;
        if self.records.len() < self.taken.len() {
            self.records.resize_with(self.taken.len(), Vec::new);
        }
        self.signed.clear();
        self.items.clear();
        for (m, record) in self.taken.drain(..).zip(0..) {
            // refusals are counted where they are found
            if let Ok((h, key)) = s.signed_record(m.body(), &mut self.records[record]) {
                self.items.push(batch::Item {
                    key: *key,
                    batchable: s.batchable(&h.key_id, key),
                    record,
                    signature: h.signature,
                });
                self.signed.push((m, h));
            }
        }
        let use_batch = self.single_left == 0;
        if !use_batch {
            self.single_left = self.single_left.saturating_sub(self.items.len());
        }
        match batch::verify(
            &self.items,
            &self.records,
            use_batch,
            &mut self.ok,
            &mut self.scratch,
        ) {
            batch::Outcome::Alone => {}
            batch::Outcome::Passed => {
                s.stats.0.batches.fetch_add(1, Ordering::Relaxed);
                self.backoff = BACKOFF_START;
            }
            batch::Outcome::Failed => {
                s.stats.0.batches.fetch_add(1, Ordering::Relaxed);
                self.single_left = self.backoff;
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            }
        }
        for ((mut m, h), &good) in self.signed.drain(..).zip(&self.ok) {
            if !good {
                s.bad_signature(&h);
                continue;
            }
            // one-way: no request to bind to, no reply to send again
            if s.after_signature(h, self.binding, None, &mut None).is_ok() {
                // parse checked the body holds the trailer
                m.trim_body_back(TRAILER_LEN);
                self.ready.push_back(m);
            }
        }
        // the first buffer is kept whatever its size (as the one-by-one
        // path keeps its one); the others while they fit the budget
        let mut kept = 0;
        for r in self.records.iter_mut().skip(1) {
            kept += r.capacity();
            if kept > KEEP_RECORDS {
                kept -= r.capacity();
                *r = Vec::new();
            }
        }
    }
}

impl Drop for VerifyStream {
    fn drop(&mut self) {
        // verified but never delivered: discarded with the socket or context
        if let Some(h) = self.shared.socket.get() {
            for _ in 0..self.ready.len() {
                h.dropped(sp_core::DropReason::Closed);
            }
        }
    }
}

impl Stream for VerifyStream {
    type Item = Result<Message>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        let this = self.get_mut();
        let role = this.binding.map(|b| b.role);
        if this.poll_out(cx).is_pending() {
            return Poll::Pending;
        }
        if let Some(next) = this.take_ready() {
            return Poll::Ready(next);
        }
        // a requester reads one reply per request and a replier routes its
        // answer by the request it read last: only one-way sockets read ahead
        if role == Some(Role::OneWay) && this.shared.batch {
            return this.poll_batch(cx);
        }
        for _ in 0..DROP_BUDGET {
            let mut m = match this.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(m))) => m,
                Poll::Ready(Some(Err(Error::State(what)))) if role == Some(Role::Requester) => {
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
            let waiting = match role {
                Some(Role::Requester) => lock(&this.ctx).waiting,
                _ => None,
            };
            let mut again = None;
            match this
                .shared
                .verify(m.body(), this.binding, waiting, &mut this.buf, &mut again)
            {
                Ok(h) => {
                    // parse checked the body holds the trailer; the payload
                    // stays where it is
                    m.trim_body_back(TRAILER_LEN);
                    if role == Some(Role::Replier) {
                        lock(&this.ctx).answering = Some(Answering {
                            msg_id: h.fields.msg_id,
                            requester: h.key_id,
                            key: (h.key_id, h.fields.epoch, h.fields.seq),
                        });
                    }
                    this.shared.stats.0.verified.fetch_add(1, Ordering::Relaxed);
                    return Poll::Ready(Some(Ok(m)));
                }
                Err(r) => {
                    if role == Some(Role::Requester) {
                        lock(&this.ctx).refused = Some(r);
                    }
                    if let Some(a) = again {
                        this.out = this.reanswer(&a, m.header());
                        if this.poll_out(cx).is_pending() {
                            return Poll::Pending;
                        }
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
        IntegrityConfig::new(key.clone(), trusted.iter().map(|k| k.verifying_key()), aud).unwrap()
    }

    /// A msg_id per seq, never all zeros (a request's must be set).
    fn msg_id_of(seq: u64) -> [u8; 16] {
        let mut id = [0x5a; 16];
        id[8..].copy_from_slice(&seq.to_be_bytes());
        id
    }

    /// One-way fields as a PUSH signs them for a PULL.
    fn push_fields(epoch: u64, seq: u64, ts: u64) -> RecordFields {
        RecordFields {
            kind: RecordKind::OneWay,
            protocol: ProtocolId::PUSH0,
            peer_protocol: ProtocolId::PULL0,
            to: None,
            msg_id: msg_id_of(seq),
            epoch,
            seq,
            timestamp_ms: ts,
            valid_for_ms: 0,
            in_reply_to: None,
        }
    }

    /// `i` checks `body` as its socket would (a requester waiting on nothing).
    fn check(i: &Integrity, body: &[u8]) -> std::result::Result<SignedTrailer, Rejection> {
        i.shared
            .verify(body, i.binding(), None, &mut Vec::new(), &mut None)
    }

    #[test]
    fn trailer_round_trips_and_declared_overhead_matches() {
        let k = SigningKeypair::generate();
        let s = Signer::new(k.clone(), "svc").unwrap();
        let f = RecordFields {
            kind: RecordKind::Reply,
            protocol: ProtocolId::REP0,
            peer_protocol: ProtocolId::REQ0,
            to: Some([5; 32]),
            msg_id: [3; 16],
            epoch: 0x0102_0304_0506_0708,
            seq: 42,
            timestamp_ms: 1_700_000_000_000,
            valid_for_ms: 0,
            in_reply_to: Some([9; 16]),
        };
        let wire = s.sign_with(&f, b"body");
        assert_eq!(wire.len(), 4 + TRAILER_LEN);
        assert_eq!(&wire[..4], b"body", "the payload comes first, unchanged");
        let h = SignedTrailer::parse(&wire).unwrap();
        assert_eq!(h.fields, f);
        assert_eq!(h.key_id, k.key_id().to_bytes());
        assert_eq!(&h.to_bytes()[..], &wire[4..]);
        // parsing the trailer alone gives the same
        assert_eq!(SignedTrailer::parse(&wire[4..]).unwrap(), h);
        // the former names still work
        assert_eq!(HEADER_LEN, TRAILER_LEN);
        let _: SignedHeader = h;
        let layer = Integrity::new(cfg(&k, &[&k], "svc"));
        let info = layer.info();
        assert_eq!(info.name, "integrity/2");
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
        assert_eq!(d.field("kind").unwrap().bytes, [2]);
        assert_eq!(d.field("protocol").unwrap().bytes, 0x31u16.to_be_bytes());
        assert_eq!(
            d.field("peer_protocol").unwrap().bytes,
            0x30u16.to_be_bytes()
        );
        assert_eq!(d.field("to").unwrap().bytes, [5; 32]);
        assert_eq!(d.field("in_reply_to").unwrap().bytes, [9; 16]);
        assert_eq!(d.field("signature").unwrap().offset, wire.len() - 64);
    }

    /// Found by the `integrity` fuzz target: a trusted requester's request
    /// with an all-zero msg_id was taken, and the reply the REP then signed
    /// named it in `in_reply_to` as zeros, the wire's "none": a reply no
    /// requester can parse (refused as `unsigned`), and a trailer this
    /// layer should never write. Such a request cannot be answered, so it
    /// does not parse.
    #[test]
    fn fuzz_integrity_request_with_zero_msg_id_is_refused() {
        let k = SigningKeypair::generate();
        let rep = Integrity::new(cfg(&k, &[&k], "svc")).on_protocol(ProtocolId::REP0);
        let s = Signer::new(k.clone(), "svc").unwrap();
        let mut f = RecordFields {
            kind: RecordKind::Request,
            protocol: ProtocolId::REQ0,
            peer_protocol: ProtocolId::REP0,
            to: None,
            msg_id: [0; 16],
            epoch: 1,
            seq: 1,
            timestamp_ms: SystemClock.wall_ms(),
            valid_for_ms: 0,
            in_reply_to: None,
        };
        assert_eq!(
            check(&rep, &s.sign_with(&f, b"q")).map(|_| ()),
            Err(Rejection::Unsigned)
        );
        assert!(SignedTrailer::parse(&s.sign_with(&f, b"q")).is_err());
        // one set bit is enough
        f.msg_id[15] = 1;
        assert!(check(&rep, &s.sign_with(&f, b"q")).is_ok());
    }

    #[test]
    fn parse_refuses_short_unknown_version_unknown_kind_and_loose_fields() {
        assert!(SignedTrailer::parse(&[2u8; TRAILER_LEN - 1]).is_err());
        let k = SigningKeypair::generate();
        let s = Signer::new(k, "a").unwrap();
        // a payload in front: offsets count from the start of the trailer
        let good = s.sign_with(&push_fields(1, 1, 1), b"topic/");
        let t = good.len() - TRAILER_LEN;
        assert_eq!(t, 6);
        assert!(SignedTrailer::parse(&good).is_ok());
        let at = |field: usize| t + field;
        let (kind, to) = (1, 1 + 1 + 2 + 2 + 32);
        let valid = to + 32 + 16 + 24;
        let reply = valid + 4;
        for (what, i, v) in [
            ("version 1 (the former format)", at(0), 1),
            ("version 3", at(0), 3),
            ("kind 0", at(kind), 0),
            ("kind 4", at(kind), 4),
            ("a one-way message with an addressee", at(to), 1),
            ("a one-way message naming a request", at(reply), 1),
            ("a one-way message with a resend validity", at(valid), 1),
        ] {
            let mut v2 = good.clone();
            v2[i] = v;
            assert!(SignedTrailer::parse(&v2).is_err(), "{what}");
        }
        // a reply must name its request and its requester
        let mut f = push_fields(1, 1, 1);
        f.kind = RecordKind::Reply;
        f.in_reply_to = Some([1; 16]);
        assert!(
            SignedTrailer::parse(&s.sign_with(&f, b"")).is_err(),
            "no requester"
        );
        f.to = Some([2; 32]);
        assert!(SignedTrailer::parse(&s.sign_with(&f, b"")).is_ok());
        f.in_reply_to = None;
        assert!(
            SignedTrailer::parse(&s.sign_with(&f, b"")).is_err(),
            "no request"
        );
        f.in_reply_to = Some([1; 16]);
        f.valid_for_ms = 1;
        assert!(
            SignedTrailer::parse(&s.sign_with(&f, b"")).is_err(),
            "a reply resent"
        );
        // a request answers nothing, and may say how long it is resent
        f.kind = RecordKind::Request;
        assert!(SignedTrailer::parse(&s.sign_with(&f, b"")).is_err());
        f.in_reply_to = None;
        assert!(SignedTrailer::parse(&s.sign_with(&f, b"")).is_ok());
        // one byte lost at the end: the trailer is read from the wrong place
        assert!(SignedTrailer::parse(&good[..good.len() - 1]).is_err());
    }

    #[test]
    fn an_audience_is_required() {
        let k = SigningKeypair::generate();
        assert!(matches!(
            IntegrityConfig::new(k.clone(), [k.verifying_key()], ""),
            Err(ConfigError::NoAudience)
        ));
        let long = "x".repeat(MAX_AUDIENCE + 1);
        assert!(matches!(
            IntegrityConfig::new(k.clone(), [k.verifying_key()], &long),
            Err(ConfigError::AudienceTooLong(_))
        ));
        assert!(IntegrityConfig::new(k.clone(), [k.verifying_key()], "billing").is_ok());
    }

    #[test]
    fn audience_is_signed_and_every_record_field_matters() {
        let k = SigningKeypair::generate();
        let pull = |aud| Integrity::new(cfg(&k, &[&k], aud)).on_protocol(ProtocolId::PULL0);
        let a = pull("billing");
        let b = pull("shipping");
        let f = push_fields(5, 0, SystemClock.wall_ms());
        let wire = a.shared.signer.sign_with(&f, b"pay 10");
        assert_eq!(
            check(&b, &wire).unwrap_err(),
            Rejection::BadSignature,
            "a message for another audience must not verify"
        );
        assert!(check(&a, &wire).is_ok());
        // flipping any single byte of the payload or trailer breaks it (or makes it unsigned)
        for i in 0..wire.len() {
            let mut w = wire.clone();
            w[i] ^= 0x01;
            let fresh = pull("billing");
            assert!(check(&fresh, &w).is_err(), "byte {i} is not protected");
        }
        assert_eq!(a.stats().bad_signature(), 0);
        assert_eq!(b.stats().bad_signature(), 1);
    }

    #[test]
    fn the_role_and_the_protocol_pair_are_signed_and_checked() {
        let k = SigningKeypair::generate();
        let at = |p| Integrity::new(cfg(&k, &[&k], "svc")).on_protocol(p);
        let now = SystemClock.wall_ms();
        let with = |kind, protocol, peer, to, reply| RecordFields {
            kind,
            protocol,
            peer_protocol: peer,
            to,
            in_reply_to: reply,
            ..push_fields(1, 0, now)
        };
        use ProtocolId as P;
        use RecordKind as K;
        let request = with(K::Request, P::REQ0, P::REP0, None, None);
        let reply = with(
            K::Reply,
            P::REP0,
            P::REQ0,
            Some(k.key_id().to_bytes()),
            Some([1; 16]),
        );
        let push = with(K::OneWay, P::PUSH0, P::PULL0, None, None);
        let publish = with(K::OneWay, P::PUB0, P::SUB0, None, None);
        let survey = with(K::Request, P::SURVEYOR0, P::RESPONDENT0, None, None);
        let cases = [
            (request, P::REP0, true),
            (request, P::RESPONDENT0, false),
            (request, P::PULL0, false),
            (reply, P::REP0, false),
            (reply, P::PULL0, false),
            (push, P::PULL0, true),
            (push, P::REP0, false),
            (push, P::SUB0, false),
            (publish, P::SUB0, true),
            (publish, P::PULL0, false),
            (survey, P::RESPONDENT0, true),
            (survey, P::REP0, false),
            // claiming the right kind with the wrong pair, or the reverse
            (
                with(K::Request, P::PUSH0, P::REP0, None, None),
                P::REP0,
                false,
            ),
            (
                with(K::Request, P::REQ0, P::PULL0, None, None),
                P::REP0,
                false,
            ),
            (
                with(K::OneWay, P::REQ0, P::REP0, None, None),
                P::REP0,
                false,
            ),
        ];
        let signer = Signer::new(k.clone(), "svc").unwrap();
        for (i, (f, receiver, ok)) in cases.iter().enumerate() {
            let r = at(*receiver);
            let got = check(&r, &signer.sign_with(f, b"x"));
            if *ok {
                assert!(got.is_ok(), "case {i}: {got:?}");
            } else {
                assert_eq!(got.unwrap_err(), Rejection::Misdirected, "case {i}");
            }
        }
        // a replier takes a request addressed to it or to nobody in particular
        let other = SigningKeypair::generate();
        let rep = at(P::REP0);
        let to_me = with(
            K::Request,
            P::REQ0,
            P::REP0,
            Some(k.key_id().to_bytes()),
            None,
        );
        let to_other = with(
            K::Request,
            P::REQ0,
            P::REP0,
            Some(other.key_id().to_bytes()),
            None,
        );
        assert!(check(&rep, &signer.sign_with(&to_me, b"x")).is_ok());
        assert_eq!(
            check(&rep, &signer.sign_with(&to_other, b"x")).unwrap_err(),
            Rejection::Misdirected
        );
        // a layer that knows no protocol takes nothing
        let lost = Integrity::new(cfg(&k, &[&k], "svc"));
        assert_eq!(
            check(&lost, &signer.sign_with(&push, b"x")).unwrap_err(),
            Rejection::Misdirected
        );
        assert!(lost.sign_message(b"x").is_err());
    }

    #[test]
    fn a_built_in_protocols_role_wins_over_the_constructor() {
        let k = SigningKeypair::generate();
        let rep = Integrity::requester(cfg(&k, &[&k], "svc")).on_protocol(ProtocolId::REP0);
        assert_eq!(rep.binding().unwrap().role, Role::Replier);
        let push = Integrity::replier(cfg(&k, &[&k], "svc")).on_protocol(ProtocolId::PUSH0);
        assert_eq!(push.binding().unwrap().role, Role::OneWay);
        // a protocol from another crate takes the constructor's word
        let star = Integrity::requester(cfg(&k, &[&k], "svc")).on_protocol(ProtocolId(0xa7));
        assert_eq!(star.binding().unwrap().role, Role::Requester);
        assert_eq!(
            Integrity::new(cfg(&k, &[&k], "svc"))
                .on_protocol(ProtocolId(0xa7))
                .binding()
                .unwrap()
                .role,
            Role::OneWay
        );
    }

    #[test]
    fn signing_uses_the_tailroom_without_copying() {
        let k = SigningKeypair::generate();
        let layer = Integrity::new(cfg(&k, &[&k], "x")).on_protocol(ProtocolId::PUSH0);
        let mut sink = SignSink {
            inner: Arc::new(Mutex::new(Box::pin(
                futures::sink::drain().sink_map_err(|e| match e {}),
            ))),
            shared: layer.shared.clone(),
            binding: layer.binding(),
            ctx: Arc::default(),
            buf: Vec::new(),
        };
        let mut m = Message::with_capacity(16, 7, TRAILER_LEN + 8);
        m.body_mut().copy_from_slice(b"payload");
        let ptr = m.body().as_ptr();
        let signed = sink.sign(m).unwrap();
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
        let small = sink.sign(Message::from(&b"p"[..])).unwrap();
        assert!(small.headroom() >= DEFAULT_HEADROOM);
        assert_eq!(&small.body()[..1], b"p");
        assert_eq!(small.body().len(), 1 + TRAILER_LEN);
        // shared (e.g. kept for a resend): copied, the other holder unchanged
        let mut held = Message::with_capacity(4, 1, TRAILER_LEN);
        held.body_mut().copy_from_slice(b"q");
        let copy = sink.sign(held.clone()).unwrap();
        assert_eq!(held.body(), b"q");
        assert_eq!(&copy.body()[..1], b"q");
        assert_ne!(copy.body().as_ptr(), held.body().as_ptr());
        assert!(copy.headroom() >= DEFAULT_HEADROOM);
        let pull = Integrity::new(cfg(&k, &[&k], "x")).on_protocol(ProtocolId::PULL0);
        for m in [&signed, &small, &copy] {
            assert!(check(&pull, m.body()).is_ok());
        }
        assert_eq!(layer.stats().signed(), 3);
    }

    #[test]
    fn sign_message_keeps_the_payload_in_front_for_topic_matching() {
        let k = SigningKeypair::generate();
        let layer = Integrity::new(cfg(&k, &[&k], "news")).on_protocol(ProtocolId::PUB0);
        let m = layer.sign_message(b"weather/paris 21C").unwrap();
        assert!(m.body().starts_with(b"weather/paris 21C"));
        assert_eq!(m.body().len(), 17 + TRAILER_LEN);
        assert!(m.headroom() >= DEFAULT_HEADROOM);
        let sub = Integrity::new(cfg(&k, &[&k], "news")).on_protocol(ProtocolId::SUB0);
        assert!(check(&sub, m.body()).is_ok());
        // a replier has nothing to sign on its own
        let rep = Integrity::new(cfg(&k, &[&k], "news")).on_protocol(ProtocolId::REP0);
        assert!(rep.sign_message(b"x").is_err());
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

    /// A PULL trusting `sender`, on `clock`, tracking `epochs` epochs.
    fn receiver(sender: &SigningKeypair, clock: &Arc<ManualClock>, epochs: usize) -> Integrity {
        let me = SigningKeypair::generate();
        Integrity::new(
            cfg(&me, &[sender], "svc")
                .max_epochs_per_signer(epochs)
                .clock(clock.clone()),
        )
        .on_protocol(ProtocolId::PULL0)
    }

    #[test]
    fn a_wall_clock_step_back_locks_no_honest_sender_out() {
        let k = SigningKeypair::generate();
        let signer = Signer::new(k.clone(), "svc").unwrap();
        // both clocks an hour ahead (a bad NTP server, a wrong RTC at boot)
        let clock = ManualClock::at(T + HOUR);
        let rx = receiver(&k, &clock, 1);
        let early = signer.sign_with(&push_fields(1, 0, T + HOUR), b"a");
        assert!(check(&rx, &early).is_ok());
        // corrected; a minute later the sender restarts as a new epoch
        clock.set_wall(T);
        clock.pass(60_000);
        let restart = signer.sign_with(&push_fields(2, 0, T + 60_000), b"b");
        assert!(
            check(&rx, &restart).is_ok(),
            "an honest sender was locked out until the old future date"
        );
        // the early message, replayed once the wall clock is wrong again,
        // is still refused although its window is gone
        clock.set_wall(T + HOUR);
        assert_eq!(check(&rx, &early).unwrap_err(), Rejection::Replayed);
        let s = rx.stats().snapshot();
        assert_eq!((s.replayed, s.total_dropped()), (1, 1), "{s:?}");
    }

    #[test]
    fn a_receiver_clock_stepping_forward_and_back_accepts_no_replay() {
        let k = SigningKeypair::generate();
        let signer = Signer::new(k.clone(), "svc").unwrap();
        let clock = ManualClock::at(T);
        let rx = receiver(&k, &clock, 2);
        let m = signer.sign_with(&push_fields(1, 0, T), b"pay");
        assert!(check(&rx, &m).is_ok());
        // the wall clock jumps an hour ahead, one second passes: by the wall
        // clock epoch 1 is long dead, but it has been silent for a second
        clock.set_wall(T + HOUR);
        clock.pass(1_000);
        let second = signer.sign_with(&push_fields(2, 0, T + HOUR + 1_000), b"x");
        assert!(check(&rx, &second).is_ok());
        // no room for a third: epoch 1 is not forgotten on the wall clock's word
        let third = signer.sign_with(&push_fields(3, 0, T + HOUR + 1_000), b"x");
        assert_eq!(check(&rx, &third).unwrap_err(), Rejection::Replayed);
        // stepped back: epoch 1's message is fresh again, and still seen
        clock.set_wall(T + 2_000);
        assert_eq!(check(&rx, &m).unwrap_err(), Rejection::Replayed);
        // once epoch 1 has really been silent long enough, a new epoch gets
        // its room, and epoch 1's message stays refused
        clock.pass(duration_ms(DEFAULT_MAX_AGE + DEFAULT_MAX_SKEW * 2));
        let fresh = signer.sign_with(&push_fields(4, 0, clock.wall_ms()), b"y");
        assert!(check(&rx, &fresh).is_ok());
        clock.set_wall(T + 2_000);
        assert_eq!(check(&rx, &m).unwrap_err(), Rejection::Replayed);
        let s = rx.stats().snapshot();
        assert_eq!((s.replayed, s.total_dropped()), (3, 3), "{s:?}");
    }

    #[test]
    fn a_sender_whose_clock_stepped_back_keeps_its_epoch_and_its_replays_stay_refused() {
        let k = SigningKeypair::generate();
        let signer = Signer::new(k.clone(), "svc").unwrap();
        let clock = ManualClock::at(T);
        let rx = receiver(&k, &clock, 4);
        let sent: Vec<Vec<u8>> = (0..3)
            .map(|i| signer.sign_with(&push_fields(1, i, T + i), b"m"))
            .collect();
        for m in &sent {
            assert!(check(&rx, m).is_ok());
        }
        // the sender's clock steps back 20 s (within max_age): its next
        // messages pass, its old ones still do not
        let back = signer.sign_with(&push_fields(1, 3, T - 20_000), b"n");
        assert!(check(&rx, &back).is_ok());
        for m in &sent {
            assert_eq!(check(&rx, m).unwrap_err(), Rejection::Replayed);
        }
        // stepped back beyond max_age: stale (a clock problem, not a
        // replay), and accepted again once the clock is right
        let far = signer.sign_with(&push_fields(1, 4, T - HOUR), b"o");
        assert_eq!(check(&rx, &far).unwrap_err(), Rejection::Stale);
        let fixed = signer.sign_with(&push_fields(1, 5, T + 10), b"p");
        assert!(check(&rx, &fixed).is_ok());
    }

    /// `protocol`'s layer on `clock`, told the socket's options.
    fn built(i: Integrity, protocol: ProtocolId, opts: &sp_core::Options) -> (Integrity, Binding) {
        let spec = protocol.spec().unwrap();
        let b = Binding::of(spec, None).with_resends(Some(opts), &i.shared);
        let i = Integrity {
            preset: Some(b),
            ..i
        };
        (i, b)
    }

    #[test]
    fn a_req_signs_its_requests_valid_for_its_resends_and_a_rep_caps_that() {
        let k = SigningKeypair::generate();
        let opts = sp_core::Options::default();
        // REQ's default: a resend every 60 s; max_age 30 s, max_skew 5 s
        let (_, b) = built(
            Integrity::new(cfg(&k, &[&k], "svc")),
            ProtocolId::REQ0,
            &opts,
        );
        assert_eq!(b.valid_for_ms, 125_000, "two resends and the skew");
        assert!(!b.keeps_replies);
        // short resends: short validity (a replier takes at least its own
        // max_age anyway); none: none
        let o = sp_core::Options::default().req_resend(Some(Duration::from_secs(1)));
        let (_, b) = built(Integrity::new(cfg(&k, &[&k], "svc")), ProtocolId::REQ0, &o);
        assert_eq!(b.valid_for_ms, 7_000);
        let o = sp_core::Options::default().req_resend(None);
        let (_, b) = built(Integrity::new(cfg(&k, &[&k], "svc")), ProtocolId::REQ0, &o);
        assert_eq!(b.valid_for_ms, 0);
        // a surveyor does not resend
        let (_, b) = built(
            Integrity::new(cfg(&k, &[&k], "svc")),
            ProtocolId::SURVEYOR0,
            &opts,
        );
        assert_eq!(b.valid_for_ms, 0);
        let (_, b) = built(
            Integrity::new(cfg(&k, &[&k], "svc")),
            ProtocolId::REP0,
            &opts,
        );
        assert!(b.keeps_replies);
        let (_, b) = built(
            Integrity::new(cfg(&k, &[&k], "svc")),
            ProtocolId::RESPONDENT0,
            &opts,
        );
        assert!(!b.keeps_replies, "surveys are not resent");

        // at the REP: 61 s old is taken when its REQ said 125 s, not when it
        // said nothing; 301 s is beyond the REP's own 300 s bound whatever
        // the request says
        let signer = Signer::new(k.clone(), "svc").unwrap();
        let clock = ManualClock::at(T);
        let (rep, _) = built(
            Integrity::new(cfg(&k, &[&k], "svc").clock(clock.clone())),
            ProtocolId::REP0,
            &opts,
        );
        let request = |seq, age: u64, valid| RecordFields {
            kind: RecordKind::Request,
            protocol: ProtocolId::REQ0,
            peer_protocol: ProtocolId::REP0,
            valid_for_ms: valid,
            ..push_fields(1, seq, T - age)
        };
        let cases = [
            (request(0, 61_000, 125_000), None),
            (request(1, 61_000, 0), Some(Rejection::Stale)),
            (request(2, 29_000, 0), None),
            (request(3, 126_000, 125_000), Some(Rejection::Stale)),
            (request(4, 301_000, u32::MAX), Some(Rejection::Stale)),
            (request(5, 299_000, u32::MAX), None),
        ];
        for (i, (f, want)) in cases.iter().enumerate() {
            let got = check(&rep, &signer.sign_with(f, b"q"));
            assert_eq!(got.err(), *want, "case {i}");
        }
    }

    #[test]
    fn a_request_is_taken_once_whatever_the_clocks_do() {
        let k = SigningKeypair::generate();
        let signer = Signer::new(k.clone(), "svc").unwrap();
        let clock = ManualClock::at(T);
        let (rep, _) = built(
            Integrity::new(cfg(&k, &[&k], "svc").clock(clock.clone())),
            ProtocolId::REP0,
            &sp_core::Options::default(),
        );
        let f = RecordFields {
            kind: RecordKind::Request,
            protocol: ProtocolId::REQ0,
            peer_protocol: ProtocolId::REP0,
            valid_for_ms: 125_000,
            ..push_fields(1, 0, T)
        };
        let wire = signer.sign_with(&f, b"pay 10");
        let b = rep.binding();
        let verify = |again: &mut Option<Answer>| {
            rep.shared
                .verify(&wire, b, None, &mut Vec::new(), again)
                .map(|_| ())
        };
        let mut again = None;
        assert_eq!(verify(&mut again), Ok(()));
        // sent again while it is being answered: dropped, nothing to resend
        clock.pass(1_000);
        assert_eq!(verify(&mut again), Err(Rejection::Duplicate));
        assert!(again.is_none());
        // answered: sent again, its reply goes out again
        let key = (k.key_id().to_bytes(), 1, 0);
        let answer = Answer {
            record: Arc::new(b"record...reply".to_vec()),
            payload_len: 5,
            requester: k.key_id().to_bytes(),
            in_reply_to: f.msg_id,
        };
        lock_answers(&rep.shared.answers).answered(&key, answer, clock.monotonic());
        clock.pass(59_000);
        assert_eq!(verify(&mut again), Err(Rejection::Duplicate));
        assert_eq!(
            again.take().map(|a| a.payload().to_vec()),
            Some(b"reply".to_vec())
        );
        // past its validity: stale
        clock.pass(70_000);
        assert_eq!(verify(&mut again), Err(Rejection::Stale));
        // the wall clock steps back to when it was fresh: the reply is no
        // longer kept (monotonic), and the request is still not run again
        clock.set_wall(T + 1_000);
        assert_eq!(verify(&mut again), Err(Rejection::Replayed));
        assert!(again.is_none());
        let s = rep.stats().snapshot();
        assert_eq!((s.duplicate, s.stale, s.replayed), (2, 1, 1), "{s:?}");
    }
}
