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

pub mod integrity;
pub mod keygen_cli;
pub mod keys;
pub mod noise;
