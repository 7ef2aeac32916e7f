//! The X25519 static keypair a Noise endpoint authenticates with.

use zeroize::Zeroizing;

/// A Noise static public key (X25519, 32 bytes): what a peer's allow-list
/// holds ([`NoiseConfig::allow`](super::NoiseConfig::allow)). Its own type,
/// so an Ed25519 key id or any other 32 bytes cannot be passed for one by
/// mistake; [`NoisePublicKey::from_bytes`] says so when it is meant.
/// `Debug` and `Display` show it in base64, as key files hold it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NoisePublicKey([u8; 32]);

impl NoisePublicKey {
    /// The key with these bytes (e.g. from a peer's configuration).
    pub const fn from_bytes(bytes: [u8; 32]) -> NoisePublicKey {
        NoisePublicKey(bytes)
    }
    /// Its 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// Its 32 bytes, by value.
    pub const fn to_bytes(self) -> [u8; 32] {
        self.0
    }
    /// Its bytes as a slice (as `[u8; 32]::as_slice` read them).
    pub const fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for NoisePublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NoisePublicKey({})", super::b64(&self.0))
    }
}

impl std::fmt::Display for NoisePublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&super::b64(&self.0))
    }
}

// bare bytes still convert and compare (an allow-list is searched with the
// bytes a handshake delivered); a `SigningKeyId` does not convert
bytes32_key_conversions!(NoisePublicKey);

/// An X25519 static keypair: 32 secret bytes (wiped from memory on drop)
/// and the public key derived from them.
///
/// ```
/// use sp_crypto::noise::StaticKeypair;
/// let a = StaticKeypair::generate();
/// let b = StaticKeypair::from_secret(*a.secret_bytes());
/// assert_eq!(a.public(), b.public());
/// ```
pub struct StaticKeypair {
    secret: Zeroizing<[u8; 32]>,
    public: [u8; 32],
}

impl StaticKeypair {
    /// A fresh keypair from the operating system's random number generator
    /// (snow's `Builder::generate_keypair`).
    ///
    /// # Panics
    /// If the operating system has no working random number generator: no
    /// key can be made safely then, and no peer input is involved.
    pub fn generate() -> StaticKeypair {
        let kp = snow::Builder::new(super::params(super::Pattern::XX))
            .generate_keypair()
            .expect("the OS random number generator failed; cannot create a key");
        let mut secret = Zeroizing::new([0u8; 32]);
        secret.copy_from_slice(&kp.private);
        // snow returns the secret in a plain Vec; wipe our copy of it too
        let mut private = kp.private;
        zeroize::Zeroize::zeroize(&mut private);
        StaticKeypair::from_secret(*secret)
    }

    /// The keypair for a known 32-byte X25519 secret (clamped when used, as
    /// X25519 specifies).
    pub fn from_secret(secret: [u8; 32]) -> StaticKeypair {
        let secret = Zeroizing::new(secret);
        let public = x25519_dalek::x25519(*secret, x25519_dalek::X25519_BASEPOINT_BYTES);
        StaticKeypair { secret, public }
    }

    /// The public key: what peers put in their allow-lists.
    pub fn public(&self) -> NoisePublicKey {
        NoisePublicKey(self.public)
    }

    /// The secret bytes. Keep them out of logs.
    pub fn secret_bytes(&self) -> &[u8; 32] {
        &self.secret
    }
}

impl Clone for StaticKeypair {
    fn clone(&self) -> Self {
        StaticKeypair::from_secret(*self.secret)
    }
}

impl std::fmt::Debug for StaticKeypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never the secret
        f.debug_struct("StaticKeypair")
            .field("public", &super::b64(&self.public))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_matches_snow_derivation() {
        let snow_kp = snow::Builder::new(crate::noise::params(crate::noise::Pattern::XX))
            .generate_keypair()
            .expect("rng");
        let secret: [u8; 32] = snow_kp.private[..].try_into().expect("32 bytes");
        assert_eq!(
            StaticKeypair::from_secret(secret).public().as_bytes()[..],
            snow_kp.public[..]
        );
        let kp = StaticKeypair::generate();
        assert_eq!(
            StaticKeypair::from_secret(*kp.secret_bytes()).public(),
            kp.public()
        );
        assert_ne!(
            StaticKeypair::generate().public(),
            kp.public(),
            "two keys must differ"
        );
    }
}
