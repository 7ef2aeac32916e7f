//! Shared test support.
pub mod foreign;
pub mod layers;
