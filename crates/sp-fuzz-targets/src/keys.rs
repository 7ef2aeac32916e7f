//! Key files (sp-crypto `keys.rs`): Ed25519 PKCS#8 and SPKI PEM, and the
//! one-line Noise key format, as loaded from disk (the text is what a
//! file would hold).

use sp_crypto::keys::{
    decode_noise_line, verifying_key_from_pem, SigningKeypair, NOISE_PUBLIC_TAG, NOISE_SECRET_TAG,
};

/// Fuzz target `key_files`: the input as each kind of key file. What
/// parses re-encodes to a file that parses to the same key.
pub fn key_files(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(k) = SigningKeypair::from_pkcs8_pem(&text) {
        let pem = k.to_pkcs8_pem().expect("a parsed key encodes");
        let again = SigningKeypair::from_pkcs8_pem(&pem).expect("our own encoding parses");
        assert_eq!(again.key_id(), k.key_id());
    }
    if let Ok(k) = verifying_key_from_pem(&text) {
        assert!(!k.is_weak(), "a weak key was trusted");
    }
    for tag in [NOISE_SECRET_TAG, NOISE_PUBLIC_TAG] {
        if let Ok(k) = decode_noise_line(&text, tag) {
            let line = format!("{tag} {}\n", sp_crypto::keys::base64(&k));
            assert_eq!(
                decode_noise_line(&line, tag).expect("our own line parses"),
                k
            );
            let other = if tag == NOISE_SECRET_TAG {
                NOISE_PUBLIC_TAG
            } else {
                NOISE_SECRET_TAG
            };
            assert!(
                decode_noise_line(&text, other).is_err(),
                "one line read as both a secret and a public key"
            );
        }
    }
}
