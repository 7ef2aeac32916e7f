//! # sp-crypto: hop-by-hop encryption and end-to-end integrity for spstack
//!
//! Two layers that nanomsg's two slots could never hold at once:
//!
//! * [`noise`] — a **pipe layer**: a Noise handshake (XX by default, IK as
//!   an option) right above the transport, then ChaCha20-Poly1305 on every
//!   frame of that one connection. Per hop: a device re-encrypts with its
//!   own keys on each side.
//! * [`integrity`] — a **message layer**: Ed25519 signatures over each
//!   message above the scalability protocol, so they survive devices that
//!   add and strip routing headers.
//!
//! [`keys`] generates, saves and loads the keys both need; [`keygen_cli`] is
//! the `sp-keygen` / `spcat keygen` command line.
#![deny(missing_docs)]

/// The conversions a 32-byte key newtype keeps for code written when keys
/// were bare `[u8; 32]`: from and into the bytes, comparison with them,
/// reading as a byte slice, and lookup in a set keyed by the type with the
/// bytes a peer sent. Nothing converts one key type into another.
macro_rules! bytes32_key_conversions {
    ($t:ident) => {
        impl From<[u8; 32]> for $t {
            fn from(bytes: [u8; 32]) -> $t {
                $t(bytes)
            }
        }

        impl From<$t> for [u8; 32] {
            fn from(key: $t) -> [u8; 32] {
                key.0
            }
        }

        impl PartialEq<[u8; 32]> for $t {
            fn eq(&self, other: &[u8; 32]) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$t> for [u8; 32] {
            fn eq(&self, other: &$t) -> bool {
                self == &other.0
            }
        }

        impl PartialEq<$t> for Vec<u8> {
            fn eq(&self, other: &$t) -> bool {
                self[..] == other.0[..]
            }
        }

        /// Reads as its bytes (`key.to_vec()`, `key[..]`, `&key` where
        /// `&[u8]` is taken).
        impl std::ops::Deref for $t {
            type Target = [u8];
            fn deref(&self) -> &[u8] {
                &self.0
            }
        }

        impl AsRef<[u8]> for $t {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }

        impl std::borrow::Borrow<[u8; 32]> for $t {
            fn borrow(&self) -> &[u8; 32] {
                &self.0
            }
        }
    };
}

pub mod integrity;
pub mod keygen_cli;
pub mod keys;
pub mod noise;
