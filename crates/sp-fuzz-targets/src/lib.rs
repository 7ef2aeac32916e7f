//! # sp-fuzz-targets: the bodies of spstack's fuzz targets
//!
//! One function per target, each taking the fuzzer's bytes. The cargo-fuzz
//! crate (`fuzz/`, nightly, outside the workspace) calls them from its
//! `fuzz_target!`s; this crate's test replays every file of
//! `fuzz/corpus/<target>/` through the same function on stable, so a
//! crash once found stays fixed. Every parser that sees a peer's bytes has
//! a target (see `fuzz/README.md` for the list and how to run them).
//!
//! A target panics on a finding: a crash in the code under test, or a
//! check of its own (what a parser accepted against what the format says,
//! a socket that stops serving). Inputs are read with zeros past the end,
//! so any input is a valid case.

mod announce;
mod frames;
mod headers;
mod input;
mod integrity;
mod keys;
mod mem;
mod net;
mod noise;
mod reliable;
mod spcat;
mod trie;
mod ws;

pub use announce::announce;
pub use frames::stream_frames;
pub use headers::protocol_headers;
pub use integrity::integrity;
pub use keys::key_files;
pub use net::{socket_tcp, ws_upgrade};
pub use noise::{noise_handshake, noise_record};
pub use reliable::socket_reliable;
pub use spcat::{spcat_args, spcat_declare, spcat_decode};
pub use trie::sub_trie;
pub use ws::ws_message;

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// Every target by the name of its `fuzz/fuzz_targets/<name>.rs` and
/// `fuzz/corpus/<name>/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("announce", announce),
    ("stream_frames", stream_frames),
    ("protocol_headers", protocol_headers),
    ("sub_trie", sub_trie),
    ("socket_tcp", socket_tcp),
    ("ws_upgrade", ws_upgrade),
    ("ws_message", ws_message),
    ("noise_record", noise_record),
    ("noise_handshake", noise_handshake),
    ("integrity", integrity),
    ("key_files", key_files),
    ("spcat_args", spcat_args),
    ("spcat_decode", spcat_decode),
    ("socket_reliable", socket_reliable),
    ("spcat_declare", spcat_declare),
];
