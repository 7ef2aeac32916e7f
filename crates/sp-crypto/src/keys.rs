//! Key generation, storage and loading for both crypto layers.
//!
//! * **Signing keys** (Ed25519, for [`crate::integrity`]): [`SigningKeypair`].
//!   The secret is stored as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, what
//!   `openssl pkey` reads), the public key as SPKI PEM
//!   (`-----BEGIN PUBLIC KEY-----`). A key is named by its *key id*,
//!   SHA-256 of the 32-byte public key. Receivers trust a [`TrustedSigners`]
//!   set, loaded from PEM files or a directory of `*.pub.pem` files.
//! * **Noise static keys** (X25519, for [`crate::noise`]): a secret is a
//!   [`NoiseSecret`], a public key a [`NoisePublicKey`] (never confused with
//!   a [`SigningKeyId`]: each is its own type), stored as one-line text files:
//!
//!   ```text
//!   spstack-noise-x25519-secret <base64 of the 32 secret bytes>
//!   spstack-noise-x25519-public <base64 of the 32 public bytes>
//!   ```
//!
//!   (standard base64 alphabet with padding, one trailing newline). The tag
//!   makes a public file impossible to load as a secret and vice versa.
//!
//! Secrets are created with mode `0600` (never wider, not even for a moment).
//! Loading opens a key file once and checks the descriptor it reads from
//! (`fstat`), never the path a second time: it must be a regular file (a
//! symlink to one is fine; a directory, fifo or device is refused before a
//! byte is read), owned by this process's effective user or root, and a
//! secret must grant group and others no access, a public key (which decides
//! whom we trust) no write access. At most 16 KiB are read. An error names the
//! file and what is wrong, and never quotes its content.
//! Keep the signing keys and the Noise keys separate: Noise §14 says a static
//! key must not be reused outside Noise.
//!
//! ```no_run
//! use std::path::Path;
//! use sp_crypto::keys::{keygen, KeyKind, SigningKeypair, TrustedSigners};
//!
//! # fn main() -> Result<(), sp_crypto::keys::KeyError> {
//! // what `sp-keygen --dir /etc/spstack --kind both billing` does
//! let written = keygen(Path::new("/etc/spstack"), "billing", KeyKind::Both, false)?;
//! println!("{written:?}");
//! let me = SigningKeypair::load(Path::new("/etc/spstack/billing.ed25519.pem"))?;
//! let trusted = TrustedSigners::load_dir(Path::new("/etc/spstack/trusted"))?;
//! # let _ = (me, trusted);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer as _, SigningKey};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// First word of a Noise secret key file.
pub const NOISE_SECRET_TAG: &str = "spstack-noise-x25519-secret";
/// First word of a Noise public key file.
pub const NOISE_PUBLIC_TAG: &str = "spstack-noise-x25519-public";

