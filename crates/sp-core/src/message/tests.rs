//! Unit tests of the message layout.

use super::*;
use crate::stats::Counters;

/// Bytes copied on this thread while `f` runs (other tests run beside).
fn copies<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let (c, p) = (Counters::default(), Counters::default());
    let r = {
        let _s = CopyScope::enter(&c, &p, Direction::Send);
        f()
    };
    (r, c.snapshot().bytes_copied)
}

#[test]
fn header_push_pop_at_every_boundary() {
    for headroom in 0..10 {
        for body in 0..6usize {
            let data: Vec<u8> = (0..body as u8).collect();
            let mut m = Message::with_headroom(headroom, &data);
            m.push_header_u32(0x8000_0001);
            m.push_header_u32(7);
            assert_eq!(m.header().len(), 8);
            assert_eq!(m.body(), &data[..]);
            assert_eq!(m.pop_header_u32(), Some(7));
            assert_eq!(m.pop_header_u32(), Some(0x8000_0001));
            assert_eq!(m.pop_header_u32(), None);
            assert_eq!(m.body(), &data[..]);
        }
    }
}

#[test]
fn write_to_shared_copies_and_leaves_clone_intact() {
    let mut a = Message::with_headroom(8, b"abc");
    let b = a.clone();
    a.push_header(&[1, 2]);
    a.body_mut()[0] = b'X';
    assert_eq!(b.header(), b"");
    assert_eq!(b.body(), b"abc");
    assert_eq!(a.wire(), &[1, 2, b'X', b'b', b'c']);
}

#[test]
fn frame_header_on_shared_message_stays_inline() {
    let mut a = Message::with_headroom(8, b"body");
    let keep = a.clone();
    a.push_frame_header(&[9, 9]);
    a.push_frame_trailer(&[7]);
    assert_eq!(a.to_vec(), vec![9, 9, b'b', b'o', b'd', b'y', 7]);
    assert_eq!(keep.wire(), b"body");
    let copied = a.flatten_frame();
    assert_eq!(copied, 7, "the frame, once");
    assert_eq!(a.wire(), &[9, 9, b'b', b'o', b'd', b'y', 7]);
}

#[test]
fn prepend_body_keeps_header_in_front() {
    let mut m = Message::with_headroom(8, b"xy");
    m.prepend_body(b"ab");
    assert_eq!(m.body(), b"abxy");
    m.push_header(&[1]);
    m.prepend_body(b"0");
    assert_eq!(m.header(), &[1]);
    assert_eq!(m.body(), b"0abxy");
    assert!(m.trim_body_front(1));
    assert_eq!(m.header(), &[1]);
    assert_eq!(m.body(), b"abxy");
}

#[test]
fn recv_buf_fills_in_pieces_and_zeroes_what_was_not_written() {
    let mut rb = RecvBuf::new(4, 6);
    assert_eq!(rb.extend_from(b"abc"), 3);
    rb.unfilled()[0].write(b'd');
    rb.advance(1);
    assert_eq!(rb.remaining(), 2);
    assert_eq!(rb.extend_from(b"efgh"), 2, "never past the frame");
    let mut m = rb.into_message();
    assert_eq!(m.body(), b"abcdef");
    m.push_header_u32(9);
    assert_eq!(m.header(), &[0, 0, 0, 9]);
    let short = RecvBuf::new(0, 3);
    assert_eq!(short.into_message().body(), &[0, 0, 0]);
}

#[test]
fn body_to_header_moves_no_bytes() {
    let mut m = Message::with_headroom(0, &[0x80, 0, 0, 5, b'h', b'i']);
    assert!(m.body_to_header(4));
    assert_eq!(m.pop_header_u32(), Some(0x8000_0005));
    assert_eq!(m.body(), b"hi");
    assert!(!m.body_to_header(3));
}

