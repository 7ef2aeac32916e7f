//! A small byte area stored in the message itself, for frame headers and
//! trailers (and a header whose body has no headroom) that must not force a
//! copy of the body.

#[derive(Clone, Copy)]
pub(super) struct Inline<const N: usize> {
    len: u8,
    bytes: [u8; N],
}

impl<const N: usize> Inline<N> {
    pub(super) const EMPTY: Inline<N> = Inline {
        len: 0,
        bytes: [0; N],
    };

    pub(super) fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    pub(super) fn len(&self) -> usize {
        self.len as usize
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Replaces the contents (`data` fits: the caller checked).
    pub(super) fn set(&mut self, data: &[u8]) {
        let n = data.len().min(N);
        self.bytes[..n].copy_from_slice(&data[..n]);
        self.len = n as u8;
    }

    /// Inserts `data` at offset `at`; false (and unchanged) when it does not fit.
    pub(super) fn try_prepend_at(&mut self, at: usize, data: &[u8]) -> bool {
        let len = self.len as usize;
        if len + data.len() > N || at > len {
            return false;
        }
        self.bytes.copy_within(at..len, at + data.len());
        self.bytes[at..at + data.len()].copy_from_slice(data);
        self.len = (len + data.len()) as u8;
        true
    }

    pub(super) fn try_append(&mut self, data: &[u8]) -> bool {
        let len = self.len as usize;
        self.try_prepend_at(len, data)
    }

    pub(super) fn truncate(&mut self, n: usize) {
        self.len = self.len.min(n as u8);
    }

    /// Removes `n` bytes at offset `at`.
    pub(super) fn remove(&mut self, at: usize, n: usize) {
        let len = self.len as usize;
        if at + n > len {
            return;
        }
        self.bytes.copy_within(at + n..len, at);
        self.len = (len - n) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::Inline;

    #[test]
    fn insert_remove_and_bounds() {
        let mut a = Inline::<8>::EMPTY;
        assert!(a.try_append(b"cd"));
        assert!(a.try_prepend_at(0, b"ab"));
        assert!(a.try_prepend_at(2, b"XY"));
        assert_eq!(a.as_slice(), b"abXYcd");
        assert!(!a.try_append(b"123"), "never past the capacity");
        assert_eq!(a.as_slice(), b"abXYcd");
        a.remove(2, 2);
        assert_eq!(a.as_slice(), b"abcd");
        a.truncate(1);
        assert_eq!(a.as_slice(), b"a");
    }
}
