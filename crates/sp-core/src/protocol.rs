//! Protocol identities: the one registry of which SP protocol numbers exist,
//! what they are called (nng's names, which the WebSocket mapping uses too)
//! and which protocol each talks to.
//!
//! The built-in protocols are registered from the start; a protocol defined
//! in another crate registers itself when a socket is built with its routing
//! (or earlier, with [`register`]), and from then on logs, `describe`, the
//! WebSocket subprotocol and `spcat` know it by name.
//!
//! ```
//! use sp_core::protocol::{self, ProtocolId, ProtocolSpec};
//! assert_eq!(ProtocolId::REQ0.name(), "req");
//! assert_eq!(ProtocolId::REQ0.peer(), Some(ProtocolId::REP0));
//! assert_eq!(ProtocolId::by_name("pull0"), Some(ProtocolId::PULL0));
//!
//! // a protocol from another crate (mangos' STAR is its own peer)
//! const STAR: ProtocolSpec = ProtocolSpec::new(ProtocolId(0xa0), "star", ProtocolId(0xa0));
//! protocol::register(STAR).unwrap();
//! assert_eq!(ProtocolId(0xa0).name(), "star");
//! assert!(protocol::register(ProtocolSpec::new(ProtocolId(0xa0), "other", ProtocolId(0xa0))).is_err());
//! ```

use std::fmt;
use std::sync::{OnceLock, RwLock};

use crate::{Error, Result};

/// A 16-bit SP protocol id: `(major << 4) | minor` on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProtocolId(pub u16);

impl ProtocolId {
    /// PAIR0.
    pub const PAIR0: ProtocolId = ProtocolId(0x10);
    /// PAIR1.
    pub const PAIR1: ProtocolId = ProtocolId(0x11);
    /// PUB0.
    pub const PUB0: ProtocolId = ProtocolId(0x20);
    /// SUB0.
    pub const SUB0: ProtocolId = ProtocolId(0x21);
    /// REQ0.
    pub const REQ0: ProtocolId = ProtocolId(0x30);
    /// REP0.
    pub const REP0: ProtocolId = ProtocolId(0x31);
    /// PUSH0.
    pub const PUSH0: ProtocolId = ProtocolId(0x50);
    /// PULL0.
    pub const PULL0: ProtocolId = ProtocolId(0x51);
    /// SURVEYOR0.
    pub const SURVEYOR0: ProtocolId = ProtocolId(0x62);
    /// RESPONDENT0.
    pub const RESPONDENT0: ProtocolId = ProtocolId(0x63);
    /// BUS0.
    pub const BUS0: ProtocolId = ProtocolId(0x70);

    /// The registered name (`req`, `rep`, `pair1`...), `"unknown"` if none.
    pub fn name(self) -> &'static str {
        self.spec().map_or("unknown", |s| s.name)
    }

    /// The protocol this one talks to, if registered.
    pub fn peer(self) -> Option<ProtocolId> {
        self.spec().map(|s| s.peer)
    }

    /// The registered identity of this id.
    pub fn spec(self) -> Option<ProtocolSpec> {
        read().iter().find(|s| s.id == self).copied()
    }

    /// The protocol registered under `name`; a trailing version `0` may be
    /// written (`req0` and `req` are the same).
    pub fn by_name(name: &str) -> Option<ProtocolId> {
        let reg = read();
        let find = |n: &str| reg.iter().find(|s| s.name == n).map(|s| s.id);
        find(name).or_else(|| name.strip_suffix('0').and_then(find))
    }
}

impl fmt::Debug for ProtocolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(0x{:04x})", self.name(), self.0)
    }
}
impl fmt::Display for ProtocolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())
    }
}

/// What a protocol is: its number, its name, the protocol it talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProtocolSpec {
    /// Its number on the wire.
    pub id: ProtocolId,
    /// nng's name for it (also the WebSocket subprotocol's first label).
    pub name: &'static str,
    /// The protocol a peer must speak.
    pub peer: ProtocolId,
}

impl ProtocolSpec {
    /// A protocol identity.
    pub const fn new(id: ProtocolId, name: &'static str, peer: ProtocolId) -> ProtocolSpec {
        ProtocolSpec { id, name, peer }
    }
}

/// The protocols of the SP family, as nng names them.
pub const BUILTIN: [ProtocolSpec; 11] = [
    ProtocolSpec::new(ProtocolId::PAIR0, "pair", ProtocolId::PAIR0),
    ProtocolSpec::new(ProtocolId::PAIR1, "pair1", ProtocolId::PAIR1),
    ProtocolSpec::new(ProtocolId::PUB0, "pub", ProtocolId::SUB0),
    ProtocolSpec::new(ProtocolId::SUB0, "sub", ProtocolId::PUB0),
    ProtocolSpec::new(ProtocolId::REQ0, "req", ProtocolId::REP0),
    ProtocolSpec::new(ProtocolId::REP0, "rep", ProtocolId::REQ0),
    ProtocolSpec::new(ProtocolId::PUSH0, "push", ProtocolId::PULL0),
    ProtocolSpec::new(ProtocolId::PULL0, "pull", ProtocolId::PUSH0),
    ProtocolSpec::new(ProtocolId::SURVEYOR0, "surveyor", ProtocolId::RESPONDENT0),
    ProtocolSpec::new(ProtocolId::RESPONDENT0, "respondent", ProtocolId::SURVEYOR0),
    ProtocolSpec::new(ProtocolId::BUS0, "bus", ProtocolId::BUS0),
];

fn registry() -> &'static RwLock<Vec<ProtocolSpec>> {
    static R: OnceLock<RwLock<Vec<ProtocolSpec>>> = OnceLock::new();
    R.get_or_init(|| RwLock::new(BUILTIN.to_vec()))
}

fn read() -> std::sync::RwLockReadGuard<'static, Vec<ProtocolSpec>> {
    registry().read().unwrap_or_else(|e| e.into_inner())
}

/// Registers a protocol identity. Registering the same spec again is fine;
/// an id or a name already taken by another spec is [`Error::State`].
pub fn register(spec: ProtocolSpec) -> Result<()> {
    let mut reg = registry().write().unwrap_or_else(|e| e.into_inner());
    if reg.contains(&spec) {
        return Ok(());
    }
    if reg.iter().any(|s| s.id == spec.id || s.name == spec.name) {
        return Err(Error::State(
            "a different protocol is already registered with this id or name",
        ));
    }
    reg.push(spec);
    Ok(())
}

/// Every registered protocol, the built-in ones first.
pub fn registered() -> Vec<ProtocolSpec> {
    read().clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_their_peers_peers() {
        for s in BUILTIN {
            assert_eq!(s.peer.peer(), Some(s.id), "{s:?}");
            assert_eq!(ProtocolId::by_name(s.name), Some(s.id));
        }
        assert_eq!(ProtocolId::by_name("pair0"), Some(ProtocolId::PAIR0));
        assert_eq!(ProtocolId(0xfff0).name(), "unknown");
    }
}
