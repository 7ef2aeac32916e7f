//! spcat's command line (`crates/spcat/src/args.rs`, nngcat's option
//! grammar), `spcat decode` (a stack and a captured frame) and its
//! `--declare` formats.

use sp_core::layer::{ByteOrder, FieldKind};
use spcat::args::{intarg, secs, Format, Parser};
use spcat::decode::{decode, parse_declare};

use crate::input::Input;

/// The input's words: separated by NUL bytes, as argv is.
fn words(data: &[u8]) -> Vec<Vec<u8>> {
    data.split(|&b| b == 0)
        .take(64)
        .map(<[u8]>::to_vec)
        .collect()
}

/// Fuzz target `spcat_args`: the input as spcat's argv, parsed option by
/// option as main does, each argument through the parsers main applies to
/// it, and each word printed in every output format.
pub fn spcat_args(data: &[u8]) {
    let words = words(data);
    let mut p = Parser::new(&words);
    // each option consumes at least one word
    let mut ended = false;
    for _ in 0..=words.len() {
        match p.next_opt() {
            Ok(Some((_, Some(arg)))) => {
                if let Ok(v) = intarg(arg, 0x7fff_ffff) {
                    assert!(v <= 0x7fff_ffff);
                    assert!(arg.iter().all(u8::is_ascii_digit));
                }
                if let Ok(d) = secs(arg) {
                    assert!(d.as_secs() <= 86400);
                }
            }
            Ok(Some((_, None))) => {}
            Ok(None) | Err(_) => {
                ended = true;
                break;
            }
        }
    }
    assert!(ended, "more options than words in {words:?}");
    let mut out = Vec::new();
    for w in words.iter().take(4) {
        for f in [
            None,
            Some(Format::Blank),
            Some(Format::Raw),
            Some(Format::Ascii),
            Some(Format::Quoted),
            Some(Format::Msgpack),
            Some(Format::Hex),
        ] {
            out.clear();
            spcat::format::render(f, w, &mut out);
        }
    }
}

/// Fuzz target `spcat_decode`: `spcat decode` with the input's words (up to
/// a double NUL) and, for `--file`, the bytes after it as the file.
pub fn spcat_decode(data: &[u8]) {
    let mut inp = Input::new(data);
    let head_len = data
        .windows(2)
        .position(|w| w == [0, 0])
        .unwrap_or(data.len());
    let head = inp.take(head_len);
    let _ = inp.take(2);
    let file = inp.rest().to_vec();
    let words = words(head);
    let out = decode(&words, &|_| Ok(file.clone()));
    assert!(out.code == 0 || out.code == 1, "exit code {}", out.code);
    if out.code == 0 {
        assert!(out.stderr.is_empty());
    } else {
        assert!(!out.stderr.is_empty() || out.stdout.contains("error:"));
    }
}

/// A field of a declared format as the `--declare` grammar describes it.
#[derive(Debug, PartialEq, Eq)]
struct ModelField {
    name: String,
    kind: FieldKind,
}

