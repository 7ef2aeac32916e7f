//! `spcat decode`: one captured frame, decoded field by field by the stack
//! that would have sent it: the transport's framing (unless the capture has
//! none), pipe layers, the protocol, message layers. Every field comes from
//! a format a component declares (`ComponentInfo`): spcat takes the known
//! layers' formats from their own crates, and invents none for a layer it
//! does not know. Above a layer that transforms what it carries (Noise,
//! TLS, or a layer spcat does not know) the rest is one opaque payload, with
//! its size and the layer that owns it.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::sync::Mutex;

use sp_crypto::integrity::{Integrity, IntegrityConfig};
use sp_crypto::keys::{SigningKeypair, TrustedSigners};
use sp_crypto::noise::{Noise, NoiseConfig, Pattern, StaticKeypair};
use spstack::describe::{describe_frame, DecodedField, Description};
use spstack::layer::{ByteOrder, ComponentInfo, Field, FieldKind, Handshake, MessageLayer};
use spstack::{Overhead, Protocol};

fn usage_text() -> String {
    let names = |kind| {
        known_layers()
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, i)| i.name.clone())
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "usage: spcat decode --stack <layers> (--hex <hex> | --file <path>)
                    [--transport <scheme> | --no-prefix] [--raw] [--declare <format>]...
  <layers>  the stack from the transport up, comma-separated: pipe layers,
            the protocol, message layers (nearest the protocol first), e.g.
            noise-xx/2,req0,integrity/2
    protocol        {}
                    (req0 for req...); append /raw (or give --raw) for the
                    raw form a device uses
    pipe layers     {}
    message layers  {}
                    (a known name may drop its version: integrity)
    any other name is a layer spcat does not know: what it carries is shown
    as opaque bytes of that layer, never as fields, unless its format is
  --declare NAME=FIELDS[|TRAILER]   a layer's declared format, e.g.
            trace/1=seq:u32  or  stamp/1=magic:u16,seq:u32le|crc:u32
            types: u8 u16 u24 u32 u64 (big-endian; ...le for little),
            bytesN, backtrace; the word opaque for a layer that transforms
            what it carries. Placed where the stack lists its name.
  --transport tcp|ipc|ws|inproc   the frame starts with that transport's
            framing (tcp: the 8-byte length; ipc: type byte and length);
            tcp by default. tls+tcp, wss: a capture of TLS records, opaque
  --no-prefix, --wiretap   the frame has no transport framing, as
            spstack::wiretap records it
  Above a layer that transforms what it carries (noise: encrypted) the bytes
  are one opaque payload, with its size and the layer that owns it.",
        Protocol::ALL.map(|p| p.id().name()).join(" "),
        names(Kind::Pipe),
        names(Kind::Message)
    )
}

fn usage(msg: &str) -> Outcome {
    Outcome {
        code: 1,
        stdout: String::new(),
        stderr: format!("spcat decode: {msg}\n{}\n", usage_text()),
    }
}

/// What `spcat decode` prints and exits with.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The exit code.
    pub code: i32,
    /// What goes to standard output.
    pub stdout: String,
    /// What goes to standard error.
    pub stderr: String,
}

/// Where a layer sits: below the protocol, per pipe, or above it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Pipe,
    Message,
}

/// The layers of spstack's crates, with the formats those crates declare.
/// The keys are throwaway: only `info()` is read, nothing is sealed or
/// signed with them. Made once: each costs a key generation.
fn known_layers() -> &'static [(Kind, ComponentInfo)] {
    static KNOWN: std::sync::OnceLock<Vec<(Kind, ComponentInfo)>> = std::sync::OnceLock::new();
    KNOWN.get_or_init(|| {
        let noise = |p| Noise::new(NoiseConfig::new(StaticKeypair::generate()).pattern(p)).info();
        let mut known = vec![
            (Kind::Pipe, noise(Pattern::XX)),
            (Kind::Pipe, noise(Pattern::IK)),
        ];
        // any audience will do: the format does not depend on it
        if let Ok(cfg) = IntegrityConfig::new(
            SigningKeypair::generate(),
            TrustedSigners::new(),
            "spcat-decode",
        ) {
            known.push((Kind::Message, Integrity::new(cfg).info()));
        }
        known.push((Kind::Message, sp_ws::Opcodes::new().info()));
        known
    })
}