#[test]
fn taken_over_vec_is_not_copied_and_its_header_goes_inline() {
    let v = vec![5u8; 1000];
    let ptr = v.as_ptr();
    let (mut m, n) = copies(|| Message::from(v));
    assert_eq!(n, 0);
    assert_eq!(m.body().as_ptr(), ptr, "the vector's buffer is the body");
    m.push_header_u32(0x8000_0007);
    m.push_header_u32(3);
    assert_eq!(m.header(), &[0, 0, 0, 3, 0x80, 0, 0, 7]);
    assert_eq!(m.len(), 1008);
    let ((), n) = copies(|| {
        m.push_frame_header(&[0xAA]);
        m.push_frame_trailer(&[0xBB]);
    });
    assert_eq!(n, 0, "nothing was copied");
    let parts = m.frame_parts();
    assert_eq!(parts[0], &[0xAA, 0, 0, 0, 3, 0x80, 0, 0, 7]);
    assert_eq!(parts[1].as_ptr(), ptr);
    assert_eq!(parts[2], &[0xBB]);
    assert_eq!(m.frame_len(), 1010);
    assert_eq!(m.pop_header_u32(), Some(3));
    assert_eq!(m.header(), &[0x80, 0, 0, 7]);
    m.clear_header();
    assert_eq!(m.header(), b"");
    assert_eq!(m.body().len(), 1000);
}

#[test]
fn string_and_bytes_are_taken_over() {
    let s = String::from("hello");
    let p = s.as_ptr();
    let m = Message::from(s);
    assert_eq!(m.body().as_ptr(), p);
    let b = bytes::Bytes::from_static(b"static");
    let m = Message::from(b.clone());
    assert_eq!(m.body().as_ptr(), b.as_ptr());
}

#[test]
fn writing_a_taken_over_body_copies_once_and_keeps_the_header() {
    let mut m = Message::from(vec![1u8, 2, 3]);
    m.push_header_u32(9);
    let ((), n) = copies(|| m.body_mut()[0] = 7);
    assert_eq!(n, 3, "one copy of the body");
    assert_eq!(m.header(), &[0, 0, 0, 9]);
    assert_eq!(m.body(), &[7, 2, 3]);
    assert_eq!(
        m.wire(),
        &[0, 0, 0, 9, 7, 2, 3],
        "the header moved into the buffer"
    );
    let ((), n) = copies(|| m.body_mut()[1] = 8);
    assert_eq!(n, 0, "unique and owned now: in place");
}

#[test]
fn reserve_frame_copies_at_most_once_and_not_when_there_is_room() {
    let mut m = Message::with_capacity(16, 100, 32);
    m.push_header_u32(1);
    assert_eq!(m.reserve_frame(8, 16), 0, "room was reserved: no copy");
    let mut shared = m.clone();
    shared.push_frame_header(&[1, 2]);
    let copied = shared.reserve_frame(5, 16);
    assert_eq!(copied, 2 + 104, "one copy of the whole frame");
    assert!(shared.is_contiguous() && shared.headroom() >= 5 && shared.tailroom() >= 16);
    assert_eq!(&shared.wire()[..6], &[1, 2, 0, 0, 0, 1]);
    assert_eq!(shared.reserve_frame(5, 16), 0);
    assert_eq!(m.header(), &[0, 0, 0, 1], "the clone kept its own view");
}

#[test]
fn body_to_header_on_a_detached_header_keeps_it_in_one_place() {
    let mut m = Message::from(vec![0x80, 0, 0, 5, b'h', b'i']);
    m.push_header_u32(77);
    assert!(m.body_to_header(4));
    assert_eq!(m.header(), &[0, 0, 0, 77, 0x80, 0, 0, 5]);
    assert_eq!(m.body(), b"hi");
    m.header_to_body();
    assert_eq!(m.body(), &[0, 0, 0, 77, 0x80, 0, 0, 5, b'h', b'i']);
}

#[test]
fn into_frame_bytes_shares_a_contiguous_frame() {
    let m = Message::with_headroom(8, b"payload");
    let p = m.wire().as_ptr();
    let b = m.into_frame_bytes();
    assert_eq!(&b[..], b"payload");
    assert_eq!(b.as_ptr(), p, "no copy");
    let mut m = Message::from(vec![1u8, 2]);
    m.push_header(&[9]);
    assert_eq!(&m.into_frame_bytes()[..], &[9, 1, 2]);
}

#[test]
fn prepend_and_trim_around_an_inline_header() {
    let mut m = Message::from(vec![b'x', b'y']);
    m.push_header(&[1]);
    m.prepend_body(b"ab");
    assert_eq!(m.header(), &[1]);
    assert_eq!(m.body(), b"abxy");
    assert!(m.trim_body_front(1));
    assert_eq!(m.header(), &[1]);
    assert_eq!(m.body(), b"bxy");
}

