//! A raw TCP peer that speaks the SP wire by hand, for tests that play an
//! evil or unusual peer against a real spstack socket.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// How long any single wait may take.
pub const WAIT: Duration = Duration::from_secs(5);

/// Awaits `f` within [`WAIT`].
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// The 8-byte SP header of protocol `proto`.
pub fn sp_header(proto: u16) -> [u8; 8] {
    let p = proto.to_be_bytes();
    [0, b'S', b'P', 0, p[0], p[1], 0, 0]
}

/// `payload` framed for tcp: u64 BE length, then the bytes.
pub fn tcp_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u64).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

/// Connects to `url` (tcp://), announces `mine` and checks the socket answers `theirs`.
pub async fn evil(url: &str, mine: u16, theirs: u16) -> TcpStream {
    let mut s = within(
        "connect",
        TcpStream::connect(url.strip_prefix("tcp://").unwrap()),
    )
    .await
    .unwrap();
    s.write_all(&sp_header(mine)).await.unwrap();
    let mut h = [0u8; 8];
    within("header", s.read_exact(&mut h)).await.unwrap();
    assert_eq!(h, sp_header(theirs));
    s
}

/// Reads one tcp frame (at most 1 MiB) and returns its payload.
pub async fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 8];
    within("frame length", s.read_exact(&mut len))
        .await
        .unwrap();
    let len = u64::from_be_bytes(len);
    assert!(len < 1 << 20);
    let mut b = vec![0u8; len as usize];
    within("frame body", s.read_exact(&mut b)).await.unwrap();
    b
}

/// The socket must close the connection (EOF or an error) within [`WAIT`];
/// whatever it still sends before that is skipped.
pub async fn expect_closed(s: &mut TcpStream, what: &str) {
    let mut b = [0u8; 1024];
    let t0 = Instant::now();
    loop {
        match timeout(WAIT.saturating_sub(t0.elapsed()), s.read(&mut b)).await {
            Err(_) => panic!("{what}: connection not closed"),
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => continue,
        }
    }
}
