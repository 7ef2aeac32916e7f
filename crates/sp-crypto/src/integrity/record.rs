//! The signed record and the wire trailer: encoding, parsing, signing.

use ed25519_dalek::Signature;
use sp_core::ProtocolId;

use crate::keys::SigningKeypair;

/// Domain-separation label that starts every signed record.
pub const DOMAIN: &[u8] = b"spstack/integrity/v2";

/// Version byte of the wire trailer.
pub const VERSION: u8 = 2;

/// Bytes of the wire trailer, the last bytes of the message body (after the
/// payload):
///
/// ```text
/// version (1) | kind (1) | protocol (2, BE) | peer_protocol (2, BE)
///   | signer key id (32) | to (32, zeros: none) | msg_id (16)
///   | epoch (8, BE) | seq (8, BE) | timestamp_ms (8, BE)
///   | valid_for_ms (4, BE) | in_reply_to (16, zeros: none)
///   | Ed25519 signature (64)
/// ```
pub const TRAILER_LEN: usize = 1 + 1 + 2 + 2 + 32 + 32 + 16 + 8 + 8 + 8 + 4 + 16 + 64;

/// The former name of [`TRAILER_LEN`] (the block used to precede the body;
/// it now follows it). Same value.
pub const HEADER_LEN: usize = TRAILER_LEN;

/// Longest audience string (it is length-prefixed with a u16).
pub const MAX_AUDIENCE: usize = u16::MAX as usize;

const OFF_KIND: usize = 1;
const OFF_PROTO: usize = OFF_KIND + 1;
const OFF_PEER: usize = OFF_PROTO + 2;
const OFF_KEY: usize = OFF_PEER + 2;
const OFF_TO: usize = OFF_KEY + 32;
const OFF_MSG_ID: usize = OFF_TO + 32;
const OFF_EPOCH: usize = OFF_MSG_ID + 16;
const OFF_SEQ: usize = OFF_EPOCH + 8;
const OFF_TS: usize = OFF_SEQ + 8;
const OFF_VALID: usize = OFF_TS + 8;
const OFF_REPLY: usize = OFF_VALID + 4;
const OFF_SIG: usize = OFF_REPLY + 16;

/// What a signed message is, in the exchange its protocol pair defines.
/// With the pair it tells a request (REQ to REP) from a survey (SURVEYOR
/// to RESPONDENT), a reply from a response, a PUSH job from a PUB update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RecordKind {
    /// A request or a survey: its sender waits for replies naming it.
    Request,
    /// A reply or a response: names the request it answers and its sender.
    Reply,
    /// Neither (PUSH/PULL, PUB/SUB, BUS, PAIR).
    OneWay,
}

impl RecordKind {
    /// The byte on the wire and in the record.
    pub fn to_byte(self) -> u8 {
        match self {
            RecordKind::Request => 1,
            RecordKind::Reply => 2,
            RecordKind::OneWay => 3,
        }
    }

    /// The kind of a wire byte.
    pub fn from_byte(b: u8) -> Option<RecordKind> {
        match b {
            1 => Some(RecordKind::Request),
            2 => Some(RecordKind::Reply),
            3 => Some(RecordKind::OneWay),
            _ => None,
        }
    }

    /// Its name in logs.
    pub fn name(self) -> &'static str {
        match self {
            RecordKind::Request => "request",
            RecordKind::Reply => "reply",
            RecordKind::OneWay => "one-way",
        }
    }
}

/// The per-message fields of a signed record (everything but the signer,
/// the audience and the body).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordFields {
    /// Request, reply or one-way.
    pub kind: RecordKind,
    /// The sender's SP protocol.
    pub protocol: ProtocolId,
    /// The SP protocol the message is meant for (the sender's peer).
    pub peer_protocol: ProtocolId,
    /// A request: the key id of the one server it is addressed to (`None`:
    /// any server the requester accepts). A reply: the key id of the
    /// requester it answers. One-way: `None`.
    pub to: Option<[u8; 32]>,
    /// 128-bit message id; replies name it in `in_reply_to`.
    pub msg_id: [u8; 16],
    /// The sending layer instance's random epoch.
    pub epoch: u64,
    /// The sender's sequence number within the epoch (socket-wide).
    pub seq: u64,
    /// Milliseconds since the Unix epoch when signed.
    pub timestamp_ms: u64,
    /// A request: how long after `timestamp_ms` its sender may still send
    /// these same bytes again (its protocol's resends), so a replier takes
    /// it that long (within its own `max_request_age`); 0: no resends,
    /// `max_age` applies. Zero for every other kind.
    pub valid_for_ms: u32,
    /// A reply: the `msg_id` of the request it answers.
    pub in_reply_to: Option<[u8; 16]>,
}

