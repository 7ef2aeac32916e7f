//! Header formats components declare, for `describe` and dissectors.

use super::Overhead;

/// Byte order of a header field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteOrder {
    /// Big-endian (network order, what SP uses).
    Big,
    /// Little-endian.
    Little,
}

/// The shape of one header field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// An unsigned integer of `width` bytes (1, 2, 4 or 8).
    Uint {
        /// Bytes.
        width: usize,
        /// Byte order.
        order: ByteOrder,
    },
    /// Opaque bytes of a fixed length.
    Bytes(usize),
    /// u32 BE words up to and including the first with the top bit set
    /// (the REQ/REP and SURVEY backtrace).
    Backtrace,
}

/// One named field of a header or trailer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Field name, e.g. `request_id`.
    pub name: &'static str,
    /// Width and encoding.
    pub kind: FieldKind,
}

impl Field {
    /// A big-endian unsigned field of `width` bytes.
    pub const fn be(name: &'static str, width: usize) -> Field {
        Field {
            name,
            kind: FieldKind::Uint {
                width,
                order: ByteOrder::Big,
            },
        }
    }
    /// An opaque field of `n` bytes.
    pub const fn bytes(name: &'static str, n: usize) -> Field {
        Field {
            name,
            kind: FieldKind::Bytes(n),
        }
    }
}

/// What a component is: its name (as announced to peers), overhead and the
/// format of what it adds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentInfo {
    /// `name/version`, announced to the peer and checked there.
    pub name: String,
    /// Declared overhead.
    pub overhead: Overhead,
    /// Fields it prepends, in wire order.
    pub header: Vec<Field>,
    /// Fields it appends, in wire order.
    pub trailer: Vec<Field>,
    /// It transforms the bytes it carries (encrypts, compresses): what lies
    /// inside its header and trailer cannot be decoded from a capture.
    pub opaque: bool,
    /// It copies every byte it carries, each way (a TLS session's records,
    /// a WebSocket library's buffers); counted in `Stats::bytes_copied`.
    pub copies: bool,
}

impl ComponentInfo {
    /// Info with no declared fields; add them with `with_header`/`with_trailer`.
    pub fn new(name: impl Into<String>, overhead: Overhead) -> ComponentInfo {
        ComponentInfo {
            name: name.into(),
            overhead,
            header: Vec::new(),
            trailer: Vec::new(),
            opaque: false,
            copies: false,
        }
    }
    /// Declares that the component copies what it carries (see `copies`).
    pub fn copying(mut self) -> Self {
        self.copies = true;
        self
    }
    /// Declares that the component transforms what it carries (see `opaque`).
    pub fn opaque(mut self) -> Self {
        self.opaque = true;
        self
    }
    /// Declares the header fields.
    pub fn with_header(mut self, f: Vec<Field>) -> Self {
        self.header = f;
        self
    }
    /// Declares the trailer fields.
    pub fn with_trailer(mut self, f: Vec<Field>) -> Self {
        self.trailer = f;
        self
    }
}