/// Why a key could not be generated, saved or loaded. Every message names
/// the file and says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// An I/O operation on a key file failed.
    #[error("could not {op} {}: {source}", path.display())]
    Io {
        /// What was being done (`read`, `create`, `rename`...).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// The file exists and overwriting was not requested.
    #[error("{} already exists; refusing to overwrite a key (pass --force / overwrite = true to replace it)", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// A secret key file is readable or writable by group or others.
    #[error("{} has mode {mode:04o}: a secret key must be accessible by its owner only; run `chmod 600 {}`", path.display(), path.display())]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A public key file is writable by group or others: whoever can
    /// rewrite it chooses whom this process trusts.
    #[error("{} has mode {mode:04o}: a trusted public key must not be writable by group or others; run `chmod 644 {}`", path.display(), path.display())]
    WritableByOthers {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The path leads to something other than a regular file (a directory,
    /// a fifo, a device...). Nothing was read from it.
    #[error("{} is a {found}, not a regular file; a key must be a regular file (a symlink to one is fine)", path.display())]
    NotRegularFile {
        /// The path given.
        path: PathBuf,
        /// What it is.
        found: &'static str,
    },
    /// The file belongs to another user (neither this process's effective
    /// user nor root), who could replace the key.
    #[error("{} is owned by uid {owner}; a key file must be owned by the user running this process (uid {expected}) or root; run `chown {expected} {}`", path.display(), path.display())]
    WrongOwner {
        /// The file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// This process's effective user.
        expected: u32,
    },
    /// The file does not hold a key of the expected kind.
    #[error("could not parse {}: {reason}", path.display())]
    Parse {
        /// The file (or `<memory>` for in-memory input).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A public key is of small order (a "weak" key that could make one
    /// signature verify for many messages); it cannot be trusted.
    #[error("{}: the Ed25519 public key is of small order (weak) and cannot be trusted; generate a new key", path.display())]
    WeakKey {
        /// Where it came from.
        path: PathBuf,
    },
    /// A key name for [`keygen`] is not a plain file-name stem.
    #[error("invalid key name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The operating system's random number generator failed.
    #[error("the OS random number generator failed: {0}; check /dev/urandom or getrandom(2) availability")]
    Random(String),
}

fn memory() -> PathBuf {
    PathBuf::from("<memory>")
}

fn parse_err(path: &Path, reason: impl Into<String>) -> KeyError {
    KeyError::Parse {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn random_32() -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let mut b = Zeroizing::new([0u8; 32]);
    // try_fill_bytes: a broken RNG is an error, not a panic
    OsRng
        .try_fill_bytes(b.as_mut())
        .map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(b)
}

/// SHA-256 of an Ed25519 public key: how the integrity layer names signers.
pub fn key_id_of(key: &VerifyingKey) -> SigningKeyId {
    SigningKeyId(Sha256::digest(key.as_bytes()).into())
}

/// The id of an Ed25519 signing key: SHA-256 of its public key, as the
/// integrity layer names signers on the wire. Not a key: it verifies
/// nothing, and it is no Noise key either, so it cannot be passed where one
/// is expected:
///
/// ```compile_fail,E0277
/// use sp_crypto::keys::SigningKeypair;
/// use sp_crypto::noise::{NoiseConfig, StaticKeypair};
/// let signing = SigningKeypair::generate();
/// // error: `NoisePublicKey: From<SigningKeyId>` is not satisfied
/// let cfg = NoiseConfig::new(StaticKeypair::generate()).allow(signing.key_id());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SigningKeyId([u8; 32]);

impl SigningKeyId {
    /// The id with these bytes (as a trailer or a tool shows them).
    pub const fn from_bytes(bytes: [u8; 32]) -> SigningKeyId {
        SigningKeyId(bytes)
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

impl fmt::Debug for SigningKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKeyId({})", hex(&self.0))
    }
}

/// Lower-case hex, as `sp-keygen` prints it.
impl fmt::Display for SigningKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

// bare bytes still convert and compare (a set of ids is searched with the
// bytes of a received trailer); a `NoisePublicKey` does not convert
bytes32_key_conversions!(SigningKeyId);

/// An X25519 secret for a Noise static key (32 bytes, wiped from memory on
/// drop). Its `Debug` never shows the bytes; `*secret` reads them.
pub struct NoiseSecret(Zeroizing<[u8; 32]>);

impl NoiseSecret {
    /// Takes these bytes as a secret.
    pub fn from_bytes(bytes: [u8; 32]) -> NoiseSecret {
        NoiseSecret(Zeroizing::new(bytes))
    }
}

impl std::ops::Deref for NoiseSecret {
    type Target = [u8; 32];
    fn deref(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for NoiseSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NoiseSecret(..)")
    }
}

impl From<NoiseSecret> for crate::noise::StaticKeypair {
    fn from(secret: NoiseSecret) -> Self {
        crate::noise::StaticKeypair::from_secret(*secret.0)
    }
}

pub use crate::noise::NoisePublicKey;
/// An Ed25519 public key (what [`TrustedSigners`] and
/// `IntegrityConfig::answered_by` take), re-exported so that no direct
/// `ed25519-dalek` dependency is needed.
pub use ed25519_dalek::VerifyingKey;

/// Lower-case hex of `bytes` (for key ids in logs and tool output).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Standard base64 (with padding) of `bytes`: how tools print public keys.
pub fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

// ---------------------------------------------------------------- files

#[cfg(unix)]
fn open_options(mode: u32) -> fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = fs::OpenOptions::new();
    o.write(true).create_new(true).mode(mode);
    o
}

#[cfg(not(unix))]
fn open_options(_mode: u32) -> fs::OpenOptions {
    let mut o = fs::OpenOptions::new();
    o.write(true).create_new(true);
    o
}

/// Writes `data` to `path` with `mode` set at creation. Without `overwrite`
/// an existing file is an error. With it, the data goes to a fresh temporary
/// file (created with `mode`) renamed over the old one: the new key is never
/// visible with the old file's (possibly wider) mode, and a crash leaves
/// either the old key or the new one, not half of each.
fn write_file(path: &Path, data: &[u8], mode: u32, overwrite: bool) -> Result<(), KeyError> {
    let io = |op, source| KeyError::Io {
        op,
        path: path.to_path_buf(),
        source,
    };
    if !overwrite {
        let mut f = match open_options(mode).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(KeyError::Exists {
                    path: path.to_path_buf(),
                })
            }
            Err(e) => return Err(io("create", e)),
        };
        f.write_all(data).map_err(|e| io("write", e))?;
        return f.sync_all().map_err(|e| io("sync", e));
    }
    let name = path
        .file_name()
        .ok_or_else(|| parse_err(path, "not a file path"))?
        .to_string_lossy()
        .into_owned();
    let suffix = hex(&random_32()?[..6]);
    let tmp = path.with_file_name(format!(".{name}.{suffix}.tmp"));
    let result = write_new_then_rename(&tmp, path, data, mode);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_new_then_rename(tmp: &Path, path: &Path, data: &[u8], mode: u32) -> Result<(), KeyError> {
    let io = |op, p: &Path, source| KeyError::Io {
        op,
        path: p.to_path_buf(),
        source,
    };
    let mut f = open_options(mode)
        .open(tmp)
        .map_err(|e| io("create", tmp, e))?;
    f.write_all(data).map_err(|e| io("write", tmp, e))?;
    f.sync_all().map_err(|e| io("sync", tmp, e))?;
    fs::rename(tmp, path).map_err(|e| io("rename into", path, e))
}

/// What a key file holds, which decides who else may touch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    /// A secret: no access at all for group or others.
    Secret,
    /// A public key the caller will trust (a signer, a Noise peer): others
    /// may read it, but whoever can rewrite it chooses whom we trust.
    Public,
}

/// Largest key file read: every format here is well under 1 KiB, so a big
/// file is a wrong path, and is not read into memory.
const MAX_KEY_FILE: u64 = 16 * 1024;

/// Opens a key file once and checks what was opened, not the path: type,
/// owner and mode come from `fstat` on the descriptor the bytes are then read
/// from, so swapping the path between a check and the read (for a symlink,
/// a fifo, another file) changes nothing. Symlinks are followed (secret
/// mounts are often symlinks); what they lead to must pass the same checks.
#[cfg(unix)]
fn open_key_file(path: &Path, access: Access) -> Result<(fs::File, fs::Metadata), KeyError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
    let io = |op, source| KeyError::Io {
        op,
        path: path.to_path_buf(),
        source,
    };
    // O_NONBLOCK: opening a fifo for reading would wait for a writer before
    // the type check could refuse it; for a regular file (the only kind
    // read) it changes nothing. O_NOCTTY: a terminal never becomes ours.
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| io("open", e))?;
    let meta = file.metadata().map_err(|e| io("stat", e))?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let found = if ft.is_dir() {
            "directory"
        } else if ft.is_fifo() {
            "fifo"
        } else if ft.is_char_device() {
            "character device"
        } else if ft.is_block_device() {
            "block device"
        } else if ft.is_socket() {
            "socket"
        } else {
            "special file"
        };
        return Err(KeyError::NotRegularFile {
            path: path.to_path_buf(),
            found,
        });
    }
    // SAFETY: geteuid has no preconditions and cannot fail
    let me = unsafe { libc::geteuid() };
    let owner = meta.uid();
    // root may own it too: root can replace any file of ours anyway
    if owner != me && owner != 0 {
        return Err(KeyError::WrongOwner {
            path: path.to_path_buf(),
            owner,
            expected: me,
        });
    }
    let mode = meta.mode() & 0o7777;
    match access {
        Access::Secret if mode & 0o077 != 0 => Err(KeyError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        }),
        Access::Public if mode & 0o022 != 0 => Err(KeyError::WritableByOthers {
            path: path.to_path_buf(),
            mode,
        }),
        _ => Ok((file, meta)),
    }
}