/// `NAME=FIELDS[|TRAILER]` read from the docs of `--declare`: the name
/// trimmed, not empty and without a comma; fields separated by commas,
/// trimmed, empty ones skipped; `opaque`, or `name:type` with a name of
/// ASCII letters, digits and `_`, a type among `u8 u16 u24 u32 u64`, their
/// `le` forms (not `u8le`), `bytesN` (N > 0) and, in the header only,
/// `backtrace`. Returns (name, header, trailer, opaque).
#[allow(clippy::type_complexity)]
fn model_declare(spec: &str) -> Option<(String, Vec<ModelField>, Vec<ModelField>, bool)> {
    let (name, body) = spec.split_once('=')?;
    let name = name.trim();
    if name.is_empty() || name.contains(',') {
        return None;
    }
    let (head, tail) = body.split_once('|').unwrap_or((body, ""));
    let mut opaque = false;
    let mut fields = |part: &str, trailer: bool| -> Option<Vec<ModelField>> {
        let mut out = Vec::new();
        for tok in part.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if tok == "opaque" {
                opaque = true;
                continue;
            }
            let (fname, ty) = tok.split_once(':')?;
            if fname.is_empty()
                || !fname
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'_')
            {
                return None;
            }
            let uint = |width, order| FieldKind::Uint { width, order };
            let (width, le) = match ty.strip_suffix("le") {
                Some(w) if w != "u8" => (w, true),
                _ => (ty, false),
            };
            let order = if le {
                ByteOrder::Little
            } else {
                ByteOrder::Big
            };
            let kind = match width {
                "u8" => uint(1, order),
                "u16" => uint(2, order),
                "u24" => uint(3, order),
                "u32" => uint(4, order),
                "u64" => uint(8, order),
                "backtrace" if !trailer && !le => FieldKind::Backtrace,
                t if !le => match t.strip_prefix("bytes")?.parse::<usize>() {
                    Ok(n) if n > 0 => FieldKind::Bytes(n),
                    _ => return None,
                },
                _ => return None,
            };
            out.push(ModelField {
                name: fname.to_string(),
                kind,
            });
        }
        Some(out)
    };
    let header = fields(head, false)?;
    let trailer = fields(tail, true)?;
    // a header or trailer wider than a usize is refused
    sum(&header)?;
    sum(&trailer)?;
    Some((name.to_string(), header, trailer, opaque))
}

fn width(k: &FieldKind) -> usize {
    match *k {
        FieldKind::Uint { width, .. } => width,
        FieldKind::Bytes(n) => n,
        FieldKind::Backtrace => 4,
    }
}

/// The bytes `fields` take, if a usize can say it.
fn sum(fields: &[ModelField]) -> Option<usize> {
    fields
        .iter()
        .try_fold(0usize, |a, f| a.checked_add(width(&f.kind)))
}

/// Fuzz target `spcat_declare`: a `--declare` format (a third-party layer's
/// header and trailer fields) read by `parse_declare` against the grammar,
/// then used by `spcat decode` on a captured frame from the input, the
/// declared layer placed as a pipe layer, a message layer, or both.
pub fn spcat_declare(data: &[u8]) {
    let mut inp = Input::new(data);
    let spec = String::from_utf8_lossy(inp.chunk()).into_owned();
    let place = inp.u8();
    let frame = inp.rest();
    let got = parse_declare(&spec);
    let want = model_declare(&spec);
    let info = match (got, want) {
        (Ok(info), Some((name, header, trailer, opaque))) => {
            assert_eq!(info.name, name);
            let fields = |f: &[sp_core::layer::Field]| -> Vec<ModelField> {
                f.iter()
                    .map(|f| ModelField {
                        name: f.name.to_string(),
                        kind: f.kind,
                    })
                    .collect()
            };
            assert_eq!(fields(&info.header), header, "header of {spec:?}");
            assert_eq!(fields(&info.trailer), trailer, "trailer of {spec:?}");
            assert_eq!(info.opaque, opaque);
            assert_eq!(
                (Some(info.overhead.header), Some(info.overhead.trailer)),
                (sum(&header), sum(&trailer)),
                "the overhead is what the fields take"
            );
            info
        }
        (Err(e), None) => {
            assert!(
                e.starts_with("--declare "),
                "a reason naming the option: {e}"
            );
            return;
        }
        (got, want) => panic!("{spec:?}: parse_declare {got:?}, the grammar {want:?}"),
    };
    let stack = match place % 3 {
        0 => format!("{},req0", info.name),
        1 => format!("rep0,{}", info.name),
        _ => format!("{},pair1,{}", info.name, info.name),
    };
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    let words: Vec<Vec<u8>> = [
        "--declare",
        spec.as_str(),
        "--stack",
        stack.as_str(),
        "--hex",
        hex.as_str(),
    ]
    .iter()
    .map(|w| w.as_bytes().to_vec())
    .collect();
    let out = decode(&words, &|_| Ok(Vec::new()));
    assert!(out.code == 0 || out.code == 1, "exit code {}", out.code);
}