/// A parsed wire trailer (not yet verified: parsing proves nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignedTrailer {
    /// SHA-256 of the signer's Ed25519 public key.
    pub key_id: [u8; 32],
    /// The signed fields.
    pub fields: RecordFields,
    /// The Ed25519 signature over the record.
    pub signature: [u8; 64],
}

fn arr<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[at..at + N]);
    a
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(arr::<2>(b, at))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(arr::<8>(b, at))
}

/// `None` for all zeros (the wire's "none").
fn non_zero<const N: usize>(a: [u8; N]) -> Option<[u8; N]> {
    a.iter().any(|&b| b != 0).then_some(a)
}

/// The former name of [`SignedTrailer`].
pub type SignedHeader = SignedTrailer;

impl SignedTrailer {
    /// Parses the trailer in the last [`TRAILER_LEN`] bytes of `body` (a
    /// whole message body, or just the trailer). Errors say what is wrong;
    /// a body shorter than [`TRAILER_LEN`] or of another version is not
    /// signed by this layer. The payload is `&body[..body.len() - TRAILER_LEN]`.
    ///
    /// Only one encoding of each field list parses: a field a kind does not
    /// use must be zero, and one it needs must be set (a request's `msg_id`
    /// too: its reply names it, where zeros mean none).
    pub fn parse(body: &[u8]) -> Result<SignedTrailer, &'static str> {
        // the only length check; every offset below is < TRAILER_LEN
        let Some(at) = body.len().checked_sub(TRAILER_LEN) else {
            return Err("shorter than the integrity trailer");
        };
        let t = &body[at..];
        if t[0] != VERSION {
            return Err("unknown integrity trailer version");
        }
        let Some(kind) = RecordKind::from_byte(t[OFF_KIND]) else {
            return Err("unknown record kind");
        };
        let to = non_zero(arr::<32>(t, OFF_TO));
        let in_reply_to = non_zero(arr::<16>(t, OFF_REPLY));
        match kind {
            RecordKind::Reply if to.is_none() || in_reply_to.is_none() => {
                return Err("a reply must name its request and its requester")
            }
            RecordKind::Request if in_reply_to.is_some() => {
                return Err("a request names no request it answers")
            }
            // a reply names its request by msg_id, and zeros there mean
            // none: a request with a zero msg_id could never be answered
            RecordKind::Request if t[OFF_MSG_ID..OFF_EPOCH].iter().all(|&b| b == 0) => {
                return Err("a request needs a msg_id (all zeros cannot be answered)")
            }
            RecordKind::OneWay if to.is_some() || in_reply_to.is_some() => {
                return Err("a one-way message names no addressee and no request")
            }
            _ => {}
        }
        let valid_for_ms = u32::from_be_bytes(arr::<4>(t, OFF_VALID));
        if kind != RecordKind::Request && valid_for_ms != 0 {
            return Err("only a request has a resend validity");
        }
        Ok(SignedTrailer {
            key_id: arr::<32>(t, OFF_KEY),
            fields: RecordFields {
                kind,
                protocol: ProtocolId(u16_at(t, OFF_PROTO)),
                peer_protocol: ProtocolId(u16_at(t, OFF_PEER)),
                to,
                msg_id: arr::<16>(t, OFF_MSG_ID),
                epoch: u64_at(t, OFF_EPOCH),
                seq: u64_at(t, OFF_SEQ),
                timestamp_ms: u64_at(t, OFF_TS),
                valid_for_ms,
                in_reply_to,
            },
            signature: arr::<64>(t, OFF_SIG),
        })
    }

    /// The trailer's wire bytes.
    pub fn to_bytes(&self) -> [u8; TRAILER_LEN] {
        let mut h = [0u8; TRAILER_LEN];
        h[0] = VERSION;
        write_fields(&mut h[..OFF_SIG], &self.key_id, &self.fields);
        h[OFF_SIG..].copy_from_slice(&self.signature);
        h
    }
}

/// The trailer up to the signature: exactly the fixed-size part of the
/// record too, so both are written by this one function.
fn write_fields(h: &mut [u8], key_id: &[u8; 32], f: &RecordFields) {
    h[OFF_KIND] = f.kind.to_byte();
    h[OFF_PROTO..OFF_PEER].copy_from_slice(&f.protocol.0.to_be_bytes());
    h[OFF_PEER..OFF_KEY].copy_from_slice(&f.peer_protocol.0.to_be_bytes());
    h[OFF_KEY..OFF_TO].copy_from_slice(key_id);
    h[OFF_TO..OFF_MSG_ID].copy_from_slice(&f.to.unwrap_or([0; 32]));
    h[OFF_MSG_ID..OFF_EPOCH].copy_from_slice(&f.msg_id);
    h[OFF_EPOCH..OFF_SEQ].copy_from_slice(&f.epoch.to_be_bytes());
    h[OFF_SEQ..OFF_TS].copy_from_slice(&f.seq.to_be_bytes());
    h[OFF_TS..OFF_VALID].copy_from_slice(&f.timestamp_ms.to_be_bytes());
    h[OFF_VALID..OFF_REPLY].copy_from_slice(&f.valid_for_ms.to_be_bytes());
    h[OFF_REPLY..OFF_SIG].copy_from_slice(&f.in_reply_to.unwrap_or([0; 16]));
}