#[cfg(not(unix))]
fn open_key_file(path: &Path, _access: Access) -> Result<(fs::File, fs::Metadata), KeyError> {
    let io = |op, source| KeyError::Io {
        op,
        path: path.to_path_buf(),
        source,
    };
    let file = fs::File::open(path).map_err(|e| io("open", e))?;
    let meta = file.metadata().map_err(|e| io("stat", e))?;
    if !meta.is_file() {
        return Err(KeyError::NotRegularFile {
            path: path.to_path_buf(),
            found: if meta.is_dir() {
                "directory"
            } else {
                "special file"
            },
        });
    }
    Ok((file, meta))
}

/// The text of a key file, read from the one descriptor [`open_key_file`]
/// checked. Errors never quote the content: a secret's bytes must not end up
/// in a log.
fn read_key_file(path: &Path, access: Access) -> Result<Zeroizing<String>, KeyError> {
    use std::io::Read as _;
    let (file, meta) = open_key_file(path, access)?;
    let too_large = |len: u64| {
        parse_err(
            path,
            format!("{len} bytes is too large for a key file (limit {MAX_KEY_FILE}); is this the right path?"),
        )
    };
    if meta.len() > MAX_KEY_FILE {
        return Err(too_large(meta.len()));
    }
    // the limit holds even if the file grows after the size check; the
    // capacity is never exceeded, so no reallocation leaves a copy of a
    // secret behind in freed memory
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE as usize + 1));
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| KeyError::Io {
            op: "read",
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(too_large(bytes.len() as u64));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| parse_err(path, "not UTF-8 text"))?;
    Ok(Zeroizing::new(text.to_owned()))
}

