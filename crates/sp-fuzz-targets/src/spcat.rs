//! spcat's command line (`crates/spcat/src/args.rs`, nngcat's option
//! grammar) and `spcat decode` (a stack and a captured frame).

use spcat::args::{intarg, secs, Format, Parser};
use spcat::decode::decode;

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
