//! The signed record and the wire trailer: encoding, parsing, signing.

use ed25519_dalek::Signature;

use crate::keys::SigningKeypair;

/// Domain-separation label that starts every signed record.
pub const DOMAIN: &[u8] = b"spstack/integrity/v1";

/// Version byte of the wire trailer.
pub const VERSION: u8 = 1;

/// Bytes of the wire trailer, the last bytes of the message body (after the
/// payload):
/// version (1) | signer key id (32) | msg_id (16) | epoch (8, BE) | seq (8, BE)
/// | timestamp_ms (8, BE) | reply flag (1) | in_reply_to (16, zeros when the
/// flag is 0) | Ed25519 signature (64).
pub const TRAILER_LEN: usize = 1 + 32 + 16 + 8 + 8 + 8 + 1 + 16 + 64;

/// The former name of [`TRAILER_LEN`] (the block used to precede the body;
/// it now follows it). Same value.
pub const HEADER_LEN: usize = TRAILER_LEN;

/// Longest audience string (it is length-prefixed with a u16).
pub const MAX_AUDIENCE: usize = u16::MAX as usize;

const OFF_KEY: usize = 1;
const OFF_MSG_ID: usize = OFF_KEY + 32;
const OFF_EPOCH: usize = OFF_MSG_ID + 16;
const OFF_SEQ: usize = OFF_EPOCH + 8;
const OFF_TS: usize = OFF_SEQ + 8;
const OFF_FLAG: usize = OFF_TS + 8;
const OFF_REPLY: usize = OFF_FLAG + 1;
const OFF_SIG: usize = OFF_REPLY + 16;

/// The per-message fields of a signed record (everything but the signer,
/// the audience and the body).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordFields {
    /// 128-bit message id; replies name it in `in_reply_to`.
    pub msg_id: [u8; 16],
    /// The sending layer instance's random epoch.
    pub epoch: u64,
    /// The sender's sequence number within the epoch (socket-wide).
    pub seq: u64,
    /// Milliseconds since the Unix epoch when signed.
    pub timestamp_ms: u64,
    /// The `msg_id` of the request this answers, if it is a reply.
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

/// The former name of [`SignedTrailer`].
pub type SignedHeader = SignedTrailer;

impl SignedTrailer {
    /// Parses the trailer in the last [`TRAILER_LEN`] bytes of `body` (a
    /// whole message body, or just the trailer). Errors say what is wrong;
    /// a body shorter than [`TRAILER_LEN`] or of another version is not
    /// signed by this layer. The payload is `&body[..body.len() - TRAILER_LEN]`.
    pub fn parse(body: &[u8]) -> Result<SignedTrailer, &'static str> {
        // the only length check; every offset below is < TRAILER_LEN
        let Some(at) = body.len().checked_sub(TRAILER_LEN) else {
            return Err("shorter than the integrity trailer");
        };
        let t = &body[at..];
        if t[0] != VERSION {
            return Err("unknown integrity trailer version");
        }
        let in_reply_to = match t[OFF_FLAG] {
            0 => {
                // unsigned bytes must not be free to change: require zeros
                if t[OFF_REPLY..OFF_SIG].iter().any(|&b| b != 0) {
                    return Err("in_reply_to bytes set without the reply flag");
                }
                None
            }
            1 => Some(arr::<16>(t, OFF_REPLY)),
            _ => return Err("reply flag is neither 0 nor 1"),
        };
        Ok(SignedTrailer {
            key_id: arr::<32>(t, OFF_KEY),
            fields: RecordFields {
                msg_id: arr::<16>(t, OFF_MSG_ID),
                epoch: u64::from_be_bytes(arr::<8>(t, OFF_EPOCH)),
                seq: u64::from_be_bytes(arr::<8>(t, OFF_SEQ)),
                timestamp_ms: u64::from_be_bytes(arr::<8>(t, OFF_TS)),
                in_reply_to,
            },
            signature: arr::<64>(t, OFF_SIG),
        })
    }

    /// The trailer's wire bytes.
    pub fn to_bytes(&self) -> [u8; TRAILER_LEN] {
        let f = &self.fields;
        let mut h = [0u8; TRAILER_LEN];
        h[0] = VERSION;
        h[OFF_KEY..OFF_MSG_ID].copy_from_slice(&self.key_id);
        h[OFF_MSG_ID..OFF_EPOCH].copy_from_slice(&f.msg_id);
        h[OFF_EPOCH..OFF_SEQ].copy_from_slice(&f.epoch.to_be_bytes());
        h[OFF_SEQ..OFF_TS].copy_from_slice(&f.seq.to_be_bytes());
        h[OFF_TS..OFF_FLAG].copy_from_slice(&f.timestamp_ms.to_be_bytes());
        if let Some(r) = f.in_reply_to {
            h[OFF_FLAG] = 1;
            h[OFF_REPLY..OFF_SIG].copy_from_slice(&r);
        }
        h[OFF_SIG..].copy_from_slice(&self.signature);
        h
    }
}

/// Writes the canonical signed record into `out` (cleared first):
///
/// ```text
/// u16 len || "spstack/integrity/v1" || key_id (32) || u16 len || audience
///   || msg_id (16) || epoch (u64) || seq (u64) || timestamp_ms (u64)
///   || flag (u8) [|| in_reply_to (16) if flag = 1] || u64 len || body
/// ```
///
/// All integers big-endian. Fixed-size fields need no prefix; the two
/// variable ones are length-prefixed, so no two field lists encode alike.
/// The body is copied: Ed25519 (not prehashed) hashes the message twice, so
/// it must be one contiguous slice. Keeping `out` between calls makes that
/// one memcpy of the body per message, with no allocation once it has grown.
pub fn encode_record(
    out: &mut Vec<u8>,
    key_id: &[u8; 32],
    audience: &[u8],
    fields: &RecordFields,
    body: &[u8],
) {
    out.clear();
    out.reserve(2 + DOMAIN.len() + 32 + 2 + audience.len() + 16 + 24 + 17 + 8 + body.len());
    out.extend_from_slice(&(DOMAIN.len() as u16).to_be_bytes());
    out.extend_from_slice(DOMAIN);
    out.extend_from_slice(key_id);
    // the audience length is checked when the config is made (<= u16::MAX)
    out.extend_from_slice(&(audience.len().min(MAX_AUDIENCE) as u16).to_be_bytes());
    out.extend_from_slice(&audience[..audience.len().min(MAX_AUDIENCE)]);
    out.extend_from_slice(&fields.msg_id);
    out.extend_from_slice(&fields.epoch.to_be_bytes());
    out.extend_from_slice(&fields.seq.to_be_bytes());
    out.extend_from_slice(&fields.timestamp_ms.to_be_bytes());
    match fields.in_reply_to {
        Some(r) => {
            out.push(1);
            out.extend_from_slice(&r);
        }
        None => out.push(0),
    }
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
            key_id: key.key_id(),
            key,
            audience: audience.as_bytes().to_vec(),
        })
    }

    /// A signer with the empty audience (which always fits).
    pub(crate) fn without_audience(key: SigningKeypair) -> Signer {
        Signer {
            key_id: key.key_id(),
            key,
            audience: Vec::new(),
        }
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