// ---------------------------------------------------------------- Ed25519

/// An Ed25519 signing key pair (the secret is zeroed on drop).
///
/// `Debug` shows the key id only, never the secret.
#[derive(Clone)]
pub struct SigningKeypair {
    key: SigningKey,
}

impl fmt::Debug for SigningKeypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeypair")
            .field("key_id", &hex(self.key_id().as_bytes()))
            .finish_non_exhaustive()
    }
}

impl SigningKeypair {
    /// A new key pair from the operating system's RNG.
    ///
    /// # Panics
    ///
    /// If the OS RNG fails (as `ed25519_dalek::SigningKey::generate` does);
    /// use [`SigningKeypair::try_generate`] to get an error instead.
    pub fn generate() -> SigningKeypair {
        match SigningKeypair::try_generate() {
            Ok(k) => k,
            Err(e) => panic!("{e}"),
        }
    }

    /// A new key pair from the operating system's RNG, or the RNG's error.
    pub fn try_generate() -> Result<SigningKeypair, KeyError> {
        let seed = random_32()?;
        Ok(SigningKeypair::from_bytes(&seed))
    }

    /// The key pair of a 32-byte secret (an RFC 8032 seed).
    pub fn from_bytes(secret: &[u8; 32]) -> SigningKeypair {
        SigningKeypair {
            key: SigningKey::from_bytes(secret),
        }
    }

