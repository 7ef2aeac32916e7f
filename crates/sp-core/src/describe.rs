//! Decoding a captured frame field by field, from the formats components declare.
//!
//! ```
//! use sp_core::describe::describe_frame;
//! use sp_core::layer::{ComponentInfo, Field, Overhead};
//! // a component whose 4-byte header is a big-endian `seq`
//! let seq = ComponentInfo::new("seq/1", Overhead::header(4)).with_header(vec![Field::be("seq", 4)]);
//! let d = describe_frame(&[seq], &[0, 0, 0, 7, b'h', b'i']);
//! assert_eq!(d.field("seq").unwrap().bytes, [0, 0, 0, 7]);
//! ```

use std::fmt;

use crate::layer::{ByteOrder, ComponentInfo, FieldKind};

/// One decoded field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedField {
    /// The component that owns it (`tcp`, `req/raw`, a layer name...).
    pub component: String,
    /// The field's name.
    pub field: String,
    /// Offset in the frame.
    pub offset: usize,
    /// The raw bytes.
    pub bytes: Vec<u8>,
    /// A readable value.
    pub value: String,
}

/// A decoded frame.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Description {
    /// Header and trailer fields in wire order.
    pub fields: Vec<DecodedField>,
    /// The application body.
    pub body: Vec<u8>,
    /// What could not be decoded, if anything.
    pub error: Option<String>,
    /// Bytes a transforming component (an AEAD, TLS, compression) carries,
    /// which a capture cannot decode: the body is then empty.
    pub opaque: Option<Opaque>,
}

/// Bytes a component transformed: its name, where they lie, how many.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opaque {
    /// The component that owns them (`noise/2`, `tls+tcp`, a layer's name).
    pub component: String,
    /// Offset in the frame.
    pub offset: usize,
    /// Length in bytes.
    pub len: usize,
}

impl Description {
    /// The first field with this name.
    pub fn field(&self, name: &str) -> Option<&DecodedField> {
        self.fields.iter().find(|f| f.field == name)
    }
}

impl fmt::Display for Description {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.fields {
            writeln!(
                f,
                "{:>6}  {:<16} {:<20} {}",
                d.offset, d.component, d.field, d.value
            )?;
        }
        match &self.opaque {
            Some(o) => writeln!(
                f,
                "{:>6}  {:<16} {:<20} {} bytes, opaque (transformed by {})",
                o.offset, o.component, "payload", o.len, o.component
            )?,
            None => writeln!(
                f,
                "{:>6}  {:<16} {:<20} {} bytes",
                "",
                "application",
                "body",
                self.body.len()
            )?,
        }
        if let Some(e) = &self.error {
            writeln!(f, "error: {e}")?;
        }
        Ok(())
    }
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn uint(b: &[u8], order: ByteOrder) -> u64 {
    let it: Box<dyn Iterator<Item = &u8>> = match order {
        ByteOrder::Big => Box::new(b.iter()),
        ByteOrder::Little => Box::new(b.iter().rev()),
    };
    it.fold(0u64, |acc, &x| (acc << 8) | x as u64)
}

/// Decodes `frame` through `comps`, outermost (transport) first. Headers are
/// read front to back in that order; trailers back to front in that order.
pub fn describe_frame(comps: &[ComponentInfo], frame: &[u8]) -> Description {
    let mut d = Description::default();
    let mut lo = 0usize;
    let mut hi = frame.len();
    let mut tail_fields = Vec::new();
    'outer: for c in comps {
        for fld in &c.header {
            let (width, value) = match fld.kind {
                FieldKind::Uint { width, order } => {
                    if hi - lo < width {
                        d.error = Some(format!("{}: {} truncated", c.name, fld.name));
                        break 'outer;
                    }
                    let v = uint(&frame[lo..lo + width], order);
                    (width, format!("{v} (0x{v:x})"))
                }
                FieldKind::Bytes(n) => {
                    if hi - lo < n {
                        d.error = Some(format!("{}: {} truncated", c.name, fld.name));
                        break 'outer;
                    }
                    (n, hex(&frame[lo..lo + n]))
                }
                FieldKind::Backtrace => {
                    let mut n = 0;
                    let mut words = Vec::new();
                    loop {
                        if hi - lo < n + 4 {
                            d.error =
                                Some(format!("{}: {} has no terminating word", c.name, fld.name));
                            break 'outer;
                        }
                        let w = u32::from_be_bytes([
                            frame[lo + n],
                            frame[lo + n + 1],
                            frame[lo + n + 2],
                            frame[lo + n + 3],
                        ]);
                        n += 4;
                        if w & 0x8000_0000 != 0 {
                            words.push(format!("id 0x{:08x}", w));
                            break;
                        }
                        words.push(format!("pipe 0x{:08x}", w));
                    }
                    (n, words.join(", "))
                }
            };
            d.fields.push(DecodedField {
                component: c.name.clone(),
                field: fld.name.to_string(),
                offset: lo,
                bytes: frame[lo..lo + width].to_vec(),
                value,
            });
            lo += width;
        }
        for fld in c.trailer.iter().rev() {
            let width = match fld.kind {
                FieldKind::Uint { width, .. } => width,
                FieldKind::Bytes(n) => n,
                FieldKind::Backtrace => 0,
            };
            if hi - lo < width {
                d.error = Some(format!("{}: trailer {} truncated", c.name, fld.name));
                break 'outer;
            }
            let b = &frame[hi - width..hi];
            let value = match fld.kind {
                FieldKind::Uint { order, .. } => {
                    let v = uint(b, order);
                    format!("{v} (0x{v:x})")
                }
                _ => hex(b),
            };
            tail_fields.push(DecodedField {
                component: c.name.clone(),
                field: fld.name.to_string(),
                offset: hi - width,
                bytes: b.to_vec(),
                value,
            });
            hi -= width;
        }
        if c.opaque {
            // what this component carries is not what the components above
            // would see: never decode it as their fields
            d.opaque = Some(Opaque {
                component: c.name.clone(),
                offset: lo,
                len: hi.saturating_sub(lo),
            });
            tail_fields.reverse();
            d.fields.extend(tail_fields);
            return d;
        }
    }
    d.body = frame[lo..hi.max(lo)].to_vec();
    tail_fields.reverse();
    d.fields.extend(tail_fields);
    d
}