/// A known layer by its name, or by its name without the version when
/// that names one layer only (`integrity` for `integrity/2`).
fn known_layer(name: &str, known: &[(Kind, ComponentInfo)]) -> Option<(Kind, ComponentInfo)> {
    if let Some(k) = known.iter().find(|(_, i)| i.name == name) {
        return Some(k.clone());
    }
    let mut by_base = known
        .iter()
        .filter(|(_, i)| i.name.split('/').next() == Some(name));
    match (by_base.next(), by_base.next()) {
        (Some(k), None) => Some(k.clone()),
        _ => None,
    }
}

/// The protocol a stack entry names: `req0`, `req`, `rep0/raw`.
fn protocol(name: &str) -> Option<(Protocol, bool)> {
    if let Some(p) = Protocol::from_name(name) {
        return Some((p, false));
    }
    let base = name
        .strip_suffix("/raw")
        .or_else(|| name.strip_suffix("-raw"))?;
    Protocol::from_name(base).map(|p| (p, true))
}

/// A stack given on the command line.
#[derive(Debug)]
pub(crate) struct Stack {
    pub(crate) pipe: Vec<ComponentInfo>,
    pub(crate) protocol: Protocol,
    pub(crate) raw: bool,
    pub(crate) message: Vec<ComponentInfo>,
    /// Names of the layers spcat does not know.
    pub(crate) unknown: HashSet<String>,
}

impl Stack {
    /// Every component of the stack under `transport`, outermost first:
    /// the transport's framing (if any), pipe layers, the protocol's
    /// components as its socket declares them, message layers.
    pub(crate) fn components(&self, transport: Option<ComponentInfo>) -> Vec<ComponentInfo> {
        let protocol = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|rt| {
                rt.block_on(async {
                    let b = if self.raw {
                        spstack::raw(self.protocol)
                    } else {
                        spstack::cooked(self.protocol)
                    };
                    b.build().components()
                })
            })
            .unwrap_or_default();
        transport
            .into_iter()
            .chain(self.pipe.iter().cloned())
            .chain(protocol)
            .chain(self.message.iter().cloned())
            .collect()
    }
}

/// `Field::name` is a `&'static str` (formats are normally constants of a
/// layer's crate), so a declared name is leaked: once per distinct name,
/// and kept reachable in this set, so that parsing a format again (the
/// fuzz target does it millions of times) allocates nothing new and the
/// leak checker sees no lost memory.
fn intern(name: &str) -> &'static str {
    static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = names.get(name) {
        return n;
    }
    let n: &'static str = Box::leak(name.into());
    names.insert(n);
    n
}

/// A layer format given with `--declare NAME=FIELDS[|TRAILER]`: fields
/// `name:type` (`u8` `u16` `u24` `u32` `u64`, big-endian as SP is, or with an
/// `le` suffix; `bytesN`; `backtrace`), and the word `opaque` for a layer
/// that transforms what it carries. A third-party layer's crate knows its
/// format (`info()`); this lets spcat show its fields without that crate.
#[doc(hidden)]
pub fn parse_declare(spec: &str) -> Result<ComponentInfo, String> {
    let (name, body) = spec
        .split_once('=')
        .ok_or_else(|| format!("--declare {spec:?}: expected NAME=FIELDS, e.g. trace/1=seq:u32"))?;
    let name = name.trim();
    if name.is_empty() || name.contains(',') {
        return Err(format!("--declare {spec:?}: no layer name"));
    }
    let (head, tail) = body.split_once('|').unwrap_or((body, ""));
    let mut info = ComponentInfo::new(name, Overhead::NONE);
    let mut fields = |part: &str, trailer: bool| -> Result<Vec<Field>, String> {
        let mut out = Vec::new();
        for tok in part.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if tok == "opaque" {
                info = info.clone().opaque();
                continue;
            }
            let (fname, ty) = tok
                .split_once(':')
                .ok_or_else(|| format!("--declare {name}: {tok:?} is not name:type"))?;
            if fname.is_empty() || !fname.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "--declare {name}: field name {fname:?} (letters, digits, _)"
                ));
            }
            let fname = intern(fname);
            let uint = |w, order| FieldKind::Uint { width: w, order };
            let kind = match ty {
                "u8" => uint(1, ByteOrder::Big),
                "u16" => uint(2, ByteOrder::Big),
                "u24" => uint(3, ByteOrder::Big),
                "u32" => uint(4, ByteOrder::Big),
                "u64" => uint(8, ByteOrder::Big),
                "u16le" => uint(2, ByteOrder::Little),
                "u24le" => uint(3, ByteOrder::Little),
                "u32le" => uint(4, ByteOrder::Little),
                "u64le" => uint(8, ByteOrder::Little),
                "backtrace" if !trailer => FieldKind::Backtrace,
                t => match t.strip_prefix("bytes").and_then(|n| n.parse::<usize>().ok()) {
                    Some(n) if n > 0 => FieldKind::Bytes(n),
                    _ => {
                        return Err(format!(
                            "--declare {name}: type {t:?} (u8 u16 u24 u32 u64, ...le, bytesN, backtrace in a header)"
                        ))
                    }
                },
            };
            out.push(Field { name: fname, kind });
        }
        Ok(out)
    };
    let header = fields(head, false)?;
    let trailer = fields(tail, true)?;
    let width = |f: &Field| match f.kind {
        FieldKind::Uint { width, .. } => width,
        FieldKind::Bytes(n) => n,
        FieldKind::Backtrace => 4,
    };
    // `bytesN` takes any usize: fields wider in all than a usize are no
    // format at all, not a sum to wrap
    let total = |fields: &[Field], part: &str| {
        fields
            .iter()
            .try_fold(0usize, |sum, f| sum.checked_add(width(f)))
            .ok_or_else(|| {
                format!("--declare {name}: the {part}'s fields are wider than any frame")
            })
    };
    info.overhead = Overhead::header(total(&header, "header")?)
        .plus(Overhead::trailer(total(&trailer, "trailer")?));
    Ok(info.with_header(header).with_trailer(trailer))
}