    /// The 32-byte secret (seed). Handle with care.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_bytes())
    }

    /// The 32-byte secret (seed), as `ed25519_dalek::SigningKey::to_bytes`
    /// names it; the same as [`SigningKeypair::secret_bytes`].
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        self.secret_bytes()
    }

    /// The public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// SHA-256 of the public key.
    pub fn key_id(&self) -> SigningKeyId {
        key_id_of(&self.verifying_key())
    }

    /// Signs `msg` (plain Ed25519, RFC 8032; not prehashed).
    pub fn sign(&self, msg: &[u8]) -> Signature {
        self.key.sign(msg)
    }

    /// The secret as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), with the
    /// public key included (PKCS#8 v2, which OpenSSL reads).
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        self.key
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map_err(|e| parse_err(&memory(), format!("PKCS#8 encoding failed: {e}")))
    }

    /// Parses PKCS#8 PEM (v1 or v2; with v2 the public key must match).
    pub fn from_pkcs8_pem(pem: &str) -> Result<SigningKeypair, KeyError> {
        Self::parse_pem(pem, &memory())
    }

    fn parse_pem(pem: &str, path: &Path) -> Result<SigningKeypair, KeyError> {
        // the decoder's own message is not passed on: it may quote the
        // bytes it choked on, which are the secret's
        SigningKey::from_pkcs8_pem(pem)
            .map(|key| SigningKeypair { key })
            .map_err(|_| {
                let why = if pem.contains("-----BEGIN PRIVATE KEY-----") {
                    "the PEM block does not hold an Ed25519 PKCS#8 private key"
                } else {
                    "not a PKCS#8 PEM private key; expected -----BEGIN PRIVATE KEY-----"
                };
                parse_err(path, why)
            })
    }

    /// Saves the secret as PKCS#8 PEM, mode 0600 from creation.
    pub fn save(&self, path: &Path, overwrite: bool) -> Result<(), KeyError> {
        let pem = self.to_pkcs8_pem()?;
        write_file(path, pem.as_bytes(), 0o600, overwrite)
    }

    /// Loads a secret saved by [`SigningKeypair::save`] (or `openssl genpkey
    /// -algorithm ed25519`). Refuses a file group or others can access.
    pub fn load(path: &Path) -> Result<SigningKeypair, KeyError> {
        let pem = read_key_file(path, Access::Secret)?;
        Self::parse_pem(&pem, path)
    }

    /// Saves the public key as SPKI PEM, mode 0644.
    pub fn save_public(&self, path: &Path, overwrite: bool) -> Result<(), KeyError> {
        save_verifying_key(path, &self.verifying_key(), overwrite)
    }
}

/// Saves an Ed25519 public key as SPKI PEM (`-----BEGIN PUBLIC KEY-----`), mode 0644.
pub fn save_verifying_key(
    path: &Path,
    key: &VerifyingKey,
    overwrite: bool,
) -> Result<(), KeyError> {
    let pem = key
        .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| parse_err(path, format!("SPKI encoding failed: {e}")))?;
    write_file(path, pem.as_bytes(), 0o644, overwrite)
}

/// Parses an SPKI PEM Ed25519 public key; refuses weak (small-order) keys.
pub fn verifying_key_from_pem(pem: &str) -> Result<VerifyingKey, KeyError> {
    parse_public_pem(pem, &memory())
}

fn parse_public_pem(pem: &str, path: &Path) -> Result<VerifyingKey, KeyError> {
    let key = VerifyingKey::from_public_key_pem(pem).map_err(|e| {
        parse_err(
            path,
            format!(
                "not an Ed25519 SPKI PEM public key ({e}); expected -----BEGIN PUBLIC KEY-----"
            ),
        )
    })?;
    if key.is_weak() {
        return Err(KeyError::WeakKey {
            path: path.to_path_buf(),
        });
    }
    Ok(key)
}

