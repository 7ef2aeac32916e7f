//! spcat's parsers, as a library so that the fuzz targets and their corpus
//! replay (`crates/sp-fuzz-targets`) call exactly what the `spcat` binary
//! runs. The command line is the product; this API is not.
#![doc(hidden)]

pub mod args;
pub mod decode;
pub mod dissector;
pub mod format;