#[test]
fn a_message_stays_small_enough_to_move_without_a_memcpy_call() {
    // every hand-over (sink, routing, queue) moves the message by value; past
    // about 128 bytes each move is a call to memcpy (it was 27 % of the send
    // path's instructions when the inline areas lived in the message itself)
    assert!(
        std::mem::size_of::<Message>() <= 80,
        "{} bytes",
        std::mem::size_of::<Message>()
    );
}

#[test]
fn a_new_message_is_zeroed_even_where_a_freed_one_was() {
    for size in [0usize, 1, 63, 4096, 64 << 10, 1 << 20] {
        for _ in 0..3 {
            // dirty memory the allocator will likely hand out again
            let mut dirty = Message::with_capacity(64, size, 16);
            dirty.body_mut().fill(0xa5);
            drop(dirty);
            let m = Message::with_capacity(64, size, 16);
            assert_eq!(m.body().len(), size);
            assert!(
                m.body().iter().all(|&b| b == 0),
                "{size}-byte body not zeroed"
            );
            assert_eq!((m.headroom(), m.tailroom()), (64, 16));
        }
    }
}

#[test]
fn a_pooled_send_buffer_carries_no_byte_of_the_message_before_it() {
    // (dirty message, the next one): same size, and a smaller one that
    // reuses a larger buffer (more room behind than asked for)
    for ((h0, b0, t0), (h1, b1, t1)) in [
        ((64, 64 << 10, 16), (64, 64 << 10, 16)),
        ((0, 1 << 20, 32), (8, 600 << 10, 0)),
    ] {
        let pool = pool::BufPool::new(8 << 20);
        let mut dirty = Message::with_capacity_in(&pool, h0, b0, t0);
        // every byte of it: header room, body and trailer room
        dirty.store.writable().expect("unique").fill(0xa5);
        let at = dirty.store.bytes().as_ptr();
        drop(dirty);
        let m = Message::with_capacity_in(&pool, h1, b1, t1);
        assert_eq!(m.store.bytes().as_ptr(), at, "the kept buffer is reused");
        assert!(
            m.store.bytes().iter().all(|&b| b == 0),
            "a reused buffer is zeroed whole"
        );
        assert_eq!((m.headroom(), m.body().len()), (h1, b1));
        assert!(m.tailroom() >= t1);
    }
}

#[test]
fn a_pooled_receive_buffer_carries_no_byte_of_the_frame_before_it() {
    let pool = pool::BufPool::new(8 << 20);
    let mut dirty = RecvBuf::in_pool(&pool, 8, 64 << 10);
    dirty.extend_from(&vec![0xa5; 64 << 10]);
    let m = dirty.into_message();
    let at = m.store.bytes().as_ptr();
    drop(m);
    // a smaller frame, cut short after 3 bytes, read into the same buffer
    let mut rb = RecvBuf::in_pool(&pool, 8, 40 << 10);
    rb.extend_from(&[1, 2, 3]);
    let m = rb.into_message();
    assert_eq!(m.store.bytes().as_ptr(), at, "the kept buffer is reused");
    assert_eq!(m.body().len(), 40 << 10);
    assert_eq!(&m.body()[..3], &[1, 2, 3]);
    let rest = m.store.bytes().iter().enumerate();
    assert!(
        rest.filter(|(i, _)| !(8..11).contains(i))
            .all(|(_, &b)| b == 0),
        "headroom, the unread rest and the room behind are zeroed"
    );
}

#[test]
fn a_pooled_buffer_goes_back_only_when_its_last_user_does() {
    let pool = pool::BufPool::new(8 << 20);
    let m = Message::with_capacity_in(&pool, 0, 64 << 10, 0);
    let bytes = m.clone().into_frame_bytes();
    drop(m);
    // `bytes` still reads the buffer: it must not be handed out again
    assert!(!matches!(pool.take(64 << 10), pool::Taken::Kept(_)));
    drop(bytes);
    match pool.take(64 << 10) {
        pool::Taken::Kept(b) => assert_eq!(b.len(), 64 << 10),
        _ => panic!("the buffer is back in the pool"),
    }
}