/// Loads an SPKI PEM Ed25519 public key; refuses weak (small-order) keys.
pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let pem = read_key_file(path, Access::Public)?;
    parse_public_pem(&pem, path)
}

/// The Ed25519 public keys a receiver accepts signatures from, by key id.
/// An empty set trusts nobody (every message is refused as unknown_signer).
#[derive(Clone, Default)]
pub struct TrustedSigners {
    keys: HashMap<SigningKeyId, VerifyingKey>,
}

impl fmt::Debug for TrustedSigners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.keys.keys().map(|id| hex(id.as_bytes())))
            .finish()
    }
}

impl TrustedSigners {
    /// An empty set.
    pub fn new() -> TrustedSigners {
        TrustedSigners::default()
    }

    /// A set of these keys; refuses weak (small-order) keys.
    pub fn from_keys(
        keys: impl IntoIterator<Item = VerifyingKey>,
    ) -> Result<TrustedSigners, KeyError> {
        let mut t = TrustedSigners::new();
        for k in keys {
            t.add(k)?;
        }
        Ok(t)
    }

    /// Trusts `key`; returns its key id. Refuses weak (small-order) keys.
    pub fn add(&mut self, key: VerifyingKey) -> Result<SigningKeyId, KeyError> {
        if key.is_weak() {
            return Err(KeyError::WeakKey { path: memory() });
        }
        let id = key_id_of(&key);
        self.keys.insert(id, key);
        Ok(id)
    }

    /// Stops trusting the key with this id (rotation, revocation).
    pub fn remove<Q>(&mut self, key_id: &Q) -> bool
    where
        SigningKeyId: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.keys.remove(key_id).is_some()
    }

    /// Trusts the SPKI PEM public key in `path`; returns its key id.
    pub fn add_pem_file(&mut self, path: &Path) -> Result<SigningKeyId, KeyError> {
        let key = load_verifying_key(path)?;
        let id = key_id_of(&key);
        self.keys.insert(id, key);
        Ok(id)
    }

    /// A set of the SPKI PEM public keys in these files.
    pub fn load_files<P: AsRef<Path>>(
        paths: impl IntoIterator<Item = P>,
    ) -> Result<TrustedSigners, KeyError> {
        let mut t = TrustedSigners::new();
        for p in paths {
            t.add_pem_file(p.as_ref())?;
        }
        Ok(t)
    }

    /// A set of every `*.pub.pem` file in `dir` (not recursive; other files
    /// are ignored, so secrets kept alongside are never read). A file that
    /// does not parse is an error naming it, not silently skipped.
    pub fn load_dir(dir: &Path) -> Result<TrustedSigners, KeyError> {
        let entries = fs::read_dir(dir).map_err(|source| KeyError::Io {
            op: "list",
            path: dir.to_path_buf(),
            source,
        })?;
        let mut paths = Vec::new();
        for e in entries {
            let e = e.map_err(|source| KeyError::Io {
                op: "list",
                path: dir.to_path_buf(),
                source,
            })?;
            let p = e.path();
            let is_pub = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".pub.pem"));
            if is_pub && p.is_file() {
                paths.push(p);
            }
        }
        paths.sort();
        TrustedSigners::load_files(paths)
    }

    /// The key with this id (a [`SigningKeyId`], or the id's bytes as a
    /// received trailer carries them), if trusted.
    pub fn get<Q>(&self, key_id: &Q) -> Option<&VerifyingKey>
    where
        SigningKeyId: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.keys.get(key_id)
    }

    /// True if the key with this id is trusted.
    pub fn contains<Q>(&self, key_id: &Q) -> bool
    where
        SigningKeyId: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.keys.contains_key(key_id)
    }

    /// Number of trusted keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when nobody is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The trusted key ids.
    pub fn key_ids(&self) -> impl Iterator<Item = &SigningKeyId> {
        self.keys.keys()
    }
}

