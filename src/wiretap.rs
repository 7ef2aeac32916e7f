//! A man in the middle for SP/TCP, for tests, demos and debugging: forwards
//! both directions, records every frame after the announcement, can rewrite
//! the announcements in flight and inject frames. It is how the test suite
//! looks at (and attacks) hop-encrypted pipes, and how
//! `examples/secure_relay.rs` shows what each hop carries.
//!
//! ```no_run
//! # async fn demo() -> spstack::Result<()> {
//! use spstack::wiretap::{Dir, Wiretap};
//! let rep = spstack::rep0().build();
//! let ep = rep.listen("tcp://127.0.0.1:0").await?;
//! let tap = Wiretap::start(ep.url(), None).await?;
//! let req = spstack::req0().build();
//! req.dial(&tap.url).await?;            // dial the tap, not the listener
//! req.send("ping").await?;
//! let _ = rep.recv().await?;
//! let frames = tap.wait_frames(0, Dir::Up, 1).await?;
//! assert_eq!(&frames[0][4..], b"ping"); // request id, then the body
//! # Ok(()) }
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};

use crate::{Error, Result};

/// Which way bytes flow through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Dialer to listener.
    Up,
    /// Listener to dialer.
    Down,
}

/// Rewrites an announcement (8-byte SP header plus any layer list) in flight.
pub type Rewrite = Arc<dyn Fn(Dir, &mut Vec<u8>) + Send + Sync>;

/// One recorded frame (without its u64 length prefix).
#[derive(Clone, Debug)]
pub struct Frame {
    /// Connection number, from 0.
    pub conn: usize,
    /// Direction.
    pub dir: Dir,
    /// Payload bytes.
    pub bytes: Vec<u8>,
}

/// A running tap. Its accept loop lives as long as the runtime: give each
/// test or demo its own.
pub struct Wiretap {
    /// `tcp://` URL to dial instead of the upstream.
    pub url: String,
    frames: Arc<Mutex<Vec<Frame>>>,
    up_writers: Arc<Mutex<Vec<Arc<tokio::sync::Mutex<OwnedWriteHalf>>>>>,
}

/// Largest frame the tap forwards; it closes the connection on anything larger.
const MAX_FRAME: u64 = 64 << 20;

impl Wiretap {
    /// Starts forwarding to `upstream` (`tcp://host:port`).
    pub async fn start(upstream: &str, rewrite: Option<Rewrite>) -> Result<Wiretap> {
        let target = upstream.trim_start_matches("tcp://").to_string();
        let l = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("tcp://{}", l.local_addr()?);
        let frames: Arc<Mutex<Vec<Frame>>> = Arc::default();
        let up_writers: Arc<Mutex<Vec<_>>> = Arc::default();
        let (f, w) = (frames.clone(), up_writers.clone());
        tokio::spawn(async move {
            let mut conn = 0;
            while let Ok((client, _)) = l.accept().await {
                let Ok(server) = TcpStream::connect(&target).await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let sw = Arc::new(tokio::sync::Mutex::new(sw));
                let cw = Arc::new(tokio::sync::Mutex::new(cw));
                w.lock().unwrap_or_else(|e| e.into_inner()).push(sw.clone());
                tokio::spawn(pump(cr, sw, Dir::Up, conn, f.clone(), rewrite.clone()));
                tokio::spawn(pump(sr, cw, Dir::Down, conn, f.clone(), rewrite.clone()));
                conn += 1;
            }
        });
        Ok(Wiretap {
            url,
            frames,
            up_writers,
        })
    }

    /// Every frame recorded so far.
    pub fn frames(&self) -> Vec<Frame> {
        self.frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Frames of one direction on one connection.
    pub fn frames_of(&self, conn: usize, dir: Dir) -> Vec<Vec<u8>> {
        self.frames()
            .into_iter()
            .filter(|f| f.conn == conn && f.dir == dir)
            .map(|f| f.bytes)
            .collect()
    }

    /// Sends `payload` as one more SP/TCP frame to the listener on the
    /// newest connection (a replay, when it was captured before).
    pub async fn inject_up(&self, payload: &[u8]) -> Result<()> {
        let w = self
            .up_writers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last()
            .cloned();
        let w = w.ok_or(Error::State("no connection through the wiretap yet"))?;
        let mut w = w.lock().await;
        let mut f = (payload.len() as u64).to_be_bytes().to_vec();
        f.extend_from_slice(payload);
        w.write_all(&f).await?;
        Ok(())
    }

    /// Waits until at least `n` frames went `dir` on `conn`, for at most 10 s.
    pub async fn wait_frames(&self, conn: usize, dir: Dir, n: usize) -> Result<Vec<Vec<u8>>> {
        for _ in 0..1000 {
            let v = self.frames_of(conn, dir);
            if v.len() >= n {
                return Ok(v);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(Error::TimedOut(Duration::from_secs(10)))
    }
}

async fn pump(
    mut r: tokio::net::tcp::OwnedReadHalf,
    w: Arc<tokio::sync::Mutex<OwnedWriteHalf>>,
    dir: Dir,
    conn: usize,
    frames: Arc<Mutex<Vec<Frame>>>,
    rewrite: Option<Rewrite>,
) {
    // the announcement: 8 bytes, then a u16 length and a layer list when the
    // version byte (index 3) says "layered"
    let mut ann = vec![0u8; 8];
    if r.read_exact(&mut ann).await.is_err() {
        return;
    }
    if ann[3] == 1 {
        let mut l = [0u8; 2];
        if r.read_exact(&mut l).await.is_err() {
            return;
        }
        let mut list = vec![0u8; u16::from_be_bytes(l) as usize];
        if r.read_exact(&mut list).await.is_err() {
            return;
        }
        ann.extend_from_slice(&l);
        ann.extend_from_slice(&list);
    }
    if let Some(rw) = &rewrite {
        rw(dir, &mut ann);
    }
    if w.lock().await.write_all(&ann).await.is_err() {
        return;
    }
    loop {
        let mut len = [0u8; 8];
        if r.read_exact(&mut len).await.is_err() {
            break;
        }
        let n = u64::from_be_bytes(len);
        if n > MAX_FRAME {
            break;
        }
        let mut body = vec![0u8; n as usize];
        if r.read_exact(&mut body).await.is_err() {
            break;
        }
        frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Frame {
                conn,
                dir,
                bytes: body.clone(),
            });
        let mut w = w.lock().await;
        if w.write_all(&len).await.is_err() || w.write_all(&body).await.is_err() {
            break;
        }
    }
    let _ = w.lock().await.shutdown().await;
}

/// True when `a` and `b` share a run of `n` identical bytes anywhere.
pub fn share_run(a: &[u8], b: &[u8], n: usize) -> bool {
    if a.len() < n || b.len() < n {
        return false;
    }
    let windows: std::collections::HashSet<&[u8]> = a.windows(n).collect();
    b.windows(n).any(|w| windows.contains(w))
}
