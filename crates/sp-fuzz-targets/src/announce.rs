//! The SP announcement a peer sends when a pipe opens (sp-core
//! `announce.rs`, read by sp-transports `stream::exchange`): the 8-byte
//! header, the extended version's length and layer list.

use sp_core::{Announcement, ProtocolId, MAX_LAYER_LIST};

use crate::input::Input;

/// What the format (announce.rs's module docs) says a peer's bytes mean,
/// written from the docs rather than from the parser.
fn model(d: &[u8]) -> Option<(Announcement, usize)> {
    let h = d.get(..8)?;
    if h[..3] != [0, b'S', b'P'] || h[3] > 1 || h[6] != 0 || h[7] != 0 {
        return None;
    }
    let protocol = ProtocolId(u16::from_be_bytes([h[4], h[5]]));
    if h[3] == 0 {
        return Some((
            Announcement {
                protocol,
                layers: Vec::new(),
            },
            8,
        ));
    }
    let n = u16::from_be_bytes(d.get(8..10)?.try_into().ok()?) as usize;
    if n > MAX_LAYER_LIST {
        return None;
    }
    let mut list = d.get(10..10 + n)?;
    let mut layers = Vec::new();
    while !list.is_empty() {
        let len = list[0] as usize;
        let name = list.get(1..1 + len)?;
        layers.push(String::from_utf8(name.to_vec()).ok()?);
        list = &list[1 + len..];
    }
    Some((Announcement { protocol, layers }, 10 + n))
}

/// Runs the announcement exchange against a peer that sends `peer` and
/// then nothing more; returns what we wrote and what we read.
fn exchange(local: &Announcement, peer: &[u8]) -> (Vec<u8>, sp_core::Result<Announcement>) {
    let mut written = Vec::new();
    let got = futures::executor::block_on(async {
        let mut io = tokio::io::join(peer, &mut written);
        sp_transports::stream::exchange(&mut io, local).await
    });
    (written, got)
}

/// Fuzz target `announce`: a peer's announcement, then our own announcement
/// of a made-up layer list read back as a peer reads it.
pub fn announce(data: &[u8]) {
    let local = Announcement {
        protocol: ProtocolId::REP0,
        layers: vec!["noise-xx/2".into()],
    };
    let (written, got) = exchange(&local, data);
    assert_eq!(written, local.encode(), "we announce before we read");
    match (&got, model(data)) {
        (Ok(a), Some((m, used))) => {
            assert_eq!(a, &m);
            // what we read is what the peer's encoder wrote, byte for byte
            // (an extended header with an empty list re-encodes as plain)
            if data[3] == 0 || !a.layers.is_empty() {
                assert_eq!(a.encode(), &data[..used]);
            }
            let _ = local.check_peer(ProtocolId::REQ0, a);
        }
        (Err(_), None) => {}
        (got, model) => panic!("exchange read {got:?}, the format says {model:?}"),
    }

    // whatever layer names a stack is built with, a peer can read its
    // announcement, and one that fits the format reads back unchanged
    let mut inp = Input::new(data);
    let count = inp.u8() % 12;
    let layers: Vec<String> = (0..count)
        .map(|_| String::from_utf8_lossy(inp.chunk()).into_owned())
        .collect();
    let ours = Announcement {
        protocol: ProtocolId(inp.u16()),
        layers,
    };
    let (_, read) = exchange(&local, &ours.encode());
    let read = match read {
        Ok(a) => a,
        Err(e) => panic!("a peer cannot read our announcement {ours:?}: {e}"),
    };
    let fits = ours.layers.iter().all(|l| l.len() <= 255)
        && ours.layers.iter().map(|l| 1 + l.len()).sum::<usize>() <= MAX_LAYER_LIST;
    if fits {
        assert_eq!(read, ours);
    } else {
        // what cannot be carried must still be refused by the peer check,
        // never mistaken for a stack that matches
        assert!(ours.check_peer(ours.protocol, &read).is_err());
    }
}
