//! The life of a pipe: opened (announcement, peer check, pipe-layer
//! handshakes, all under one deadline), attached (admitted atomically, a
//! writer and a reader task), and detached (what it still held moved to
//! another pipe or counted).

mod attach;
pub(crate) mod link;
mod open;
mod reader;
pub(crate) mod scope;
pub(crate) mod table;
pub(crate) mod writer;