pub(crate) fn parse_stack(
    list: &str,
    raw: bool,
    declared: &[ComponentInfo],
) -> Result<Stack, String> {
    let known = known_layers();
    let mut pipe = Vec::new();
    let mut message = Vec::new();
    let mut proto = None;
    let mut unknown = HashSet::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if let Some((p, r)) = protocol(name) {
            if proto.is_some() {
                return Err(format!("{name}: a stack has one protocol"));
            }
            proto = Some((p, r || raw));
            continue;
        }
        let below = proto.is_none();
        if let Some(d) = declared.iter().find(|d| d.name == name) {
            // its place in the list says whether it is a pipe or a message layer
            if below {
                pipe.push(d.clone());
            } else {
                message.push(d.clone());
            }
            continue;
        }
        let info = match known_layer(name, known) {
            Some((Kind::Pipe, info)) if !below => {
                return Err(format!(
                    "{} is a pipe layer: list it before the protocol",
                    info.name
                ))
            }
            Some((Kind::Message, info)) if below => {
                return Err(format!(
                    "{} is a message layer: list it after the protocol",
                    info.name
                ))
            }
            Some((_, info)) => info,
            None => {
                // nothing is known of its format: no fields, and whatever
                // it carries may be transformed
                unknown.insert(name.to_string());
                ComponentInfo::new(name, Overhead::NONE).opaque()
            }
        };
        if below {
            pipe.push(info);
        } else {
            message.push(info);
        }
    }
    let Some((protocol, raw)) = proto else {
        return Err(format!("no protocol in the stack {list:?}"));
    };
    Ok(Stack {
        pipe,
        protocol,
        raw,
        message,
        unknown,
    })
}

/// The framing of `scheme`'s transport, as the transport declares it.
pub(crate) fn transport_info(scheme: &str) -> Result<ComponentInfo, String> {
    if matches!(scheme, "tls+tcp" | "tls+tcp4" | "tls+tcp6" | "wss") {
        // on the wire: TLS records, ciphertext
        return Ok(ComponentInfo::new(scheme, Overhead::NONE).opaque());
    }
    let mut transports = sp_transports::defaults();
    transports.push(std::sync::Arc::new(sp_ws::Ws::new(sp_transports::Tcp)));
    let mut schemes = Vec::new();
    for t in &transports {
        if t.schemes().contains(&scheme) {
            return Ok(t.info());
        }
        schemes.extend_from_slice(t.schemes());
    }
    Err(format!(
        "unknown transport {scheme:?} (one of: {}, tls+tcp, wss)",
        schemes.join(", ")
    ))
}

