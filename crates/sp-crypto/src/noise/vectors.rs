//! The Noise test vectors of `tests/vectors/` (cacophony's and snow's, for
//! XX and IK over 25519/ChaChaPoly/BLAKE2s; see the README there).
//!
//! snow, built from [`params`] as the layer builds it, with the vectors'
//! fixed keys and prologue, must write every handshake and transport message
//! byte for byte; and our in-place [`CipherState`], on the keys snow splits
//! off, must seal every transport message to the same bytes and open it.
//! Here rather than in `tests/` because `params` is crate-private.

use serde_json::Value;

use super::cipher::{CipherError, CipherState, TAG_LEN};
use super::{params, Pattern, StaticKeypair};

const SETS: [(&str, &str); 2] = [
    (
        "cacophony",
        include_str!("../../tests/vectors/cacophony.json"),
    ),
    ("snow", include_str!("../../tests/vectors/snow.json")),
];

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd-length hex {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn field(v: &Value, name: &str) -> Option<Vec<u8>> {
    v.get(name)
        .map(|x| unhex(x.as_str().expect("a hex string")))
}

fn need(v: &Value, name: &str) -> Vec<u8> {
    field(v, name).unwrap_or_else(|| panic!("vector without {name}"))
}

fn key32(b: &[u8]) -> [u8; 32] {
    b.try_into().expect("32-byte key")
}

struct Msg {
    payload: Vec<u8>,
    ciphertext: Vec<u8>,
}

/// Builds both sides of a vector the way `handshake::run` builds one side,
/// plus the fixed ephemeral keys.
fn sessions(v: &Value, p: Pattern) -> (snow::HandshakeState, snow::HandshakeState) {
    let (ie, re) = (need(v, "init_ephemeral"), need(v, "resp_ephemeral"));
    let (is, rs) = (need(v, "init_static"), need(v, "resp_static"));
    let (ip, rp) = (need(v, "init_prologue"), need(v, "resp_prologue"));
    let pinned = field(v, "init_remote_static");
    assert_eq!(pinned.is_some(), p == Pattern::IK, "only IK pins a key");
    if let Some(k) = &pinned {
        // the pin is the responder's public key, derived as keypair.rs does
        assert_eq!(&StaticKeypair::from_secret(key32(&rs)).public()[..], &k[..]);
    }
    let mut init = snow::Builder::new(params(p))
        .local_private_key(&is)
        .and_then(|b| b.prologue(&ip))
        .expect("initiator setup")
        .fixed_ephemeral_key_for_testing_only(&ie);
    if let Some(k) = &pinned {
        init = init.remote_public_key(k).expect("pin");
    }
    let resp = snow::Builder::new(params(p))
        .local_private_key(&rs)
        .and_then(|b| b.prologue(&rp))
        .expect("responder setup")
        .fixed_ephemeral_key_for_testing_only(&re);
    (
        init.build_initiator().expect("initiator"),
        resp.build_responder().expect("responder"),
    )
}

/// Checks one vector; returns the transport messages it checked.
fn check(set: &str, v: &Value) -> usize {
    let name = v["protocol_name"].as_str().expect("protocol_name");
    let p = [Pattern::XX, Pattern::IK]
        .into_iter()
        .find(|p| p.protocol_name() == name)
        .unwrap_or_else(|| panic!("{set}: {name} is not a pattern the layer uses"));
    let ctx = format!("{set} {name}");
    let msgs: Vec<Msg> = v["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| Msg {
            payload: need(m, "payload"),
            ciphertext: need(m, "ciphertext"),
        })
        .collect();
    let (mut init, mut resp) = sessions(v, p);

    let mut buf = vec![0u8; 65535];
    let mut out = vec![0u8; 65535];
    let mut i = 0;
    while !init.is_handshake_finished() {
        let m = msgs
            .get(i)
            .unwrap_or_else(|| panic!("{ctx}: ran out of messages mid-handshake"));
        let (w, r) = if i % 2 == 0 {
            (&mut init, &mut resp)
        } else {
            (&mut resp, &mut init)
        };
        let n = w
            .write_message(&m.payload, &mut buf)
            .unwrap_or_else(|e| panic!("{ctx}: writing handshake message {i}: {e}"));
        assert_eq!(buf[..n], m.ciphertext[..], "{ctx}: handshake message {i}");
        let k = r
            .read_message(&m.ciphertext, &mut out)
            .unwrap_or_else(|e| panic!("{ctx}: reading handshake message {i}: {e}"));
        assert_eq!(out[..k], m.payload[..], "{ctx}: handshake payload {i}");
        i += 1;
    }
    assert!(
        resp.is_handshake_finished(),
        "{ctx}: responder not finished"
    );
    assert_eq!(
        init.get_handshake_hash(),
        resp.get_handshake_hash(),
        "{ctx}"
    );
    if let Some(h) = field(v, "handshake_hash") {
        assert_eq!(init.get_handshake_hash(), &h[..], "{ctx}: handshake hash");
    }

    let (k1, k2) = init.dangerously_get_raw_split();
    assert_eq!(resp.dangerously_get_raw_split(), (k1, k2), "{ctx}: split");
    // what handshake::run relies on: the first key carries even-index
    // (initiator-to-responder) messages, the second odd-index ones
    let (mut i2r_seal, mut i2r_open) = (CipherState::new(&k1), CipherState::new(&k1));
    let (mut r2i_seal, mut r2i_open) = (CipherState::new(&k2), CipherState::new(&k2));
    let mut init = init.into_transport_mode().expect("transport");
    let mut resp = resp.into_transport_mode().expect("transport");

    let first_transport = i;
    for (i, m) in msgs.iter().enumerate().skip(first_transport) {
        let (w, r, seal, open) = if i % 2 == 0 {
            (&mut init, &mut resp, &mut i2r_seal, &mut i2r_open)
        } else {
            (&mut resp, &mut init, &mut r2i_seal, &mut r2i_open)
        };
        let n = w
            .write_message(&m.payload, &mut buf)
            .unwrap_or_else(|e| panic!("{ctx}: snow writing transport message {i}: {e}"));
        assert_eq!(
            buf[..n],
            m.ciphertext[..],
            "{ctx}: snow, transport message {i}"
        );
        let k = r
            .read_message(&m.ciphertext, &mut out)
            .unwrap_or_else(|e| panic!("{ctx}: snow reading transport message {i}: {e}"));
        assert_eq!(
            out[..k],
            m.payload[..],
            "{ctx}: snow, transport payload {i}"
        );

        let mut sealed = m.payload.clone();
        let tag = seal.seal(&mut sealed).expect("seal");
        sealed.extend_from_slice(&tag);
        assert_eq!(
            sealed, m.ciphertext,
            "{ctx}: our cipher, transport message {i}"
        );

        let at = open.nonce();
        let mut forged = m.ciphertext.clone();
        let last = forged.len() - 1;
        forged[last / 2] ^= 0x01;
        let (body, tag) = forged.split_at_mut(last + 1 - TAG_LEN);
        assert_eq!(
            open.open(body, tag),
            Err(CipherError::Auth),
            "{ctx}: forged {i}"
        );
        assert_eq!(open.nonce(), at, "{ctx}: a forgery moved the nonce");
        let mut wire = m.ciphertext.clone();
        let (body, tag) = wire.split_at_mut(m.ciphertext.len() - TAG_LEN);
        open.open(body, tag)
            .unwrap_or_else(|e| panic!("{ctx}: our cipher opening transport message {i}: {e:?}"));
        assert_eq!(
            body,
            &m.payload[..],
            "{ctx}: our cipher, transport payload {i}"
        );
    }
    msgs.len() - first_transport
}

#[test]
fn xx_and_ik_vectors_match_snow_and_our_cipher_byte_for_byte() {
    let mut checked = Vec::new();
    for (set, json) in SETS {
        let doc: Value = serde_json::from_str(json).expect("vector JSON");
        for v in doc["vectors"].as_array().expect("vectors") {
            let transport = check(set, v);
            assert!(transport > 0, "{set}: a vector without transport messages");
            checked.push(format!(
                "{set} {}",
                v["protocol_name"].as_str().unwrap_or("?")
            ));
        }
    }
    // no vector may go missing from the files unnoticed
    checked.sort();
    assert_eq!(
        checked,
        [
            "cacophony Noise_IK_25519_ChaChaPoly_BLAKE2s",
            "cacophony Noise_XX_25519_ChaChaPoly_BLAKE2s",
            "snow Noise_IK_25519_ChaChaPoly_BLAKE2s",
            "snow Noise_XX_25519_ChaChaPoly_BLAKE2s",
        ]
    );
}
