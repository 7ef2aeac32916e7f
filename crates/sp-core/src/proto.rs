//! SP protocol numbers: `(major << 4) | minor`, 16 bits on the wire.

use std::fmt;

/// A 16-bit SP protocol id.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
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

    /// The name nng and the WebSocket mapping use (`req`, `rep`, `pair1`...).
    pub fn name(self) -> &'static str {
        match self {
            ProtocolId::PAIR0 => "pair",
            ProtocolId::PAIR1 => "pair1",
            ProtocolId::PUB0 => "pub",
            ProtocolId::SUB0 => "sub",
            ProtocolId::REQ0 => "req",
            ProtocolId::REP0 => "rep",
            ProtocolId::PUSH0 => "push",
            ProtocolId::PULL0 => "pull",
            ProtocolId::SURVEYOR0 => "surveyor",
            ProtocolId::RESPONDENT0 => "respondent",
            ProtocolId::BUS0 => "bus",
            _ => "unknown",
        }
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