/// The description, one field a line in wire order; the opaque payload
/// says whether its layer transforms it or is one spcat does not know.
fn render(d: &Description, unknown: &HashSet<String>) -> String {
    let mut s = String::new();
    let field = |s: &mut String, f: &DecodedField| {
        let _ = writeln!(
            s,
            "{:>6}  {:<16} {:<20} {}",
            f.offset, f.component, f.field, f.value
        );
    };
    match &d.opaque {
        Some(o) => {
            let (before, after): (Vec<_>, Vec<_>) =
                d.fields.iter().partition(|f| f.offset < o.offset + o.len);
            before.into_iter().for_each(|f| field(&mut s, f));
            let why = if unknown.contains(&o.component) {
                format!(
                    "layer {} unknown to spcat: its format is not declared",
                    o.component
                )
            } else {
                format!("transformed by {}", o.component)
            };
            let _ = writeln!(
                s,
                "{:>6}  {:<16} {:<20} {} bytes, opaque ({why})",
                o.offset, o.component, "payload", o.len
            );
            after.into_iter().for_each(|f| field(&mut s, f));
        }
        None => {
            d.fields.iter().for_each(|f| field(&mut s, f));
            let _ = writeln!(
                s,
                "{:>6}  {:<16} {:<20} {} bytes",
                "",
                "application",
                "body",
                d.body.len()
            );
        }
    }
    if let Some(e) = &d.error {
        let _ = writeln!(s, "error: {e}");
    }
    s
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
    // by characters, not bytes: a pair is never cut inside one
    let digits: Vec<char> = cleaned.chars().collect();
    if digits.len() % 2 != 0 {
        return Err("odd number of hex digits".into());
    }
    digits
        .chunks(2)
        .map(|pair| match (pair[0].to_digit(16), pair[1].to_digit(16)) {
            (Some(hi), Some(lo)) => Ok((hi * 16 + lo) as u8),
            _ => Err(format!("not hex: {:?}", pair.iter().collect::<String>())),
        })
        .collect()
}

/// Runs `spcat decode` with the words after `decode`; returns the exit code.
pub fn run(words: &[Vec<u8>]) -> i32 {
    let out = decode(words, &|path| std::fs::read(path));
    print!("{}", out.stdout);
    eprint!("{}", out.stderr);
    out.code
}

