//! `spcat dissector --stack <layers>`: a Wireshark dissector (Lua) for SP
//! over TCP with that stack, generated from the header formats its
//! components declare, the same ones `spcat decode` reads: the transport's
//! framing, pipe layers, the protocol, message layers, each field by its
//! declared name (`sp.req_raw.backtrace.id`, `sp.integrity_2.signature`).
//! The walk the Lua code does is `describe_frame`'s, so the two agree on
//! every frame; what lies above a transforming or unknown layer is one
//! opaque payload with its size and owner.

use std::fmt::Write as _;

use spstack::layer::{ByteOrder, ComponentInfo, FieldKind};
use spstack::Protocol;

use crate::decode::{parse_declare, parse_stack, transport_info};

const TEMPLATE: &str = include_str!("dissector.lua");

fn usage_text() -> &'static str {
    "usage: spcat dissector --stack <layers> [--declare <format>]... [--raw]
                       [--port <port>]... [--name <proto>] [--output <file>]
  writes a Wireshark dissector (Lua) for SP over TCP with that stack
  <layers>    as for spcat decode: pipe layers, the protocol, message layers,
              e.g. req0, pub0, noise-xx/2,req0,integrity/2 (spcat decode --help)
  --declare NAME=FIELDS[|TRAILER]   a third-party layer's format, e.g.
              trace/1=seq:u32 (types: u8 u16 u24 u32 u64, ...le, bytesN,
              backtrace; the word opaque for a transforming layer)
  --port N    dissect TCP port N with it (any number of times); without,
              a connection that opens with an SP header is found by its
              header, and Decode As... offers it
  --name P    the protocol's filter name (default sp): fields are P.<component>.<field>
  --output F  write to F instead of standard output
  use: tshark -X lua_script:F -r capture.pcap -V"
}

fn usage(msg: &str) -> i32 {
    eprintln!("spcat dissector: {msg}\n{}", usage_text());
    1
}

/// A Lua string literal.
fn lua_str(s: &str) -> String {
    let mut out = String::from("\"");
    for b in s.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\{b:03}");
            }
        }
    }
    out.push('"');
    out
}

