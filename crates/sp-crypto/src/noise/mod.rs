//! Noise hop-by-hop encryption: a pipe layer.
//!
//! ```no_run
//! # async fn demo() -> sp_core::Result<()> {
//! use sp_crypto::noise::{self, NoiseConfig, StaticKeypair};
//! use sp_core::SocketBuilder;
//! use sp_protocols::{raw, Plain};
//!
//! let (server_key, client_key) = (StaticKeypair::generate(), StaticKeypair::generate());
//! let (server_pub, client_pub) = (server_key.public(), client_key.public());
//!
//! let server = SocketBuilder::new(raw::Pair0Raw)
//!     .cooked(Plain::PAIR0)
//!     .transport(std::sync::Arc::new(sp_transports::Tcp))
//!     // fail closed: only the listed key gets in
//!     .pipe_layer(noise::layer(NoiseConfig::new(server_key).allow(client_pub)))
//!     .build();
//! let ep = server.listen("tcp://127.0.0.1:0").await?;
//!
//! let client = SocketBuilder::new(raw::Pair0Raw)
//!     .cooked(Plain::PAIR0)
//!     .transport(std::sync::Arc::new(sp_transports::Tcp))
//!     .pipe_layer(noise::layer(NoiseConfig::new(client_key).allow(server_pub)))
//!     .build();
//! client.dial(ep.url()).await?;
//! client.send("secret").await?;
//! assert_eq!(server.recv().await?.body(), b"secret");
//! # Ok(()) }
//! ```
//!
//! ## What happens on a pipe
//!
//! 1. The transport exchanges announcements in clear (SP protocol and the
//!    list of pipe layers); the socket checks them.
//! 2. This layer, added first so it sits nearest the transport, runs
//!    `Noise_XX_25519_ChaChaPoly_BLAKE2s` (default: mutual authentication,
//!    the dialer's identity hidden from passive observers) or
//!    `Noise_IK_25519_ChaChaPoly_BLAKE2s` (the dialer must know the
//!    listener's public key, which then never crosses the wire; with the key
//!    confirmation of step 4 a pipe opens after as many round trips as with
//!    XX). The dialer is the initiator.
//!    The **prologue** is `"spstack-noise/2\0" || dialer announcement ||
//!    listener announcement`, so a man in the middle who rewrites either
//!    announcement, even consistently on both sides, breaks the handshake:
//!    no downgrade of the protocol or of the layer stack.
//! 3. Each side checks the peer's static key against its allow-list
//!    ([`NoiseConfig::allow`]); an empty list admits nobody unless
//!    [`NoiseConfig::accept_any_key`] was called. The key is exposed as
//!    `PipeInfo::peer_identity`. Low-order (all-zero DH) keys are refused:
//!    snow 0.10 does not check for them.
//! 4. IK only (`noise-ik/3`): the dialer follows message 2 with a **key
//!    confirmation**, one 16-byte ChaChaPoly tag under its transport key
//!    (nonce 0, empty plaintext, associated data
//!    `"spstack-noise-ik/3 key confirmation\0" || handshake hash`), and the
//!    listener attaches no pipe before that tag verifies. IK message 1 has
//!    nothing fresh from the listener in it, so anyone who recorded one can
//!    replay it and make the listener answer in the victim's name; only the
//!    real dialer can derive the keys message 2 leads to. (`noise-ik/2`
//!    attached the pipe after message 2, so a replayer took PAIR's one peer
//!    slot and kept the real client out.) A replay now costs the listener a
//!    half-open slot until the handshake deadline, like any unauthenticated
//!    connection. XX needs no such step: its message 3 is already sealed
//!    under keys that only the real dialer can derive.
//! 5. Every SP message then travels as one record in one transport frame
//!    (see [`record`]): chunks of at most 65519 plaintext bytes, each a Noise
//!    transport message with consecutive nonces. Anything altered, replayed,
//!    reordered or truncated closes the pipe, with no nonce moved.
//!
//! During the handshake the transport reads frames of at most
//! [`NoiseConfig::handshake_frame_limit`] bytes (default 1 KiB), checked
//! before it allocates; afterwards its limit is the worst-case sealed size
//! of a `recv_max_size` message and the body length is checked again after
//! decryption. The whole handshake runs under the socket's
//! `handshake_timeout` and `max_half_open`.
//!
//! ## Rekeying
//!
//! A sender rekeys its outgoing key (Noise §11.3 `REKEY`) after
//! [`NoiseConfig::rekey_after_messages`] records (default 2^20) or
//! [`NoiseConfig::rekey_after_bytes`] message bytes (default 2^30),
//! whichever comes first, and marks the record that precedes the switch so
//! the peer follows. Either side chooses for its own direction. Rekeying
//! limits what one compromised key exposes; it is not a fresh handshake
//! (reconnect for post-compromise security).

pub mod cipher;
mod handshake;
mod keypair;
pub mod record;
#[cfg(test)]
mod vectors;

use std::collections::HashSet;
use std::sync::Arc;

use sp_core::layer::PipeLayer;

pub use handshake::Noise;
pub use keypair::StaticKeypair;
pub use record::Padding;

/// Prefix of the Noise prologue; the version of this binding.
pub const PROLOGUE_PREFIX: &[u8] = b"spstack-noise/2\0";

/// Default cap on one handshake frame, enforced before allocation.
pub const DEFAULT_HANDSHAKE_FRAME_LIMIT: usize = 1024;

/// Default records between outgoing rekeys.
pub const DEFAULT_REKEY_MESSAGES: u64 = 1 << 20;

