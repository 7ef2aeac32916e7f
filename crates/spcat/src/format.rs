//! The output formats, byte for byte as nngcat's `printmsg`.

use crate::args::Format;

/// C's `isprint` in the C locale.
fn printable(b: u8) -> bool {
    (0x20..0x7f).contains(&b)
}

/// Appends `msg` as `fmt` prints it. `None` (no format chosen) prints
/// nothing, as nngcat does.
pub fn render(fmt: Option<Format>, msg: &[u8], out: &mut Vec<u8>) {
    match fmt {
        None | Some(Format::Blank) => {}
        Some(Format::Raw) => out.extend_from_slice(msg),
        Some(Format::Ascii) => out.extend(msg.iter().map(|&b| if printable(b) { b } else { b'.' })),
        Some(Format::Quoted) => {
            out.push(b'"');
            for &b in msg {
                match b {
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
                    b if printable(b) => out.push(b),
                    b => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
                }
            }
            out.extend_from_slice(b"\"\n");
        }
        Some(Format::Msgpack) => {
            let len = msg.len();
            if len < 256 {
                out.extend_from_slice(&[0xc4, len as u8]);
            } else if len < 65536 {
                out.push(0xc5);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            } else {
                out.push(0xc6);
                out.extend_from_slice(&(len as u32).to_be_bytes());
            }
            out.extend_from_slice(msg);
        }
        Some(Format::Hex) => {
            out.push(b'"');
            for &b in msg {
                out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
            }
            out.extend_from_slice(b"\"\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(f: Format, m: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        render(Some(f), m, &mut v);
        v
    }

    #[test]
    fn formats() {
        assert_eq!(r(Format::Ascii, b"a\x01\xffb"), b"a..b");
        assert_eq!(
            r(Format::Quoted, b"a\"\\\n\x01"),
            b"\"a\\\"\\\\\\n\\x01\"\n"
        );
        assert_eq!(r(Format::Hex, b"\x00A"), b"\"\\x00\\x41\"\n");
        assert_eq!(r(Format::Msgpack, b"ab"), b"\xc4\x02ab");
        assert_eq!(&r(Format::Msgpack, &[0; 300])[..3], b"\xc5\x01\x2c");
        assert_eq!(
            &r(Format::Msgpack, &[0; 70000])[..5],
            b"\xc6\x00\x01\x11\x70"
        );
    }
}
