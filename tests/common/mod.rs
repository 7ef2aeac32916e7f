//! Shared test support.
pub mod foreign;
pub mod layers;
pub mod pki;
pub mod wire;
