//! `spcat decode`: one captured frame, decoded by the stack that would have
//! sent it, every layer's header fields.

use spstack::Protocol;

const USAGE: &str =
    "usage: spcat decode --stack <proto>[/raw] (--hex <hex> | --file <path>) [--transport tcp|ipc]
  <proto>: pair0 pair1 push0 pull0 req0 rep0 pub0 sub0 surveyor0 respondent0 bus0
  the frame includes the transport's framing (tcp: 8-byte length; ipc: type byte and length)";

fn usage(msg: &str) -> i32 {
    eprintln!("spcat decode: {msg}\n{USAGE}");
    1
}

fn protocol(name: &str) -> Option<Protocol> {
    Protocol::from_name(name)
}

/// Hex digits, with any spacing, `:`/`-` separators, `0x` prefixes, or
/// nngcat's own `--hex` output (`"\x01\x02"`).
pub fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let cleaned = s
        .replace("\\x", "")
        .replace("0x", "")
        .replace("0X", "")
        .chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, ':' | '-' | '"' | ','))
        .collect::<String>();
    if cleaned.len() % 2 != 0 {
        return Err("odd number of hex digits".into());
    }
    (0..cleaned.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&cleaned[i..i + 2], 16)
                .map_err(|_| format!("not hex: {:?}", &cleaned[i..i + 2]))
        })
        .collect()
}

/// Runs `spcat decode` with the words after `decode`; returns the exit code.
pub fn run(words: &[Vec<u8>]) -> i32 {
    let mut stack = None;
    let mut frame = None;
    let mut transport = "tcp".to_string();
    let mut raw = false;
    let mut it = words
        .iter()
        .map(|w| String::from_utf8_lossy(w).into_owned());
    while let Some(w) = it.next() {
        let (flag, inline) = match w.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (w.clone(), None),
        };
        let mut value = |name: &str| inline.clone().or_else(|| it.next()).ok_or(name.to_string());
        match flag.as_str() {
            "--stack" | "-s" => match value("--stack") {
                Ok(v) => stack = Some(v),
                Err(f) => return usage(&format!("{f} requires an argument")),
            },
            "--hex" => match value("--hex").map(|v| parse_hex(&v)) {
                Ok(Ok(b)) => frame = Some(b),
                Ok(Err(e)) => return usage(&format!("--hex: {e}")),
                Err(f) => return usage(&format!("{f} requires an argument")),
            },
            "--file" | "-F" => match value("--file") {
                Ok(p) => match std::fs::read(&p) {
                    Ok(b) => frame = Some(b),
                    Err(e) => {
                        eprintln!("spcat decode: cannot read {p}: {e}");
                        return 1;
                    }
                },
                Err(f) => return usage(&format!("{f} requires an argument")),
            },
            "--transport" | "-t" => match value("--transport") {
                Ok(t) => transport = t,
                Err(f) => return usage(&format!("{f} requires an argument")),
            },
            "--raw" => raw = true,
            "--help" | "-h" => {
                println!("{USAGE}");
                return 0;
            }
            other => return usage(&format!("unknown argument {other:?}")),
        }
    }
    let Some(stack) = stack else {
        return usage("--stack is required");
    };
    let Some(frame) = frame else {
        return usage("one of --hex or --file is required");
    };
    let (name, is_raw) = match stack
        .strip_suffix("/raw")
        .or_else(|| stack.strip_suffix("-raw"))
    {
        Some(n) => (n, true),
        None => (stack.as_str(), raw),
    };
    let Some(p) = protocol(name) else {
        return usage(&format!("unknown stack {stack:?}"));
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("spcat decode: {e}");
            return 1;
        }
    };
    rt.block_on(async move {
        let b = if is_raw {
            spstack::raw(p)
        } else {
            spstack::cooked(p)
        };
        let sock = b.build();
        match sock.describe(&transport, &frame) {
            Ok(d) => {
                print!("{d}");
                if d.error.is_some() {
                    1
                } else {
                    0
                }
            }
            Err(e) => {
                eprintln!("spcat decode: {e}");
                1
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::parse_hex;

    #[test]
    fn hex_forms() {
        assert_eq!(parse_hex("0a0B").unwrap(), vec![10, 11]);
        assert_eq!(parse_hex("0a 0b:0c").unwrap(), vec![10, 11, 12]);
        assert_eq!(parse_hex("\"\\x01\\xff\"").unwrap(), vec![1, 255]);
        assert!(parse_hex("abc").is_err());
        assert!(parse_hex("zz").is_err());
    }
}
