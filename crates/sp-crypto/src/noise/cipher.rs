//! A Noise `CipherState` for `ChaChaPoly` (Noise §5.1, §11.3, §12.3) on
//! ring's ChaCha20-Poly1305, working in place.
//!
//! snow runs the handshake; the directional keys it splits off are used here
//! because sealing and opening in place let a record be sealed in the one
//! buffer that goes to the transport and opened in the buffer the transport
//! filled, where snow's `TransportState` always copies between an input and
//! an output slice.
//!
//! ring rather than the RustCrypto `chacha20poly1305` crate snow uses: ring
//! (already linked for rustls) runs the fused ChaCha20-Poly1305 assembly of
//! BoringSSL, with AVX2 chosen at run time. The RustCrypto crate in a
//! default build pays about 1.5 µs of fixed cost per call (its run-time
//! backend dispatch; `benches/README.md`, "Crypto layers"), which at 64-byte
//! messages was most of the hop layer's cost, and it reaches under half of
//! ring's rate on large records. The construction is the same RFC 8439
//! AEAD: the unit tests below and `vectors.rs` prove every byte equal to
//! snow's (which uses the RustCrypto crate), rekey included, and
//! `tests/noise_interop.rs` to an independent Python implementation.

use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, CHACHA20_POLY1305};
use zeroize::Zeroize;

/// Poly1305 tag bytes at the end of every Noise transport message.
pub const TAG_LEN: usize = 16;
/// Largest Noise message (§3).
pub const MAX_NOISE_MSG: usize = 65535;
/// Largest plaintext of one Noise transport message.
pub const MAX_CHUNK_PLAIN: usize = MAX_NOISE_MSG - TAG_LEN;

/// n = 2^64-1 is reserved (§5.1): used only by REKEY, never for a message.
const RESERVED_NONCE: u64 = u64::MAX;

/// Why a cipher operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CipherError {
    /// The tag did not verify: the bytes were altered, replayed, reordered
    /// or sealed under another key.
    Auth,
    /// The 64-bit nonce would reach its reserved value; a new handshake is needed.
    Exhausted,
}

/// One direction's key and nonce counter.
pub struct CipherState {
    cipher: LessSafeKey,
    n: u64,
}

fn nonce(n: u64) -> Nonce {
    // §12.3: 32 bits of zeros, then the counter little-endian. Uniqueness
    // (what ring's name asks for) is the counter's job: `reserve`/`commit`
    // hand out each n once per key, and REKEY replaces the key
    let mut b = [0u8; 12];
    b[4..].copy_from_slice(&n.to_le_bytes());
    Nonce::assume_unique_for_key(b)
}

fn key(k: &[u8; 32]) -> LessSafeKey {
    match UnboundKey::new(&CHACHA20_POLY1305, k) {
        Ok(u) => LessSafeKey::new(u),
        // ring refuses only a key of the wrong length, and this one is 32 bytes
        Err(_) => unreachable!("a 32-byte ChaCha20-Poly1305 key"),
    }
}

impl CipherState {
    /// A cipher state with key `k` and n = 0. The caller should wipe `k`.
    pub fn new(k: &[u8; 32]) -> CipherState {
        CipherState {
            cipher: key(k),
            n: 0,
        }
    }

    /// The next nonce.
    pub fn nonce(&self) -> u64 {
        self.n
    }

    /// Checks that `count` more messages fit before the reserved nonce and
    /// returns the first of them. Moves nothing.
    pub fn reserve(&self, count: u64) -> Result<u64, CipherError> {
        // n + count <= 2^64-1 exactly when the last nonce used, n + count - 1,
        // stays below the reserved value
        self.n
            .checked_add(count)
            .map(|_| self.n)
            .ok_or(CipherError::Exhausted)
    }

    /// Marks `count` nonces (reserved with [`CipherState::reserve`]) as used.
    pub fn commit(&mut self, count: u64) {
        self.n += count;
    }

