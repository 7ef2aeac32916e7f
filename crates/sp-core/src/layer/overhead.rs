//! Declared overhead: bytes a component adds, and whether it needs the frame in one slice.

/// Header bytes a component adds in front, trailer bytes behind, and whether
/// it needs header and body in one contiguous buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overhead {
    /// Bytes prepended.
    pub header: usize,
    /// Bytes appended.
    pub trailer: usize,
    /// Needs the whole frame contiguous (an AEAD does; SP framing does not).
    pub contiguous: bool,
}

impl Overhead {
    /// No overhead.
    pub const NONE: Overhead = Overhead {
        header: 0,
        trailer: 0,
        contiguous: false,
    };
    /// A header of `n` bytes.
    pub const fn header(n: usize) -> Overhead {
        Overhead {
            header: n,
            trailer: 0,
            contiguous: false,
        }
    }
    /// A trailer of `n` bytes.
    pub const fn trailer(n: usize) -> Overhead {
        Overhead {
            header: 0,
            trailer: n,
            contiguous: false,
        }
    }
    /// The sum of two components' overheads.
    pub fn plus(self, o: Overhead) -> Overhead {
        Overhead {
            header: self.header + o.header,
            trailer: self.trailer + o.trailer,
            contiguous: self.contiguous || o.contiguous,
        }
    }
}

impl Overhead {
    /// A header of `h` and a trailer of `t` bytes over a frame that must be
    /// one contiguous slice (an AEAD sealing in place).
    pub const fn contiguous(h: usize, t: usize) -> Overhead {
        Overhead {
            header: h,
            trailer: t,
            contiguous: true,
        }
    }
}

/// How frames of one stack of pipe layers are prepared for them, decided
/// once when the socket is built: the room every layer declared, and whether
/// a frame goes to them (and to the kernel) scattered or in one slice.
#[derive(Clone)]
pub struct FramePlan {
    /// Some layer needs the whole frame in one slice.
    pub contiguous: bool,
    layers: Vec<std::sync::Arc<dyn Fn(usize) -> Overhead + Send + Sync>>,
}

impl std::fmt::Debug for FramePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FramePlan")
            .field("contiguous", &self.contiguous)
            .field("layers", &self.layers.len())
            .finish()
    }
}

impl FramePlan {
    /// No pipe layer: frames go out as they are.
    pub fn plain() -> FramePlan {
        FramePlan {
            contiguous: false,
            layers: Vec::new(),
        }
    }

    /// A plan over layers, bottom (nearest the transport) first, each giving
    /// its overhead for a frame of a given length.
    pub fn new(layers: Vec<std::sync::Arc<dyn Fn(usize) -> Overhead + Send + Sync>>) -> FramePlan {
        let contiguous = layers.iter().any(|o| o(0).contiguous);
        FramePlan { contiguous, layers }
    }

    /// Header and trailer bytes all pipe layers add to a frame of
    /// `frame_len` bytes (the top layer sees it first; each one below sees
    /// it grown by those above).
    pub fn room(&self, frame_len: usize) -> (usize, usize) {
        let (mut head, mut tail, mut len) = (0, 0, frame_len);
        for o in self.layers.iter().rev() {
            let o = o(len);
            head += o.header;
            tail += o.trailer;
            len += o.header + o.trailer;
        }
        (head, tail)
    }
}