/// Default message bytes between outgoing rekeys.
pub const DEFAULT_REKEY_BYTES: u64 = 1 << 30;

/// The Noise handshake pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// `Noise_XX_25519_ChaChaPoly_BLAKE2s`: three messages, both statics
    /// sent encrypted, the initiator's only after it authenticated the
    /// responder. Component name `noise-xx/2`.
    XX,
    /// `Noise_IK_25519_ChaChaPoly_BLAKE2s`: two messages, then the dialer's
    /// key confirmation, which the listener waits for before the pipe
    /// attaches (see the [module docs](self)); the dialer must be given the
    /// listener's static key with [`NoiseConfig::remote_static`].
    /// Component name `noise-ik/3`.
    IK,
}

impl Pattern {
    /// The Noise protocol name.
    pub fn protocol_name(self) -> &'static str {
        match self {
            Pattern::XX => "Noise_XX_25519_ChaChaPoly_BLAKE2s",
            Pattern::IK => "Noise_IK_25519_ChaChaPoly_BLAKE2s",
        }
    }

    /// The announced component name; a pattern mismatch between two peers
    /// shows up in the stack-wide peer check.
    pub fn component_name(self) -> &'static str {
        match self {
            Pattern::XX => "noise-xx/2",
            Pattern::IK => "noise-ik/3",
        }
    }
}

pub(crate) fn params(p: Pattern) -> snow::params::NoiseParams {
    match p.protocol_name().parse() {
        Ok(params) => params,
        // both names are constants snow supports with its default resolver
        Err(_) => unreachable!("snow supports {}", p.protocol_name()),
    }
}

pub(crate) fn b64(key: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// Settings of the Noise layer. Fails closed: with no [`allow`](Self::allow)
/// and no [`accept_any_key`](Self::accept_any_key), no peer is admitted.
#[derive(Clone, Debug)]
pub struct NoiseConfig {
    pub(crate) keypair: Arc<StaticKeypair>,
    pub(crate) pattern: Pattern,
    pub(crate) remote_static: Option<[u8; 32]>,
    pub(crate) allowed: HashSet<[u8; 32]>,
    pub(crate) accept_any: bool,
    pub(crate) handshake_frame_limit: usize,
    pub(crate) rekey_messages: u64,
    pub(crate) rekey_bytes: u64,
    pub(crate) padding: Padding,
}

impl NoiseConfig {
    /// XX with this static keypair, an empty allow-list, the defaults above.
    pub fn new(keypair: StaticKeypair) -> NoiseConfig {
        NoiseConfig {
            keypair: Arc::new(keypair),
            pattern: Pattern::XX,
            remote_static: None,
            allowed: HashSet::new(),
            accept_any: false,
            handshake_frame_limit: DEFAULT_HANDSHAKE_FRAME_LIMIT,
            rekey_messages: DEFAULT_REKEY_MESSAGES,
            rekey_bytes: DEFAULT_REKEY_BYTES,
            padding: Padding::None,
        }
    }

    /// Chooses the handshake pattern (both peers must agree).
    pub fn pattern(mut self, p: Pattern) -> Self {
        self.pattern = p;
        self
    }

    /// IK only: the listener's static public key, required for dialing.
    /// The dialer admits exactly this key (the handshake proves the
    /// listener holds it), whatever the allow-list says.
    pub fn remote_static(mut self, key: [u8; 32]) -> Self {
        self.remote_static = Some(key);
        self
    }

    /// Admits a peer's static public key.
    pub fn allow(mut self, key: [u8; 32]) -> Self {
        self.allowed.insert(key);
        self
    }

    /// Admits every key of `keys`.
    pub fn allow_all(mut self, keys: impl IntoIterator<Item = [u8; 32]>) -> Self {
        self.allowed.extend(keys);
        self
    }

    /// Admits any peer that completes the handshake. The channel is still
    /// encrypted and the peer's key is still exposed as
    /// `PipeInfo::peer_identity`, but anyone can connect, and without an
    /// allow-list on *both* sides an active man in the middle can run two
    /// handshakes and read everything. Use it only where the application
    /// checks `peer_identity` itself (e.g. in a pipe event hook).
    pub fn accept_any_key(mut self) -> Self {
        self.accept_any = true;
        self
    }

    /// The largest handshake frame read from a peer (default 1 KiB; the
    /// handshake messages of XX and IK with empty payloads are under 100
    /// bytes). Capped at 65535, the Noise message limit.
    pub fn handshake_frame_limit(mut self, bytes: usize) -> Self {
        self.handshake_frame_limit = bytes.min(cipher::MAX_NOISE_MSG);
        self
    }

    /// Rekey the outgoing key after this many records (at least 1).
    pub fn rekey_after_messages(mut self, n: u64) -> Self {
        self.rekey_messages = n.max(1);
        self
    }

    /// Rekey the outgoing key after this many message bytes (at least 1).
    pub fn rekey_after_bytes(mut self, n: u64) -> Self {
        self.rekey_bytes = n.max(1);
        self
    }

    /// Pads outgoing records to hide their length.
    pub fn padding(mut self, p: Padding) -> Self {
        self.padding = p;
        self
    }

    /// This side's public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.keypair.public()
    }
}

/// The Noise pipe layer for [`sp_core::SocketBuilder::pipe_layer`]. Add it
/// before any other pipe layer so it sits nearest the transport.
pub fn layer(cfg: NoiseConfig) -> PipeLayer<Noise> {
    PipeLayer::new(Noise::new(cfg))
}