/// Writes the canonical signed record into `out` (cleared first):
///
/// ```text
/// u16 len || "spstack/integrity/v2" || u16 len || audience
///   || kind (u8) || protocol (u16) || peer_protocol (u16) || key_id (32)
///   || to (32) || msg_id (16) || epoch (u64) || seq (u64)
///   || timestamp_ms (u64) || valid_for_ms (u32) || in_reply_to (16)
///   || u64 len || body
/// ```
///
/// All integers big-endian; `to` and `in_reply_to` are zeros when absent
/// (a parse refuses the combinations that would make two field lists
/// encode alike). The two variable fields are length-prefixed, so no two
/// records encode alike. The body is copied: Ed25519 (not prehashed) hashes
/// the message twice, so it must be one contiguous slice. Keeping `out`
/// between calls makes that one memcpy of the body per message, with no
/// allocation once it has grown.
pub fn encode_record(
    out: &mut Vec<u8>,
    key_id: &[u8; 32],
    audience: &[u8],
    fields: &RecordFields,
    body: &[u8],
) {
    let aud = &audience[..audience.len().min(MAX_AUDIENCE)];
    out.clear();
    out.reserve(2 + DOMAIN.len() + 2 + aud.len() + OFF_SIG - OFF_KIND + 8 + body.len());
    out.extend_from_slice(&(DOMAIN.len() as u16).to_be_bytes());
    out.extend_from_slice(DOMAIN);
    // the audience length is checked when the config is made (<= u16::MAX)
    out.extend_from_slice(&(aud.len() as u16).to_be_bytes());
    out.extend_from_slice(aud);
    let mut fixed = [0u8; OFF_SIG];
    write_fields(&mut fixed, key_id, fields);
    out.extend_from_slice(&fixed[OFF_KIND..]);
    out.extend_from_slice(&(body.len() as u64).to_be_bytes());
    out.extend_from_slice(body);
    // the one copy of the body this layer makes (Ed25519 signs one slice)
    sp_core::record_copy(body.len());
}

/// Signs records for one key and audience.
#[derive(Clone, Debug)]
pub struct Signer {
    key: SigningKeypair,
    key_id: [u8; 32],
    audience: Vec<u8>,
}

impl Signer {
    /// A signer for `key` and `audience`; `None` if the audience is longer
    /// than [`MAX_AUDIENCE`] bytes.
    pub fn new(key: SigningKeypair, audience: &str) -> Option<Signer> {
        if audience.len() > MAX_AUDIENCE {
            return None;
        }
        Some(Signer {
            key_id: key.key_id().to_bytes(),
            key,
            audience: audience.as_bytes().to_vec(),
        })
    }

    /// The same key for another audience; `None` if longer than
    /// [`MAX_AUDIENCE`] bytes.
    pub fn with_audience(&self, audience: &str) -> Option<Signer> {
        Signer::new(self.key.clone(), audience)
    }

    /// The signer's key id.
    pub fn key_id(&self) -> [u8; 32] {
        self.key_id
    }

    /// The audience signed into every record.
    pub fn audience(&self) -> &[u8] {
        &self.audience
    }

    /// Signs a record with these fields over `body` and returns the wire
    /// trailer, building the record in `buf` (reused between calls).
    pub fn sign_into(
        &self,
        fields: &RecordFields,
        body: &[u8],
        buf: &mut Vec<u8>,
    ) -> [u8; TRAILER_LEN] {
        encode_record(buf, &self.key_id, &self.audience, fields, body);
        let sig: Signature = self.key.sign(buf);
        SignedTrailer {
            key_id: self.key_id,
            fields: *fields,
            signature: sig.to_bytes(),
        }
        .to_bytes()
    }

    /// Body and trailer as the layer puts them in a message body (`body`
    /// first, then the [`TRAILER_LEN`]-byte trailer), with every field given
    /// explicitly. **For tests and tools** (forging a stale timestamp,
    /// replaying a sequence number, checking another implementation); the
    /// layer itself picks the fields.
    pub fn sign_with(&self, fields: &RecordFields, body: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        let trailer = self.sign_into(fields, body, &mut buf);
        let mut out = Vec::with_capacity(body.len() + TRAILER_LEN);
        out.extend_from_slice(body);
        out.extend_from_slice(&trailer);
        out
    }
}