/// The trusted keys, so a set can be passed where keys are expected
/// (e.g. `IntegrityConfig::new`).
impl IntoIterator for TrustedSigners {
    type Item = VerifyingKey;
    type IntoIter = std::collections::hash_map::IntoValues<SigningKeyId, VerifyingKey>;
    fn into_iter(self) -> Self::IntoIter {
        self.keys.into_values()
    }
}

// ---------------------------------------------------------------- X25519 (Noise)

/// 32 random bytes for an X25519 static secret (X25519 clamps on use, so
/// any 32 bytes are a valid secret).
pub fn generate_noise_secret() -> Result<NoiseSecret, KeyError> {
    Ok(NoiseSecret(random_32()?))
}

/// The X25519 public key of a secret (scalar multiplication of the base point).
pub fn noise_public_from_secret(secret: &[u8; 32]) -> NoisePublicKey {
    NoisePublicKey::from_bytes(x25519_dalek::x25519(
        *secret,
        x25519_dalek::X25519_BASEPOINT_BYTES,
    ))
}

fn encode_line(tag: &str, bytes: &[u8; 32]) -> Zeroizing<String> {
    Zeroizing::new(format!("{tag} {}\n", base64(bytes)))
}

/// Parses `<tag> <base64>`. Nothing of the content is quoted in an error
/// (the same code reads secrets), only what is wrong with it.
fn decode_line(text: &str, tag: &str, path: &Path) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let line = text.trim();
    let Some((word, b64)) = line.split_once(' ') else {
        return Err(parse_err(
            path,
            format!("expected one line `{tag} <base64>`"),
        ));
    };
    if word != tag {
        let hint = if word == NOISE_PUBLIC_TAG || word == NOISE_SECRET_TAG {
            " (a public key file was given where a secret is needed, or the reverse)"
        } else {
            ""
        };
        return Err(parse_err(
            path,
            format!("does not start with {tag:?}{hint}"),
        ));
    }
    // base64's error names the offending byte: say only that it is not base64
    let raw = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| {
                parse_err(
                    path,
                    "the key is not valid base64 (standard alphabet, padded)",
                )
            })?,
    );
    let mut out = Zeroizing::new([0u8; 32]);
    if raw.len() != 32 {
        return Err(parse_err(
            path,
            format!("decodes to {} bytes, an X25519 key is 32", raw.len()),
        ));
    }
    out.copy_from_slice(&raw);
    Ok(out)
}

/// The one-line Noise key format as [`load_noise_secret`] and
/// [`load_noise_public`] read it, from text in memory: for the fuzz targets
/// (`fuzzing` feature), which must not go through files.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn decode_noise_line(text: &str, tag: &str) -> Result<[u8; 32], KeyError> {
    decode_line(text, tag, &memory()).map(|k| *k)
}

/// Saves an X25519 secret (`spstack-noise-x25519-secret <base64>`), mode 0600 from creation.
pub fn save_noise_secret(path: &Path, secret: &[u8; 32], overwrite: bool) -> Result<(), KeyError> {
    let line = encode_line(NOISE_SECRET_TAG, secret);
    write_file(path, line.as_bytes(), 0o600, overwrite)
}

/// Loads an X25519 secret saved by [`save_noise_secret`]. Refuses a file
/// group or others can access.
pub fn load_noise_secret(path: &Path) -> Result<NoiseSecret, KeyError> {
    let text = read_key_file(path, Access::Secret)?;
    decode_line(&text, NOISE_SECRET_TAG, path).map(NoiseSecret)
}

/// Saves an X25519 public key (`spstack-noise-x25519-public <base64>`), mode
/// 0644. Takes a [`NoisePublicKey`] (or its bare bytes, which convert).
pub fn save_noise_public<K: Into<NoisePublicKey> + Copy>(
    path: &Path,
    public: &K,
    overwrite: bool,
) -> Result<(), KeyError> {
    let public: NoisePublicKey = (*public).into();
    let line = encode_line(NOISE_PUBLIC_TAG, public.as_bytes());
    write_file(path, line.as_bytes(), 0o644, overwrite)
}

