//! What each side says when a pipe opens.
//!
//! A plain stack sends exactly the 8-byte SP header of nng and nanomsg:
//! `00 'S' 'P' 00 <proto u16 BE> 00 00`. A stack with pipe layers sends
//! version byte `01` instead of `00`, followed by a u16 BE length and the
//! layer list. nng (checks byte 3), nanomsg (`memcmp` of the first four
//! bytes) and mangos (`ErrBadVersion`) all reject that cleanly, so a plain
//! peer never mistakes a layered stack for a plain one. (The design note
//! suggested a reserved byte; nanomsg does not check those, hence byte 3.)

use crate::{Error, ProtocolId, Result};

/// Longest layer list we read from a peer, checked before allocation.
pub const MAX_LAYER_LIST: usize = 1024;

/// One side's announcement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// The SP protocol of the sender.
    pub protocol: ProtocolId,
    /// Pipe layers of the sender, bottom (nearest the transport) first, as `name/version`.
    pub layers: Vec<String>,
}

impl Announcement {
    /// Encodes for the wire.
    pub fn encode(&self) -> Vec<u8> {
        let p = self.protocol.0.to_be_bytes();
        let mut out = vec![0, b'S', b'P', 0, p[0], p[1], 0, 0];
        if !self.layers.is_empty() {
            out[3] = 1;
            // a name longer than its length byte is cut at a character
            // boundary, and the list ends before the first name that does
            // not fit whole: the peer can always read what we send, and what
            // differs from our stack shows as a mismatch, never as garbage
            let mut list = Vec::new();
            for l in &self.layers {
                let mut n = l.len().min(255);
                while !l.is_char_boundary(n) {
                    n -= 1;
                }
                if list.len() + 1 + n > MAX_LAYER_LIST {
                    break;
                }
                list.push(n as u8);
                list.extend_from_slice(&l.as_bytes()[..n]);
            }
            out.extend_from_slice(&(list.len() as u16).to_be_bytes());
            out.extend_from_slice(&list);
        }
        out
    }

    /// Parses the fixed 8 bytes. Returns the announcement (without layers)
    /// and the number of layer-list bytes that follow (read 2 more bytes for
    /// the length when `Some(None)`...). Kept simple: returns whether an
    /// extended list follows.
    pub fn parse_fixed(h: &[u8; 8]) -> Result<(ProtocolId, bool)> {
        if h[0] != 0 || h[1] != b'S' || h[2] != b'P' {
            return Err(Error::protocol(format!(
                "bad SP header magic {:02x} {:02x} {:02x} (peer is not an SP endpoint)",
                h[0], h[1], h[2]
            )));
        }
        let extended = match h[3] {
            0 => false,
            1 => true,
            v => {
                return Err(Error::protocol(format!(
                    "unsupported SP header version {v}"
                )))
            }
        };
        if h[6] != 0 || h[7] != 0 {
            return Err(Error::protocol(format!(
                "non-zero reserved bytes {:02x} {:02x} in SP header",
                h[6], h[7]
            )));
        }
        Ok((ProtocolId(u16::from_be_bytes([h[4], h[5]])), extended))
    }

    /// Parses a layer list body (after its u16 length).
    pub fn parse_layers(mut b: &[u8]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        while let Some((&n, rest)) = b.split_first() {
            let n = n as usize;
            if rest.len() < n {
                return Err(Error::protocol("truncated layer list in SP header"));
            }
            let name = std::str::from_utf8(&rest[..n])
                .map_err(|_| Error::protocol("layer name is not UTF-8"))?;
            out.push(name.to_string());
            b = &rest[n..];
        }
        Ok(out)
    }

    /// The stack-wide `ispeer`: protocol pair and pipe layers must match.
    /// The error names the first layer that differs.
    pub fn check_peer(&self, expected_peer: ProtocolId, peer: &Announcement) -> Result<()> {
        if peer.protocol != expected_peer {
            return Err(Error::protocol_mismatch(
                format!("{expected_peer:?}"),
                format!("{:?}", peer.protocol),
            ));
        }
        let n = self.layers.len().max(peer.layers.len());
        for i in 0..n {
            let (a, b) = (self.layers.get(i), peer.layers.get(i));
            if a != b {
                return Err(Error::Mismatch {
                    index: Some(i),
                    ours: a.cloned(),
                    theirs: b.cloned(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_header_is_nng_bytes() {
        let a = Announcement {
            protocol: ProtocolId::REQ0,
            layers: vec![],
        };
        assert_eq!(a.encode(), vec![0, 0x53, 0x50, 0, 0, 0x30, 0, 0]);
    }

    #[test]
    fn layered_header_roundtrips_and_is_rejected_by_plain_parsers() {
        let a = Announcement {
            protocol: ProtocolId::REP0,
            layers: vec!["noise/1".into(), "crc/1".into()],
        };
        let e = a.encode();
        assert_eq!(e[3], 1);
        let fixed: [u8; 8] = e[..8].try_into().unwrap();
        let (p, ext) = Announcement::parse_fixed(&fixed).unwrap();
        assert_eq!(p, ProtocolId::REP0);
        assert!(ext);
        let len = u16::from_be_bytes([e[8], e[9]]) as usize;
        assert_eq!(
            Announcement::parse_layers(&e[10..10 + len]).unwrap(),
            a.layers
        );
    }

    /// Found by the `announce` fuzz target: a layer name over 255 bytes
    /// was cut inside a UTF-8 character (and a list over 1024 bytes inside
    /// a name), so the peer refused our header as garbage instead of
    /// reporting which layer differs.
    #[test]
    fn fuzz_announce_long_layer_names_stay_readable() {
        let long = "é".repeat(200); // 400 bytes, a char boundary at 254 but not 255
        let many: Vec<String> = (0..12).map(|i| format!("{i}{}", "x".repeat(99))).collect();
        for layers in [vec![long.clone(), "b/1".into()], many] {
            let a = Announcement {
                protocol: ProtocolId::REQ0,
                layers,
            };
            let e = a.encode();
            let len = u16::from_be_bytes([e[8], e[9]]) as usize;
            assert!(len <= MAX_LAYER_LIST);
            let read = Announcement::parse_layers(&e[10..10 + len]).expect("a peer reads it");
            assert!(read.iter().all(|l| l.len() <= 255));
            // what could not be carried whole is never taken for a match
            let peer = Announcement {
                protocol: ProtocolId::REQ0,
                layers: read,
            };
            assert!(a.check_peer(ProtocolId::REQ0, &peer).is_err());
        }
    }

    #[test]
    fn mismatch_names_first_differing_layer() {
        let a = Announcement {
            protocol: ProtocolId::REQ0,
            layers: vec!["x/1".into(), "y/1".into()],
        };
        let b = Announcement {
            protocol: ProtocolId::REP0,
            layers: vec!["x/1".into(), "z/1".into()],
        };
        let e = a.check_peer(ProtocolId::REP0, &b).unwrap_err();
        assert!(
            matches!(&e, Error::Mismatch { index: Some(1), ours: Some(o), theirs: Some(t) } if o == "y/1" && t == "z/1"),
            "{e:?}"
        );
        let err = e.to_string();
        assert!(err.contains("\"y/1\"") && err.contains("\"z/1\""), "{err}");
        let c = Announcement {
            protocol: ProtocolId::PULL0,
            layers: vec![],
        };
        assert!(a
            .check_peer(ProtocolId::REP0, &c)
            .unwrap_err()
            .to_string()
            .contains("pull"));
    }
}
