//! Key files: round trips, modes, refusals, `keygen` and the `sp-keygen` binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use sp_crypto::keys::{
    keygen, load_noise_public, load_noise_secret, load_verifying_key, noise_public_from_secret,
    save_noise_public, save_noise_secret, save_verifying_key, verifying_key_from_pem, KeyError,
    KeyKind, SigningKeypair, TrustedSigners,
};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let mut r = [0u8; 8];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut r);
        let p = std::env::temp_dir().join(format!(
            "sp-crypto-{tag}-{}-{}",
            std::process::id(),
            sp_crypto::keys::hex(&r)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn hex32(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
fn chmod(p: &Path, m: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

#[test]
fn signing_key_round_trips_through_pem_files() {
    let d = TempDir::new("sign");
    let k = SigningKeypair::generate();
    let (sec, public) = (d.join("a.ed25519.pem"), d.join("a.ed25519.pub.pem"));
    k.save(&sec, false).unwrap();
    k.save_public(&public, false).unwrap();
    let text = std::fs::read_to_string(&sec).unwrap();
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"), "{text}");
    let pub_text = std::fs::read_to_string(&public).unwrap();
    assert!(
        pub_text.starts_with("-----BEGIN PUBLIC KEY-----"),
        "{pub_text}"
    );

    let back = SigningKeypair::load(&sec).unwrap();
    assert_eq!(*back.secret_bytes(), *k.secret_bytes());
    assert_eq!(back.key_id(), k.key_id());
    let vk = load_verifying_key(&public).unwrap();
    assert_eq!(vk, k.verifying_key());
    // key id is SHA-256 of the raw public key
    use sha2::Digest;
    let expect: [u8; 32] = sha2::Sha256::digest(k.verifying_key().as_bytes()).into();
    assert_eq!(k.key_id(), expect);
    // a signature made with the loaded key verifies strictly with the loaded public key
    let sig = back.sign(b"msg");
    vk.verify_strict(b"msg", &sig).unwrap();
    // in-memory forms agree with the files
    assert_eq!(
        SigningKeypair::from_pkcs8_pem(&k.to_pkcs8_pem().unwrap())
            .unwrap()
            .key_id(),
        k.key_id()
    );
    assert_eq!(verifying_key_from_pem(&pub_text).unwrap(), vk);
}

#[test]
fn an_openssl_style_pkcs8_v1_key_loads() {
    // RFC 8410 §10.3 example private key (PKCS#8 v1, no public key inside)
    let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";
    let k = SigningKeypair::from_pkcs8_pem(pem).unwrap();
    assert_eq!(
        sp_crypto::keys::hex(&k.secret_bytes()[..]),
        "d4ee72dbf913584ad5b6d8f1f769f8ad3afe7c28cbf1d4fbe097a88f44755842"
    );
}

#[test]
fn noise_keys_round_trip_in_their_documented_format() {
    let d = TempDir::new("noise");
    let secret = sp_crypto::keys::generate_noise_secret().unwrap();
    let public = noise_public_from_secret(&secret);
    let (sec, pubp) = (d.join("n.noise.key"), d.join("n.noise.pub"));
    save_noise_secret(&sec, &secret, false).unwrap();
    save_noise_public(&pubp, &public, false).unwrap();
    let line = std::fs::read_to_string(&sec).unwrap();
    assert!(line.starts_with("spstack-noise-x25519-secret "), "{line}");
    assert!(line.ends_with('\n') && line.lines().count() == 1);
    assert_eq!(*load_noise_secret(&sec).unwrap(), *secret);
    assert_eq!(load_noise_public(&pubp).unwrap(), public);
    // the public key derivation matches RFC 7748 §6.1 (Alice)
    let alice = hex32("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    assert_eq!(
        noise_public_from_secret(&alice),
        hex32("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    );
    // a public file is not a secret and the reverse, with a hint
    match load_noise_secret(&pubp) {
        Err(KeyError::Parse { reason, .. }) => assert!(reason.contains("public"), "{reason}"),
        #[cfg(unix)]
        Err(KeyError::InsecurePermissions { .. }) => {} // 0644 is refused first
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        load_noise_public(&sec),
        Err(KeyError::Parse { .. })
    ));
}

#[cfg(unix)]
#[test]
fn secrets_are_written_0600_and_a_0644_secret_is_refused_with_the_chmod_hint() {
    let d = TempDir::new("mode");
    let k = SigningKeypair::generate();
    let sec = d.join("k.ed25519.pem");
    k.save(&sec, false).unwrap();
    assert_eq!(mode(&sec), 0o600);
    chmod(&sec, 0o644);
    let err = SigningKeypair::load(&sec).unwrap_err();
    match &err {
        KeyError::InsecurePermissions { path, mode } => {
            assert_eq!(path, &sec);
            assert_eq!(*mode, 0o644);
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("chmod 600 {}", sec.display())),
        "{msg}"
    );
    assert!(msg.contains("0644"), "{msg}");
    // group-readable only is refused too; owner-only read is fine
    chmod(&sec, 0o640);
    assert!(SigningKeypair::load(&sec).is_err());
    chmod(&sec, 0o400);
    assert_eq!(SigningKeypair::load(&sec).unwrap().key_id(), k.key_id());

    let nsec = d.join("n.noise.key");
    save_noise_secret(&nsec, &[7; 32], false).unwrap();
    assert_eq!(mode(&nsec), 0o600);
    chmod(&nsec, 0o604);
    assert!(matches!(
        load_noise_secret(&nsec),
        Err(KeyError::InsecurePermissions { mode: 0o604, .. })
    ));
}

#[cfg(unix)]
#[test]
fn overwrite_is_refused_unless_asked_and_then_keeps_0600() {
    let d = TempDir::new("over");
    let sec = d.join("k.ed25519.pem");
    let a = SigningKeypair::generate();
    let b = SigningKeypair::generate();
    a.save(&sec, false).unwrap();
    assert!(matches!(b.save(&sec, false), Err(KeyError::Exists { .. })));
    assert_eq!(SigningKeypair::load(&sec).unwrap().key_id(), a.key_id());
    // an existing file with a wide mode: the replacement is 0600 anyway
    chmod(&sec, 0o666);
    b.save(&sec, true).unwrap();
    assert_eq!(mode(&sec), 0o600);
    assert_eq!(SigningKeypair::load(&sec).unwrap().key_id(), b.key_id());
    // no temporary files left behind
    assert_eq!(std::fs::read_dir(&d.0).unwrap().count(), 1);
}

#[test]
fn garbage_and_oversized_files_are_parse_errors_naming_the_file() {
    let d = TempDir::new("bad");
    let p = d.join("x.pub.pem");
    std::fs::write(&p, "not a key").unwrap();
    let e = load_verifying_key(&p).unwrap_err();
    assert!(e.to_string().contains(&p.display().to_string()), "{e}");
    let big = d.join("big.pub.pem");
    std::fs::write(&big, vec![b'A'; 1 << 20]).unwrap();
    assert!(matches!(
        load_verifying_key(&big),
        Err(KeyError::Parse { .. })
    ));
    let n = d.join("n.noise.pub");
    std::fs::write(&n, "spstack-noise-x25519-public AAAA\n").unwrap();
    match load_noise_public(&n) {
        Err(KeyError::Parse { reason, .. }) => assert!(reason.contains("32"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn trusted_signers_load_from_files_and_a_directory() {
    let d = TempDir::new("trust");
    let keys: Vec<SigningKeypair> = (0..3).map(|_| SigningKeypair::generate()).collect();
    for (i, k) in keys.iter().enumerate() {
        k.save_public(&d.join(format!("k{i}.ed25519.pub.pem").as_str()), false)
            .unwrap();
    }
    // a secret in the same directory is ignored, never read
    keys[0].save(&d.join("k0.ed25519.pem"), false).unwrap();
    let t = TrustedSigners::load_dir(&d.0).unwrap();
    assert_eq!(t.len(), 3);
    for k in &keys {
        assert!(t.contains(&k.key_id()));
        assert_eq!(t.get(&k.key_id()), Some(&k.verifying_key()));
    }
    let one = TrustedSigners::load_files([d.join("k1.ed25519.pub.pem")]).unwrap();
    assert_eq!(one.len(), 1);
    assert!(one.contains(&keys[1].key_id()) && !one.contains(&keys[0].key_id()));
    // a broken public key in the directory is an error naming it
    std::fs::write(d.join("broken.pub.pem"), "junk").unwrap();
    let e = TrustedSigners::load_dir(&d.0).unwrap_err();
    assert!(e.to_string().contains("broken.pub.pem"), "{e}");
    // removing a key (rotation) stops trusting it
    let mut t = t;
    assert!(t.remove(&keys[2].key_id()));
    assert!(!t.contains(&keys[2].key_id()));
}

#[test]
fn weak_public_keys_are_refused() {
    // the identity point (small order): verify_strict would reject it, but
    // trusting it at all is a configuration error worth reporting early
    let mut b = [0u8; 32];
    b[0] = 1;
    let weak = ed25519_dalek::VerifyingKey::from_bytes(&b).unwrap();
    assert!(matches!(
        TrustedSigners::new().add(weak),
        Err(KeyError::WeakKey { .. })
    ));
    let d = TempDir::new("weak");
    let p = d.join("w.pub.pem");
    save_verifying_key(&p, &weak, false).unwrap();
    assert!(matches!(
        load_verifying_key(&p),
        Err(KeyError::WeakKey { .. })
    ));
}

#[test]
fn keygen_writes_four_files_with_the_right_modes() {
    let d = TempDir::new("keygen");
    let dir = d.join("keys");
    let paths = keygen(&dir, "svc", KeyKind::Both, false).unwrap();
    let names: Vec<String> = paths
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "svc.ed25519.pem",
            "svc.ed25519.pub.pem",
            "svc.noise.key",
            "svc.noise.pub"
        ]
    );
    #[cfg(unix)]
    {
        assert_eq!(mode(&paths[0]), 0o600);
        assert_eq!(mode(&paths[1]), 0o644);
        assert_eq!(mode(&paths[2]), 0o600);
        assert_eq!(mode(&paths[3]), 0o644);
    }
    let k = SigningKeypair::load(&paths[0]).unwrap();
    assert_eq!(load_verifying_key(&paths[1]).unwrap(), k.verifying_key());
    let s = load_noise_secret(&paths[2]).unwrap();
    assert_eq!(
        load_noise_public(&paths[3]).unwrap(),
        noise_public_from_secret(&s)
    );
    // again without overwrite: refused before anything is written
    let before = std::fs::read(&paths[0]).unwrap();
    assert!(matches!(
        keygen(&dir, "svc", KeyKind::Both, false),
        Err(KeyError::Exists { .. })
    ));
    assert_eq!(std::fs::read(&paths[0]).unwrap(), before);
    // with overwrite: new keys
    keygen(&dir, "svc", KeyKind::Signing, true).unwrap();
    assert_ne!(std::fs::read(&paths[0]).unwrap(), before);
    assert_eq!(keygen(&dir, "n", KeyKind::Noise, false).unwrap().len(), 2);
    // names that would escape the directory or hide the file are refused
    for bad in ["", "../x", "a/b", ".hidden"] {
        assert!(
            matches!(
                keygen(&dir, bad, KeyKind::Both, false),
                Err(KeyError::InvalidName { .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn the_sp_keygen_binary_writes_and_prints_keys() {
    let d = TempDir::new("bin");
    let exe = env!("CARGO_BIN_EXE_sp-keygen");
    let out = Command::new(exe)
        .args(["--dir"])
        .arg(&d.0)
        .args(["--kind", "both", "node1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let k = SigningKeypair::load(&d.join("node1.ed25519.pem")).unwrap();
    assert!(stdout.contains(&format!("wrote {}", d.join("node1.noise.pub").display())));
    assert!(
        stdout.contains(&sp_crypto::keys::base64(k.verifying_key().as_bytes())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&sp_crypto::keys::hex(&k.key_id())),
        "{stdout}"
    );
    let npub = load_noise_public(&d.join("node1.noise.pub")).unwrap();
    assert!(stdout.contains(&sp_crypto::keys::base64(&npub)), "{stdout}");

    // again: refused (exit 1) with the --force hint; --force replaces
    let again = Command::new(exe)
        .arg("--dir")
        .arg(&d.0)
        .args(["--kind", "signing", "node1"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    let forced = Command::new(exe)
        .arg("--dir")
        .arg(&d.0)
        .args(["--kind", "signing", "--force", "node1"])
        .output()
        .unwrap();
    assert!(forced.status.success());
    assert_ne!(
        SigningKeypair::load(&d.join("node1.ed25519.pem"))
            .unwrap()
            .key_id(),
        k.key_id()
    );
    // usage errors: exit 2
    let bad = Command::new(exe)
        .args(["--kind", "rsa", "x"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("usage"));
    let none = Command::new(exe).output().unwrap();
    assert_eq!(none.status.code(), Some(2));
}

/// Runs `load` on another thread and gives up after a few seconds: a key
/// loader that opens a fifo or a device for reading would block forever.
#[cfg(unix)]
fn bounded<T: Send + 'static>(what: &str, load: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(load());
    });
    rx.recv_timeout(std::time::Duration::from_secs(5))
        .unwrap_or_else(|_| panic!("{what}: the loader blocked instead of refusing"))
}

#[cfg(unix)]
fn mkfifo(p: &Path) {
    let st = Command::new("mkfifo")
        .arg("-m")
        .arg("600")
        .arg(p)
        .status()
        .unwrap();
    assert!(st.success(), "mkfifo {}", p.display());
}

#[cfg(unix)]
#[test]
fn a_key_path_swapped_for_a_symlink_to_a_fifo_is_refused_not_read() {
    let d = TempDir::new("fifo");
    let fifo = d.join("fifo");
    mkfifo(&fifo);
    let k = SigningKeypair::generate();
    // each key file was good, then replaced by a symlink to a fifo (mode
    // 0600, owned by us: the old mode check on the path passed it)
    let sec = d.join("k.ed25519.pem");
    let public = d.join("k.ed25519.pub.pem");
    let nsec = d.join("n.noise.key");
    let npub = d.join("n.noise.pub");
    k.save(&sec, false).unwrap();
    k.save_public(&public, false).unwrap();
    save_noise_secret(&nsec, &[9; 32], false).unwrap();
    save_noise_public(&npub, &[9; 32], false).unwrap();
    for p in [&sec, &public, &nsec, &npub] {
        std::fs::remove_file(p).unwrap();
        std::os::unix::fs::symlink(&fifo, p).unwrap();
    }
    let errors = [
        bounded("secret", {
            let p = sec.clone();
            move || SigningKeypair::load(&p).map(|_| ()).unwrap_err()
        }),
        bounded("public", {
            let p = public.clone();
            move || load_verifying_key(&p).map(|_| ()).unwrap_err()
        }),
        bounded("noise secret", {
            let p = nsec.clone();
            move || load_noise_secret(&p).map(|_| ()).unwrap_err()
        }),
        bounded("noise public", {
            let p = npub.clone();
            move || load_noise_public(&p).map(|_| ()).unwrap_err()
        }),
    ];
    for (e, p) in errors.iter().zip([&sec, &public, &nsec, &npub]) {
        let msg = e.to_string();
        assert!(msg.contains(&p.display().to_string()), "{msg}");
        assert!(
            msg.contains("fifo") && msg.contains("not a regular file"),
            "{msg}"
        );
    }
}

#[cfg(unix)]
#[test]
fn a_directory_or_a_device_given_as_a_key_file_is_refused_with_a_clear_error() {
    let d = TempDir::new("notfile");
    let dir = d.join("k.ed25519.pem");
    std::fs::create_dir(&dir).unwrap();
    chmod(&dir, 0o700);
    let msg = SigningKeypair::load(&dir).unwrap_err().to_string();
    assert!(
        msg.contains("directory") && msg.contains("not a regular file"),
        "{msg}"
    );
    let msg = load_verifying_key(&dir).unwrap_err().to_string();
    assert!(
        msg.contains("directory") && msg.contains("not a regular file"),
        "{msg}"
    );
    // a character device: refused before a byte is read
    let msg = bounded("device", || {
        load_verifying_key(Path::new("/dev/null"))
            .map(|_| ())
            .unwrap_err()
            .to_string()
    });
    assert!(
        msg.contains("device") && msg.contains("not a regular file"),
        "{msg}"
    );
}

#[cfg(unix)]
#[test]
fn a_key_file_owned_by_another_user_or_writable_by_others_is_refused() {
    let d = TempDir::new("owner");
    let k = SigningKeypair::generate();
    let sec = d.join("k.ed25519.pem");
    let public = d.join("k.ed25519.pub.pem");
    k.save(&sec, false).unwrap();
    k.save_public(&public, false).unwrap();
    // a trusted public key anyone can rewrite lets anyone choose whom we trust
    chmod(&public, 0o666);
    let msg = load_verifying_key(&public).unwrap_err().to_string();
    assert!(msg.contains("0666") && msg.contains("chmod 644"), "{msg}");
    chmod(&public, 0o644);
    assert_eq!(load_verifying_key(&public).unwrap(), k.verifying_key());
    // another user's files (only root can make one here)
    if std::os::unix::fs::chown(&sec, Some(4242), None).is_err() {
        eprintln!("not root: cannot give a file to another user; owner check not exercised");
        return;
    }
    std::os::unix::fs::chown(&public, Some(4242), None).unwrap();
    for e in [
        SigningKeypair::load(&sec).map(|_| ()).unwrap_err(),
        load_verifying_key(&public).map(|_| ()).unwrap_err(),
    ] {
        let msg = e.to_string();
        assert!(msg.contains("owned by uid 4242"), "{msg}");
    }
}

#[test]
fn a_secret_files_parse_error_does_not_contain_its_bytes() {
    let d = TempDir::new("leak");
    let marker = "S3cr3tW0rdXyZ";
    let cases = [
        // a secret pasted without its tag, with a comment after it
        format!("{marker}AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= my key\n"),
        // the tag, then base64 with a character outside the alphabet
        format!("{NOISE}{} {marker}*AAAAAAAAAAAAAAAAAAAAAAAAAA=\n", ""),
        // the tag, then base64 of the wrong length
        format!("{NOISE} {marker}AAAA\n"),
    ];
    for (i, text) in cases.iter().enumerate() {
        let p = d.join(&format!("n{i}.noise.key"));
        save_raw_secret(&p, text.as_bytes());
        let e = load_noise_secret(&p).unwrap_err();
        let (shown, debug) = (e.to_string(), format!("{e:?}"));
        let path = p.display().to_string();
        // the path is random hex: look at what the error says besides it
        let (bare, bare_debug) = (shown.replace(&path, ""), debug.replace(&path, ""));
        for s in [&bare, &bare_debug] {
            assert!(!s.contains(marker), "case {i} echoes the secret: {s}");
            assert!(
                !s.contains("42"),
                "case {i} names a byte of the secret: {s}"
            );
        }
        assert!(shown.contains(&path), "{shown}");
    }
    // a PKCS#8 file whose body is not a key
    let p = d.join("k.ed25519.pem");
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{marker}{marker}\n-----END PRIVATE KEY-----\n");
    save_raw_secret(&p, pem.as_bytes());
    let e = SigningKeypair::load(&p).unwrap_err();
    assert!(!e.to_string().contains(marker), "{e}");
    assert!(!format!("{e:?}").contains(marker), "{e:?}");
}

const NOISE: &str = sp_crypto::keys::NOISE_SECRET_TAG;

/// Writes `bytes` as a secret would be written: 0600 from creation.
fn save_raw_secret(p: &Path, bytes: &[u8]) {
    use std::io::Write as _;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(p).unwrap().write_all(bytes).unwrap();
}
