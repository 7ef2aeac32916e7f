//! Shared test support.
pub mod layers;
