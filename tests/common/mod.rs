//! Shared test support.
pub mod foreign;
pub mod layers;
pub mod wire;