/// A component name as part of a field's filter name: Wireshark takes
/// letters, digits, `-`, `_` and `.` (which separates levels), so
/// `integrity/2` becomes `integrity_2` and `req/raw` `req_raw`.
fn key(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The Lua of one field's `ProtoField`s and its entry in the walk's table.
fn field_lua(
    proto: &str,
    comp: &ComponentInfo,
    f: &spstack::layer::Field,
    decls: &mut Vec<String>,
) -> String {
    let k = format!("{}.{}", key(&comp.name), f.name);
    let abbrev = lua_str(&format!("{proto}.{k}"));
    let label = lua_str(f.name);
    let desc = lua_str(&format!("{} {}", comp.name, f.name));
    let kq = lua_str(&k);
    let (entry, decl) = match f.kind {
        FieldKind::Uint { width, order } => {
            let ctor = match width {
                1 => Some("uint8"),
                2 => Some("uint16"),
                3 => Some("uint24"),
                4 => Some("uint32"),
                8 => Some("uint64"),
                _ => None,
            };
            let le = order == ByteOrder::Little;
            match ctor {
                Some(c) => (
                    format!("{{ name = {label}, key = {kq}, kind = \"uint\", width = {width}, le = {le} }}"),
                    format!("F[{kq}] = ProtoField.{c}({abbrev}, {label}, base.DEC, nil, nil, {desc})"),
                ),
                // a width Wireshark has no integer for: its bytes
                None => (
                    format!("{{ name = {label}, key = {kq}, kind = \"bytes\", width = {width}, le = false }}"),
                    format!("F[{kq}] = ProtoField.bytes({abbrev}, {label}, base.NONE, {desc})"),
                ),
            }
        }
        FieldKind::Bytes(n) => (
            format!("{{ name = {label}, key = {kq}, kind = \"bytes\", width = {n}, le = false }}"),
            format!("F[{kq}] = ProtoField.bytes({abbrev}, {label}, base.NONE, {desc})"),
        ),
        FieldKind::Backtrace => {
            let sub = |s: &str| lua_str(&format!("{k}.{s}"));
            let sub_abbrev = |s: &str| lua_str(&format!("{proto}.{k}.{s}"));
            (
                format!("{{ name = {label}, key = {kq}, kind = \"backtrace\", width = 0, le = false }}"),
                [
                    format!("F[{kq}] = ProtoField.bytes({abbrev}, {label}, base.NONE, {desc})"),
                    format!(
                        "F[{}] = ProtoField.uint32({}, \"hop (pipe id)\", base.HEX, nil, nil, \"a device's pipe id, one per hop\")",
                        sub("hop"),
                        sub_abbrev("hop")
                    ),
                    format!(
                        "F[{}] = ProtoField.uint32({}, \"id\", base.HEX, nil, nil, \"the request or survey id, top bit set\")",
                        sub("id"),
                        sub_abbrev("id")
                    ),
                    format!(
                        "F[{}] = ProtoField.bool({}, \"last word (top bit)\", 32, nil, 0x80000000)",
                        sub("last"),
                        sub_abbrev("last")
                    ),
                ]
                .join("\n"),
            )
        }
    };
    if !decls.contains(&decl) {
        decls.push(decl);
    }
    entry
}

/// The dissector's Lua source for `comps` (outermost first).
pub(crate) fn generate(
    proto: &str,
    stack_text: &str,
    comps: &[ComponentInfo],
    unknown: &std::collections::HashSet<String>,
    ports: &[u16],
) -> String {
    let mut decls = Vec::new();
    let mut entries = Vec::new();
    for c in comps {
        if c.header.is_empty() && c.trailer.is_empty() && !c.opaque {
            // nothing of its own on the wire (a cooked protocol over its raw header)
            continue;
        }
        let header: Vec<String> = c
            .header
            .iter()
            .map(|f| field_lua(proto, c, f, &mut decls))
            .collect();
        let trailer: Vec<String> = c
            .trailer
            .iter()
            // a backtrace is read front to back: describe reads none at the end
            .filter(|f| f.kind != FieldKind::Backtrace)
            .map(|f| field_lua(proto, c, f, &mut decls))
            .collect();
        entries.push(format!(
            "    {{\n        name = {},\n        opaque = {},\n        unknown = {},\n        header = {{ {} }},\n        trailer = {{ {} }},\n    }},",
            lua_str(&c.name),
            c.opaque,
            unknown.contains(&c.name),
            header.join(", "),
            trailer.join(", "),
        ));
    }
    let protocols = Protocol::ALL
        .iter()
        .map(|p| format!("[0x{:02x}] = {}", p.id().0, lua_str(p.id().name())))
        .collect::<Vec<_>>()
        .join(", ");
    let ports = ports
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    TEMPLATE
        .replace("@FIELDS@", &decls.join("\n"))
        .replace("@COMPONENTS@", &entries.join("\n"))
        .replace("@PROTOCOLS@", &format!("{{ {protocols} }}"))
        .replace("@PORTS@", &ports)
        // the stack as given, in comments and a Lua string: no quotes or
        // line breaks in it can end either
        .replace("@STACK@", &stack_text.replace(['"', '\\', '\n', '\r'], "_"))
        .replace("@NAME@", proto)
}

/// Runs `spcat dissector` with the words after `dissector`; returns the exit code.
pub fn run(words: &[Vec<u8>]) -> i32 {
    let mut stack = None;
    let mut declared = Vec::new();
    let mut raw = false;
    let mut ports = Vec::new();
    let mut name = "sp".to_string();
    let mut output = None;
    let mut it = words
        .iter()
        .map(|w| String::from_utf8_lossy(w).into_owned());
    while let Some(w) = it.next() {
        let (flag, inline) = match w.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (w.clone(), None),
        };
        let mut value = |flag: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or(format!("{flag} requires an argument"))
        };
        let r = match flag.as_str() {
            "--stack" | "-s" => value("--stack").map(|v| stack = Some(v)),
            "--declare" | "-d" => {
                value("--declare").and_then(|v| parse_declare(&v).map(|i| declared.push(i)))
            }
            "--raw" => {
                raw = true;
                Ok(())
            }
            "--port" | "-p" => value("--port").and_then(|v| match v.parse::<u16>() {
                Ok(p) if p > 0 => {
                    ports.push(p);
                    Ok(())
                }
                _ => Err(format!("--port {v:?}: a TCP port")),
            }),
            "--name" => value("--name").and_then(|v| {
                let ok = v.starts_with(|c: char| c.is_ascii_lowercase())
                    && v.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if ok {
                    name = v;
                    Ok(())
                } else {
                    Err(format!(
                        "--name {v:?}: lower-case letters, digits and _, from a letter"
                    ))
                }
            }),
            "--output" | "-o" => value("--output").map(|v| output = Some(v)),
            "--help" | "-h" => {
                println!("{}", usage_text());
                return 0;
            }
            other => Err(format!("unknown argument {other:?}")),
        };
        if let Err(e) = r {
            return usage(&e);
        }
    }
    let Some(list) = stack else {
        return usage("--stack is required");
    };
    let stack = match parse_stack(&list, raw, &declared) {
        Ok(s) => s,
        Err(e) => return usage(&e),
    };
    let tcp = match transport_info("tcp") {
        Ok(t) => t,
        Err(e) => return usage(&e),
    };
    let lua = generate(
        &name,
        &list,
        &stack.components(Some(tcp)),
        &stack.unknown,
        &ports,
    );
    match output {
        Some(path) => match std::fs::write(&path, lua) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("spcat dissector: cannot write {path}: {e}");
                1
            }
        },
        None => {
            print!("{lua}");
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_strings_for_lua() {
        assert_eq!(key("integrity/2"), "integrity_2");
        assert_eq!(key("noise-xx/2"), "noise-xx_2");
        assert_eq!(key("Req/Raw"), "req_raw");
        assert_eq!(lua_str("a\"b\\c\nd"), "\"a\\\"b\\\\c\\010d\"");
    }

    #[test]
    fn every_declared_field_is_generated_once() {
        let comps = parse_stack(
            "req0,trace/1,trace/1",
            false,
            &[parse_declare("trace/1=seq:u32").unwrap()],
        )
        .unwrap()
        .components(Some(transport_info("tcp").unwrap()));
        let lua = generate("sp", "req0", &comps, &Default::default(), &[5555]);
        assert_eq!(lua.matches("F[\"trace_1.seq\"] = ").count(), 1, "{lua}");
        assert_eq!(lua.matches("name = \"trace/1\"").count(), 2, "{lua}");
        assert!(lua.contains("F[\"tcp.length\"] = ProtoField.uint64(\"sp.tcp.length\""));
        assert!(lua.contains("F[\"req_raw.backtrace.id\"]"), "{lua}");
        assert!(lua.contains("for _, port in ipairs({ 5555 })"), "{lua}");
        assert!(!lua.contains('@'), "a placeholder left: {lua}");
    }
}