/// `spcat decode` with the words after `decode`, reading `--file` through
/// `read_file`: what [`run`] prints, without printing it (the fuzz target
/// calls this, with files it makes up).
pub fn decode(words: &[Vec<u8>], read_file: &dyn Fn(&str) -> std::io::Result<Vec<u8>>) -> Outcome {
    let mut stack = None;
    let mut frame = None;
    let mut transport = Some("tcp".to_string());
    let mut raw = false;
    let mut declared = Vec::new();
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
                Ok(p) => match read_file(&p) {
                    Ok(b) => frame = Some(b),
                    Err(e) => {
                        return Outcome {
                            code: 1,
                            stdout: String::new(),
                            stderr: format!("spcat decode: cannot read {p}: {e}\n"),
                        }
                    }
                },
                Err(f) => return usage(&format!("{f} requires an argument")),
            },
            "--transport" | "-t" => match value("--transport") {
                Ok(t) => transport = Some(t),
                Err(f) => return usage(&format!("{f} requires an argument")),
            },
            "--declare" | "-d" => match value("--declare").map(|v| parse_declare(&v)) {
                Ok(Ok(info)) => declared.push(info),
                Ok(Err(e)) => return usage(&e),
                Err(f) => return usage(&format!("{f} requires an argument")),
            },
            "--no-prefix" | "--wiretap" => transport = None,
            "--raw" => raw = true,
            "--help" | "-h" => {
                return Outcome {
                    code: 0,
                    stdout: format!("{}\n", usage_text()),
                    stderr: String::new(),
                }
            }
            other => return usage(&format!("unknown argument {other:?}")),
        }
    }
    let Some(list) = stack else {
        return usage("--stack is required");
    };
    let Some(frame) = frame else {
        return usage("one of --hex or --file is required");
    };
    let stack = match parse_stack(&list, raw, &declared) {
        Ok(s) => s,
        Err(e) => return usage(&e),
    };
    let transport = match transport.as_deref().map(transport_info).transpose() {
        Ok(t) => t,
        Err(e) => return usage(&e),
    };
    let d = describe_frame(&stack.components(transport), &frame);
    Outcome {
        code: i32::from(d.error.is_some()),
        stdout: render(&d, &stack.unknown),
        stderr: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_forms() {
        assert_eq!(parse_hex("0a0B").unwrap(), vec![10, 11]);
        assert_eq!(parse_hex("0a 0b:0c").unwrap(), vec![10, 11, 12]);
        assert_eq!(parse_hex("\"\\x01\\xff\"").unwrap(), vec![1, 255]);
        assert!(parse_hex("abc").is_err());
        assert!(parse_hex("zz").is_err());
    }

    /// Found by the `spcat_decode` fuzz target: a non-ASCII character
    /// among the hex digits made `--hex` slice the string inside it and
    /// panic.
    #[test]
    fn fuzz_spcat_decode_non_ascii_hex_is_an_error() {
        for bad in ["0é0", "0\u{20ac}", "000\u{fffd}0", "é"] {
            assert!(parse_hex(bad).is_err(), "{bad:?}");
        }
    }

    /// Found by the `spcat_declare` fuzz target: fields whose widths add
    /// up past `usize` (`bytes18446744073709551615` and one more byte)
    /// overflowed the overhead's sum and panicked.
    #[test]
    fn fuzz_spcat_declare_widths_past_usize_are_an_error() {
        let max = usize::MAX;
        for bad in [
            format!("t/1=a:bytes{max},b:u8"),
            format!("t/1=a:u8|a:bytes{max},b:bytes{max}"),
        ] {
            let e = parse_declare(&bad).expect_err(&bad);
            assert!(e.contains("wider"), "{e}");
        }
        // as wide as can be said is still a format
        let d = parse_declare(&format!("t/1=a:bytes{max}|b:bytes{max}")).unwrap();
        assert_eq!((d.overhead.header, d.overhead.trailer), (max, max));
    }

    /// Found by the `spcat_declare` fuzz target's leak check: every parse
    /// leaked its field names anew (lost memory, growing without bound
    /// when a format is parsed again). A name is now leaked once and stays
    /// reachable.
    #[test]
    fn fuzz_spcat_declare_field_names_leak_once() {
        let a = parse_declare("t/1=seq:u32|crc:u16").unwrap();
        let b = parse_declare("u/2=seq:u8|crc:u32").unwrap();
        assert!(std::ptr::eq(a.header[0].name, b.header[0].name));
        assert!(std::ptr::eq(a.trailer[0].name, b.trailer[0].name));
        assert_eq!((b.header[0].name, b.trailer[0].name), ("seq", "crc"));
    }

    #[test]
    fn declared_formats() {
        let d = parse_declare("stamp/1=magic:u16,seq:u32le,tag:bytes3|crc:u32").unwrap();
        assert_eq!(d.name, "stamp/1");
        assert_eq!(d.header.len(), 3);
        assert_eq!(
            d.header[1].kind,
            FieldKind::Uint {
                width: 4,
                order: ByteOrder::Little
            }
        );
        assert_eq!(d.header[2].kind, FieldKind::Bytes(3));
        assert_eq!(d.trailer[0].name, "crc");
        assert_eq!((d.overhead.header, d.overhead.trailer), (9, 4));
        assert!(!d.opaque);
        assert!(parse_declare("zip/1=opaque").unwrap().opaque);
        for bad in [
            "trace/1",
            "=seq:u32",
            "t/1=seq",
            "t/1=seq:u7",
            "t/1=a-b:u8",
            "t/1=|b:backtrace",
        ] {
            assert!(parse_declare(bad).is_err(), "{bad}");
        }
        // placed by its position: a pipe layer before the protocol, a
        // message layer after
        let s = parse_stack("stamp/1,req0,stamp/1", false, &[d]).unwrap();
        assert_eq!(
            (s.pipe[0].name.as_str(), s.message[0].name.as_str()),
            ("stamp/1", "stamp/1")
        );
        assert!(s.unknown.is_empty());
    }

    #[test]
    fn stacks() {
        let s = parse_stack("noise-xx/2, req0 ,integrity", false, &[]).unwrap();
        assert_eq!(s.pipe[0].name, "noise-xx/2");
        assert!(s.pipe[0].opaque, "noise transforms what it carries");
        assert_eq!((s.protocol, s.raw), (Protocol::Req0, false));
        assert_eq!(s.message[0].name, "integrity/2");
        assert!(s.unknown.is_empty());
        let s = parse_stack("rep0/raw", false, &[]).unwrap();
        assert_eq!((s.protocol, s.raw), (Protocol::Rep0, true));
        let s = parse_stack("xor/1,pull0,zip/3", true, &[]).unwrap();
        assert!(s.raw);
        assert_eq!(s.unknown.len(), 2);
        assert!(s.pipe[0].opaque && s.pipe[0].header.is_empty());
        assert!(s.message[0].opaque && s.message[0].trailer.is_empty());
        for (bad, why) in [
            ("integrity/2,req0", "message layer"),
            ("req0,noise-ik/3", "pipe layer"),
            ("req0,rep0", "one protocol"),
            ("noise-xx/2", "no protocol"),
        ] {
            let e = parse_stack(bad, false, &[]).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