/// Loads an X25519 public key saved by [`save_noise_public`].
pub fn load_noise_public(path: &Path) -> Result<NoisePublicKey, KeyError> {
    let text = read_key_file(path, Access::Public)?;
    Ok(NoisePublicKey::from_bytes(*decode_line(
        &text,
        NOISE_PUBLIC_TAG,
        path,
    )?))
}

// ---------------------------------------------------------------- keygen

/// Which keys [`keygen`] makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// An Ed25519 signing key pair (integrity layer).
    Signing,
    /// An X25519 Noise static key pair (hop encryption).
    Noise,
    /// Both.
    Both,
}

impl std::str::FromStr for KeyKind {
    type Err = String;
    fn from_str(s: &str) -> Result<KeyKind, String> {
        match s {
            "signing" => Ok(KeyKind::Signing),
            "noise" => Ok(KeyKind::Noise),
            "both" => Ok(KeyKind::Both),
            other => Err(format!(
                "unknown key kind {other:?}; use signing, noise or both"
            )),
        }
    }
}

/// The files [`keygen`] writes for `name` and `kind` in `dir`, secrets first:
/// `<name>.ed25519.pem`, `<name>.ed25519.pub.pem`, `<name>.noise.key`,
/// `<name>.noise.pub`.
pub fn keygen_paths(dir: &Path, name: &str, kind: KeyKind) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some((sec, public)) = signing_paths(dir, name, kind) {
        v.extend([sec, public]);
    }
    if let Some((sec, public)) = noise_paths(dir, name, kind) {
        v.extend([sec, public]);
    }
    v
}

fn signing_paths(dir: &Path, name: &str, kind: KeyKind) -> Option<(PathBuf, PathBuf)> {
    matches!(kind, KeyKind::Signing | KeyKind::Both).then(|| {
        (
            dir.join(format!("{name}.ed25519.pem")),
            dir.join(format!("{name}.ed25519.pub.pem")),
        )
    })
}

fn noise_paths(dir: &Path, name: &str, kind: KeyKind) -> Option<(PathBuf, PathBuf)> {
    matches!(kind, KeyKind::Noise | KeyKind::Both).then(|| {
        (
            dir.join(format!("{name}.noise.key")),
            dir.join(format!("{name}.noise.pub")),
        )
    })
}

fn check_name(name: &str) -> Result<(), KeyError> {
    let bad = |reason| {
        Err(KeyError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.starts_with('.') {
        return bad("it starts with '.'");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
    {
        return bad("use only letters, digits, '-', '_', '.' and '@'");
    }
    Ok(())
}

/// Generates keys named `name` in `dir` (created if missing) and returns the
/// paths written (see [`keygen_paths`]). Secrets get mode 0600, public keys
/// 0644. Without `overwrite`, fails before writing anything if any of the
/// files exists.
pub fn keygen(
    dir: &Path,
    name: &str,
    kind: KeyKind,
    overwrite: bool,
) -> Result<Vec<PathBuf>, KeyError> {
    check_name(name)?;
    let paths = keygen_paths(dir, name, kind);
    if !overwrite {
        if let Some(p) = paths.iter().find(|p| p.exists()) {
            return Err(KeyError::Exists { path: p.clone() });
        }
    }
    fs::create_dir_all(dir).map_err(|source| KeyError::Io {
        op: "create directory",
        path: dir.to_path_buf(),
        source,
    })?;
    if let Some((sec, public)) = signing_paths(dir, name, kind) {
        let kp = SigningKeypair::try_generate()?;
        kp.save(&sec, overwrite)?;
        kp.save_public(&public, overwrite)?;
    }
    if let Some((sec, public)) = noise_paths(dir, name, kind) {
        let secret = generate_noise_secret()?;
        save_noise_secret(&sec, &secret, overwrite)?;
        save_noise_public(&public, &noise_public_from_secret(&secret), overwrite)?;
    }
    Ok(paths)
}