    /// Encrypts `buf` in place under nonce `n`, authenticating `ad` too;
    /// returns the tag.
    pub fn seal_at(&self, n: u64, ad: &[u8], buf: &mut [u8]) -> Result<[u8; TAG_LEN], CipherError> {
        if n == RESERVED_NONCE {
            return Err(CipherError::Exhausted);
        }
        // ring fails only above 256 GiB, far beyond one record piece
        let tag = self
            .cipher
            .seal_in_place_separate_tag(nonce(n), Aad::from(ad), buf)
            .map_err(|_| CipherError::Auth)?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Verifies `tag` (over `buf` and `ad`) and decrypts `buf` in place
    /// under nonce `n`. Moves no counter: the caller commits only once the
    /// whole record opened.
    pub fn open_at(
        &self,
        n: u64,
        ad: &[u8],
        buf: &mut [u8],
        tag: &[u8],
    ) -> Result<(), CipherError> {
        if n == RESERVED_NONCE {
            return Err(CipherError::Exhausted);
        }
        let tag = Tag::try_from(tag).map_err(|_| CipherError::Auth)?;
        // on a bad tag ring leaves `buf` unspecified: the caller drops the
        // frame and the pipe with it, and no counter moved
        self.cipher
            .open_in_place_separate_tag(nonce(n), Aad::from(ad), tag, buf, 0..)
            .map(|_| ())
            .map_err(|_| CipherError::Auth)
    }

    /// Encrypts one message and advances n (the plain Noise `EncryptWithAd`
    /// with empty ad). Returns the tag.
    pub fn seal(&mut self, buf: &mut [u8]) -> Result<[u8; TAG_LEN], CipherError> {
        let n = self.reserve(1)?;
        let tag = self.seal_at(n, &[], buf)?;
        self.commit(1);
        Ok(tag)
    }

    /// Decrypts one message and advances n only if it verified.
    pub fn open(&mut self, buf: &mut [u8], tag: &[u8]) -> Result<(), CipherError> {
        let n = self.reserve(1)?;
        self.open_at(n, &[], buf, tag)?;
        self.commit(1);
        Ok(())
    }

    /// §11.3 REKEY: k = first 32 bytes of ENCRYPT(k, 2^64-1, "", zeros(32)).
    /// The counter is unchanged.
    pub fn rekey(&mut self) {
        let mut k = [0u8; 32];
        // cannot fail: 32 bytes are far below the ChaCha20 length limit;
        // the tag is discarded, as §11.3 says
        let _ = self
            .cipher
            .seal_in_place_separate_tag(nonce(RESERVED_NONCE), Aad::empty(), &mut k);
        self.cipher = key(&k);
        k.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a real XX handshake and returns the initiator's raw split (the
    /// keys this module uses) and the responder as snow's `TransportState`.
    fn pair() -> (CipherState, CipherState, snow::TransportState) {
        let params = crate::noise::params(crate::noise::Pattern::XX);
        let ki = snow::Builder::new(params.clone())
            .generate_keypair()
            .expect("rng");
        let kr = snow::Builder::new(params.clone())
            .generate_keypair()
            .expect("rng");
        let mut i = snow::Builder::new(params.clone())
            .local_private_key(&ki.private)
            .expect("key")
            .prologue(b"test")
            .expect("prologue")
            .build_initiator()
            .expect("initiator");
        let mut r = snow::Builder::new(params)
            .local_private_key(&kr.private)
            .expect("key")
            .prologue(b"test")
            .expect("prologue")
            .build_responder()
            .expect("responder");
        let (mut m, mut p) = ([0u8; 1024], [0u8; 1024]);
        let n = i.write_message(&[], &mut m).expect("msg 1");
        r.read_message(&m[..n], &mut p).expect("msg 1");
        let n = r.write_message(&[], &mut m).expect("msg 2");
        i.read_message(&m[..n], &mut p).expect("msg 2");
        let n = i.write_message(&[], &mut m).expect("msg 3");
        r.read_message(&m[..n], &mut p).expect("msg 3");
        let (k1, k2) = i.dangerously_get_raw_split();
        (
            CipherState::new(&k1),
            CipherState::new(&k2),
            r.into_transport_mode().expect("transport"),
        )
    }

    fn ours_to_snow(ours: &mut CipherState, snow: &mut snow::TransportState, plain: &[u8]) {
        let mut buf = plain.to_vec();
        let tag = ours.seal(&mut buf).expect("seal");
        buf.extend_from_slice(&tag);
        let mut out = vec![0u8; buf.len()];
        let n = snow
            .read_message(&buf, &mut out)
            .expect("snow opens what we sealed");
        assert_eq!(&out[..n], plain);
    }

    fn snow_to_ours(snow: &mut snow::TransportState, ours: &mut CipherState, plain: &[u8]) {
        let mut wire = vec![0u8; plain.len() + TAG_LEN];
        let n = snow.write_message(plain, &mut wire).expect("snow seals");
        let (body, tag) = wire[..n].split_at_mut(n - TAG_LEN);
        ours.open(body, tag).expect("we open what snow sealed");
        assert_eq!(body, plain);
    }

    #[test]
    fn same_bytes_as_snow_both_ways_and_across_rekeys() {
        let (mut send, mut recv, mut snow) = pair();
        for round in 0..3u8 {
            for len in [0usize, 1, 15, 16, 17, 1000, MAX_CHUNK_PLAIN] {
                let plain: Vec<u8> = (0..len).map(|i| (i as u8) ^ round).collect();
                ours_to_snow(&mut send, &mut snow, &plain);
                snow_to_ours(&mut snow, &mut recv, &plain);
            }
            // both directions rekey; the nonces keep counting (§11.3)
            send.rekey();
            snow.rekey_incoming();
            snow.rekey_outgoing();
            recv.rekey();
        }
        assert_eq!(send.nonce(), 21);
        assert_eq!(recv.nonce(), 21);
        assert_eq!(snow.receiving_nonce(), 21);
        assert_eq!(snow.sending_nonce(), 21);
    }

    #[test]
    fn a_one_sided_rekey_breaks_the_channel() {
        let (mut send, _, mut snow) = pair();
        send.rekey();
        let mut buf = b"after rekey".to_vec();
        let tag = send.seal(&mut buf).expect("seal");
        buf.extend_from_slice(&tag);
        let mut out = [0u8; 64];
        assert!(snow.read_message(&buf, &mut out).is_err());
    }

    #[test]
    fn failed_decrypt_moves_no_counter() {
        // RUSTSEC-2024-0011: garbage must not advance the receive nonce
        let (_, mut recv, mut snow) = pair();
        let mut wire = vec![0u8; 64];
        let n = snow.write_message(b"legit", &mut wire).expect("seal");
        let mut bad = wire[..n].to_vec();
        bad[0] ^= 1;
        let (body, tag) = bad.split_at_mut(n - TAG_LEN);
        assert_eq!(recv.open(body, tag), Err(CipherError::Auth));
        assert_eq!(
            recv.nonce(),
            0,
            "a forged message must not move the counter"
        );
        let mut good = wire[..n].to_vec();
        let (body, tag) = good.split_at_mut(n - TAG_LEN);
        recv.open(body, tag)
            .expect("the genuine message still opens");
        assert_eq!(body, b"legit");
        assert_eq!(recv.nonce(), 1);
        let mut replay = wire[..n].to_vec();
        let (body, tag) = replay.split_at_mut(n - TAG_LEN);
        assert_eq!(
            recv.open(body, tag),
            Err(CipherError::Auth),
            "a replay fails"
        );
        assert_eq!(recv.nonce(), 1);
    }

    #[test]
    fn the_reserved_nonce_is_never_used() {
        let mut cs = CipherState::new(&[7u8; 32]);
        cs.n = RESERVED_NONCE - 1;
        let mut buf = [0u8; 4];
        cs.seal(&mut buf).expect("the last usable nonce works");
        assert_eq!(cs.seal(&mut buf), Err(CipherError::Exhausted));
        assert_eq!(cs.reserve(1), Err(CipherError::Exhausted));
        assert_eq!(cs.nonce(), RESERVED_NONCE);
    }
}
