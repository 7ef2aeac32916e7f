//! The `keygen` command line, shared by the `sp-keygen` binary and
//! `spcat keygen`:
//!
//! ```text
//! keygen [--dir DIR] [--kind signing|noise|both] [--force] NAME
//! ```
//!
//! Writes, in `DIR` (default `.`), `NAME.ed25519.pem` (0600) and
//! `NAME.ed25519.pub.pem` (0644) for `signing`, `NAME.noise.key` (0600) and
//! `NAME.noise.pub` (0644) for `noise`, all four for `both` (the default).
//! Prints each path written, then the public keys in base64 and the
//! signing key id in hex. Refuses to overwrite existing files unless
//! `--force` is given.
//!
//! ```no_run
//! let status = sp_crypto::keygen_cli::run("sp-keygen", ["--dir", "/tmp", "alice"].map(String::from).into_iter());
//! assert_eq!(status, 0);
//! ```

use std::path::{Path, PathBuf};

use crate::keys::{base64, key_id_of, keygen, load_noise_public, load_verifying_key, KeyKind};

/// The usage line.
pub const USAGE: &str = "usage: keygen [--dir DIR] [--kind signing|noise|both] [--force] NAME";

struct Args {
    dir: PathBuf,
    kind: KeyKind,
    force: bool,
    name: String,
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let (mut dir, mut kind, mut force, mut name) = (PathBuf::from("."), KeyKind::Both, false, None);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => return Ok(None),
            "--force" | "-f" => force = true,
            "--dir" | "-d" => {
                dir = PathBuf::from(it.next().ok_or("--dir needs a directory")?);
            }
            "--kind" | "-k" => {
                kind = it
                    .next()
                    .ok_or("--kind needs signing, noise or both")?
                    .parse()?;
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s:?}")),
            s => {
                if name.replace(s.to_string()).is_some() {
                    return Err("give exactly one NAME".into());
                }
            }
        }
    }
    let name = name.ok_or("missing NAME")?;
    Ok(Some(Args {
        dir,
        kind,
        force,
        name,
    }))
}

fn describe(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    if name.ends_with(".ed25519.pub.pem") {
        let k = load_verifying_key(path).ok()?;
        return Some(format!(
            "ed25519 public key {}  key id {}",
            base64(k.as_bytes()),
            key_id_of(&k)
        ));
    }
    if name.ends_with(".noise.pub") {
        let k = load_noise_public(path).ok()?;
        return Some(format!("x25519 public key {}", base64(k.as_bytes())));
    }
    None
}

/// Runs the keygen command line: `args` are the words after the command
/// name, `prog` is how errors name the tool (`sp-keygen`, `spcat keygen`).
/// Returns the exit status: 0 on success, 1 if a key could not be written,
/// 2 on a usage error.
pub fn run(prog: &str, args: impl Iterator<Item = String>) -> u8 {
    let args = match parse(args) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return 0;
        }
        Err(e) => {
            eprintln!("{prog}: {e}\n{USAGE}");
            return 2;
        }
    };
    match keygen(&args.dir, &args.name, args.kind, args.force) {
        Ok(paths) => {
            for p in &paths {
                println!("wrote {}", p.display());
            }
            for p in &paths {
                if let Some(d) = describe(p) {
                    println!("{d}");
                }
            }
            0
        }
        Err(e) => {
            eprintln!("{prog}: {e}");
            1
        }
    }
}
