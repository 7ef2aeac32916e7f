//! A userspace TCP fault proxy: the network misbehaving between two SP
//! sockets, per direction, reproducibly.
//!
//! What each fault means over TCP (the kernel here has no netem, and a
//! packet-level simulator would mostly show what TCP hides):
//!
//! * **delay, jitter**: each unit is held `delay` plus a uniform share of
//!   `jitter`; TCP delivers in order, so jitter varies the latency and never
//!   reorders (a unit is never released before the one ahead of it).
//! * **loss**: a lost segment is retransmitted by TCP, so the application
//!   sees a stall: the unit (and everything behind it, head-of-line) waits an
//!   RTO (`rto`, 200 ms as Linux's minimum), doubled for each loss in a row.
//!   Nothing is missing afterwards; what the application can lose is what
//!   the *stall* makes its queues drop, which the sockets count.
//! * **reordering, duplication**: TCP hides both at the packet level; in
//!   the byte stream they only come from a faulty relay or a middlebox bug.
//!   The proxy does them whole SP frames at a time (`Framing::Sp`): well-formed
//!   frames in the wrong order, or twice, the hardest case for the layers
//!   above (Noise must close the pipe, integrity must drop the replay, REQ
//!   must drop the second reply).
//! * **truncation**: the unit is cut after a random prefix and the
//!   connection is closed (FIN): a connection torn down mid-message.
//! * **reset**: the unit is discarded and both connections are reset (RST),
//!   as when a NAT or firewall forgets the flow.
//!
//! A unit is one SP/TCP frame (`Framing::Sp`: the announcement passes
//! untouched, then u64-length frames) or one read of up to 64 KiB
//! (`Framing::Bytes`, for TLS or WebSocket streams). Each connection and
//! direction draws its fates from its own generator seeded by `(seed,
//! connection number, direction)` with the same number of draws per unit,
//! so unit k of connection c meets the same fate in every run with the same
//! seed, whatever the timing ([`Proxy::fates`] records them). At most
//! `window` bytes are held per direction (the bandwidth-delay product of
//! the link): beyond it the proxy stops reading and TCP pushes back.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Largest unit the proxy accepts (an SP frame larger than this closes the
/// connection; the tests send at most a few MiB).
const MAX_UNIT: u64 = 64 << 20;
/// One read in `Framing::Bytes`.
const CHUNK: usize = 64 << 10;
/// Fates are recorded for the first connections' first units only: a soak
/// passes millions of units, and an unbounded record was its largest leak.
const FATES_CONNS: u64 = 8;
const FATES_KEPT: usize = 1024;

/// Faults of one direction. Probabilities are per unit.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Added to every unit.
    pub delay: Duration,
    /// Up to this much more, uniformly (order kept).
    pub jitter: Duration,
    /// A retransmission stall before the unit.
    pub loss: f64,
    /// The stall of one loss (default 200 ms), doubled per loss in a row.
    pub rto: Duration,
    /// The unit is written twice.
    pub duplicate: f64,
    /// The unit is held and written after the next one.
    pub reorder: f64,
    /// The unit is cut short and the connection closed.
    pub truncate: f64,
    /// The unit is discarded and both connections reset.
    pub reset: f64,
}

impl Faults {
    /// Delay and jitter, in milliseconds.
    pub fn delay(ms: u64, jitter_ms: u64) -> Faults {
        Faults {
            delay: Duration::from_millis(ms),
            jitter: Duration::from_millis(jitter_ms),
            ..Faults::default()
        }
    }
    /// With loss `p` (stalls of `rto`, 200 ms when zero).
    pub fn loss(mut self, p: f64) -> Faults {
        self.loss = p;
        self
    }
    /// With duplication `p`.
    pub fn duplicate(mut self, p: f64) -> Faults {
        self.duplicate = p;
        self
    }
    /// With reordering `p`.
    pub fn reorder(mut self, p: f64) -> Faults {
        self.reorder = p;
        self
    }
    /// With truncation `p`.
    pub fn truncate(mut self, p: f64) -> Faults {
        self.truncate = p;
        self
    }
    /// With resets `p`.
    pub fn reset(mut self, p: f64) -> Faults {
        self.reset = p;
        self
    }
}

/// What a unit is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// SP/TCP: the announcement, then u64-length frames.
    Sp,
    /// Reads of up to 64 KiB.
    Bytes,
}

/// Which way a unit travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    /// From the side that connected to the proxy to the upstream.
    Up,
    /// Back.
    Down,
}

/// A proxy's settings.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Dialer to listener.
    pub up: Faults,
    /// Listener to dialer.
    pub down: Faults,
    /// Seeds every decision.
    pub seed: u64,
    /// Bytes held per direction at most.
    pub window: usize,
    /// What a unit is.
    pub framing: Framing,
}

impl Spec {
    /// SP framing, a 256 KiB window, faults `up` and `down`.
    pub fn sp(seed: u64, up: Faults, down: Faults) -> Spec {
        Spec {
            up,
            down,
            seed,
            window: 256 << 10,
            framing: Framing::Sp,
        }
    }
    fn faults(&self, dir: Dir) -> &Faults {
        match dir {
            Dir::Up => &self.up,
            Dir::Down => &self.down,
        }
    }
}

/// The fate of one unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fate {
    /// Extra delay drawn from the jitter, in µs.
    pub jitter_us: u64,
    /// Stalled as a lost segment.
    pub lost: bool,
    /// Written twice.
    pub duplicate: bool,
    /// Held behind the next unit.
    pub reorder: bool,
    /// Cut after this many bytes.
    pub truncate_at: Option<usize>,
    /// Discarded with a reset.
    pub reset: bool,
}

/// Seven draws per unit whatever the outcome, so the k-th unit's fate does
/// not depend on the fates before it.
fn decide(rng: &mut fastrand::Rng, f: &Faults, len: usize) -> Fate {
    let (j, l, d, r, t, at, x) = (
        rng.f64(),
        rng.f64(),
        rng.f64(),
        rng.f64(),
        rng.f64(),
        rng.f64(),
        rng.f64(),
    );
    let reset = x < f.reset;
    let truncate_at = (!reset && t < f.truncate && len > 1)
        .then(|| (1 + ((len - 1) as f64 * at) as usize).min(len - 1));
    let whole = !reset && truncate_at.is_none();
    Fate {
        jitter_us: (f.jitter.as_micros() as f64 * j) as u64,
        lost: l < f.loss,
        duplicate: whole && d < f.duplicate,
        reorder: whole && r < f.reorder,
        truncate_at,
        reset,
    }
}

fn seed_of(seed: u64, conn: u64, dir: Dir) -> u64 {
    // splitmix64 of the three, so neighbouring connections are unrelated
    let mut z = seed
        ^ conn.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ match dir {
            Dir::Up => 0x5555,
            Dir::Down => 0xAAAA,
        };
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What the proxy did, summed over connections and directions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted (and connected upstream).
    pub conns: u64,
    /// Units forwarded whole (a duplicate counts once).
    pub units: u64,
    /// Units stalled as lost segments.
    pub lost: u64,
    /// Units written twice.
    pub duplicated: u64,
    /// Units written after the next one.
    pub reordered: u64,
    /// Units cut short (each closed its connection).
    pub truncated: u64,
    /// Connections reset by a fault.
    pub resets: u64,
    /// Whole units never written: the one a reset discarded and those queued
    /// behind a reset or a truncation.
    pub discarded: u64,
    /// The most bytes held in one direction at once.
    pub max_held: u64,
}

#[derive(Default)]
struct Counters {
    conns: AtomicU64,
    units: AtomicU64,
    lost: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
    truncated: AtomicU64,
    resets: AtomicU64,
    discarded: AtomicU64,
    max_held: AtomicU64,
}

struct Shared {
    spec: Mutex<Spec>,
    counters: Counters,
    fates: Mutex<HashMap<(u64, Dir), Vec<Fate>>>,
    /// Cancelled when the proxy goes: every connection task ends.
    gone: CancellationToken,
}

/// A running proxy. Its tasks run on the runtime it was started on (a
/// node's, so its sockets are the host's); dropping it closes everything.
pub struct Proxy {
    /// Where to connect instead of the upstream.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Listens on `listen` (port 0 picks one) and forwards each connection to
    /// `upstream` through the faults of `spec`.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr, spec: Spec) -> io::Result<Proxy> {
        let l = TcpListener::bind(listen).await?;
        let addr = l.local_addr()?;
        let shared = Arc::new(Shared {
            spec: Mutex::new(spec),
            counters: Counters::default(),
            fates: Mutex::new(HashMap::new()),
            gone: CancellationToken::new(),
        });
        let s = shared.clone();
        tokio::spawn(async move {
            let mut conn = 0u64;
            loop {
                let accepted = tokio::select! {
                    _ = s.gone.cancelled() => return,
                    a = l.accept() => a,
                };
                let Ok((client, _)) = accepted else { continue };
                let s2 = s.clone();
                let n = conn;
                conn += 1;
                tokio::spawn(async move {
                    let server = tokio::select! {
                        _ = s2.gone.cancelled() => return,
                        c = TcpStream::connect(upstream) => c,
                    };
                    // upstream refused or unreachable: the client sees its
                    // connection closed, as it would without the proxy
                    let Ok(server) = server else { return };
                    s2.counters.conns.fetch_add(1, Relaxed);
                    splice(s2, n, client, server).await;
                });
            }
        });
        Ok(Proxy { addr, shared })
    }

    /// `tcp://` URL of the proxy.
    pub fn url(&self) -> String {
        format!("tcp://{}", self.addr)
    }

    /// New faults for units read from now on.
    pub fn set(&self, up: Faults, down: Faults) {
        let mut s = self.shared.spec.lock().unwrap_or_else(|e| e.into_inner());
        s.up = up;
        s.down = down;
    }

    /// What the proxy did so far.
    pub fn stats(&self) -> ProxyStats {
        let c = &self.shared.counters;
        ProxyStats {
            conns: c.conns.load(Relaxed),
            units: c.units.load(Relaxed),
            lost: c.lost.load(Relaxed),
            duplicated: c.duplicated.load(Relaxed),
            reordered: c.reordered.load(Relaxed),
            truncated: c.truncated.load(Relaxed),
            resets: c.resets.load(Relaxed),
            discarded: c.discarded.load(Relaxed),
            max_held: c.max_held.load(Relaxed),
        }
    }

    /// The fates drawn so far on connection `conn` (from 0), direction `dir`
    /// (the first 1024 units of the first 8 connections).
    pub fn fates(&self, conn: u64, dir: Dir) -> Vec<Fate> {
        self.shared
            .fates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(conn, dir))
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.gone.cancel();
    }
}

struct Unit {
    bytes: Vec<u8>,
    fate: Fate,
    release: Instant,
    _permit: OwnedSemaphorePermit,
}

/// Both directions of one connection; returns when both ended or the
/// connection was cut.
async fn splice(s: Arc<Shared>, conn: u64, client: TcpStream, server: TcpStream) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client, server) = (Arc::new(client), Arc::new(server));
    let cut = s.gone.child_token();
    let pump = |dir: Dir, from: Arc<TcpStream>, to: Arc<TcpStream>| {
        let (tx, rx) = mpsc::unbounded_channel();
        let window = s.spec.lock().unwrap_or_else(|e| e.into_inner()).window;
        let held = Arc::new(Semaphore::new(window));
        let r = reader(
            s.clone(),
            (conn, dir),
            (from.clone(), to.clone()),
            tx,
            held,
            window,
            cut.clone(),
        );
        let w = writer(s.clone(), rx, (from, to), cut.clone());
        async move {
            tokio::join!(r, w);
        }
    };
    let up = pump(Dir::Up, client.clone(), server.clone());
    let down = pump(Dir::Down, server.clone(), client.clone());
    tokio::join!(up, down);
}

async fn reader(
    s: Arc<Shared>,
    (conn, dir): (u64, Dir),
    (from, to): (Arc<TcpStream>, Arc<TcpStream>),
    tx: mpsc::UnboundedSender<Unit>,
    held: Arc<Semaphore>,
    window: usize,
    cut: CancellationToken,
) {
    let (seed, framing) = {
        let spec = s.spec.lock().unwrap_or_else(|e| e.into_inner());
        (spec.seed, spec.framing)
    };
    let mut rng = fastrand::Rng::with_seed(seed_of(seed, conn, dir));
    let mut last_release = Instant::now();
    let mut losses_in_a_row = 0u32;
    let mut behind: Option<Unit> = None;
    let mut first = framing == Framing::Sp;
    loop {
        let read = tokio::select! {
            _ = cut.cancelled() => break,
            r = async {
                match (framing, first) {
                    (Framing::Sp, true) => read_announcement(&from).await,
                    (Framing::Sp, false) => read_frame(&from).await,
                    (Framing::Bytes, _) => read_chunk(&from).await,
                }
            } => r,
        };
        let bytes = match read {
            Ok(Some(b)) => b,
            // the sender finished: the writer passes the FIN on
            Ok(None) => break,
            // the sender's connection broke (RST): so does the other one
            Err(_) => {
                reset_both(&from, &to, &cut);
                break;
            }
        };
        let faults = s
            .spec
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .faults(dir)
            .clone();
        // the announcement passes with the delay only: faults in it would
        // only ever look like a failed handshake
        let fate = if first {
            first = false;
            Fate {
                jitter_us: 0,
                lost: false,
                duplicate: false,
                reorder: false,
                truncate_at: None,
                reset: false,
            }
        } else {
            let f = decide(&mut rng, &faults, bytes.len());
            if conn < FATES_CONNS {
                let mut fates = s.fates.lock().unwrap_or_else(|e| e.into_inner());
                let v = fates.entry((conn, dir)).or_default();
                if v.len() < FATES_KEPT {
                    v.push(f);
                }
            }
            f
        };
        if fate.reset {
            s.counters.resets.fetch_add(1, Relaxed);
            s.counters
                .discarded
                .fetch_add(1 + behind.is_some() as u64, Relaxed);
            reset_both(&from, &to, &cut);
            break;
        }
        let need = bytes.len().clamp(1, window) as u32;
        let permit = tokio::select! {
            _ = cut.cancelled() => break,
            p = held.clone().acquire_many_owned(need) => p.expect("never closed"),
        };
        s.counters
            .max_held
            .fetch_max((window - held.available_permits()) as u64, Relaxed);
        let mut release = Instant::now() + faults.delay + Duration::from_micros(fate.jitter_us);
        if fate.lost {
            let rto = if faults.rto.is_zero() {
                Duration::from_millis(200)
            } else {
                faults.rto
            };
            release += rto * (1 << losses_in_a_row.min(5));
            losses_in_a_row += 1;
            s.counters.lost.fetch_add(1, Relaxed);
        } else {
            losses_in_a_row = 0;
        }
        // in order: never before the unit ahead
        release = release.max(last_release);
        last_release = release;
        let truncating = fate.truncate_at.is_some();
        let unit = Unit {
            bytes,
            fate,
            release,
            _permit: permit,
        };
        if fate.reorder && behind.is_none() {
            behind = Some(unit);
            continue;
        }
        if tx.send(unit).is_err() {
            break;
        }
        if let Some(mut b) = behind.take() {
            s.counters.reordered.fetch_add(1, Relaxed);
            b.release = last_release;
            if tx.send(b).is_err() {
                break;
            }
        }
        if truncating {
            break;
        }
    }
    if let Some(b) = behind.take() {
        // nothing came after it: it goes last, in its place after all
        let _ = tx.send(b);
    }
}

async fn writer(
    s: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Unit>,
    (from, to): (Arc<TcpStream>, Arc<TcpStream>),
    cut: CancellationToken,
) {
    loop {
        let unit = tokio::select! {
            _ = cut.cancelled() => {
                // a reset or truncation elsewhere: what is queued is lost
                let mut n = 0;
                while rx.try_recv().is_ok() {
                    n += 1;
                }
                s.counters.discarded.fetch_add(n, Relaxed);
                return;
            }
            u = rx.recv() => u,
        };
        let Some(unit) = unit else {
            // the reader saw the sender's FIN and everything is written
            let _ = shutdown(&to, libc::SHUT_WR);
            return;
        };
        tokio::select! {
            _ = cut.cancelled() => {
                s.counters.discarded.fetch_add(1, Relaxed);
                continue;
            }
            _ = tokio::time::sleep_until(unit.release) => {}
        }
        if let Some(at) = unit.fate.truncate_at {
            let _ = write_all(&to, &unit.bytes[..at]).await;
            s.counters.truncated.fetch_add(1, Relaxed);
            // the connection goes down mid-message: FIN both ways
            let _ = shutdown(&to, libc::SHUT_WR);
            let _ = shutdown(&from, libc::SHUT_RDWR);
            cut.cancel();
            continue;
        }
        let copies = if unit.fate.duplicate { 2 } else { 1 };
        for _ in 0..copies {
            let ok = tokio::select! {
                _ = cut.cancelled() => false,
                r = write_all(&to, &unit.bytes) => r.is_ok(),
            };
            if !ok {
                reset_both(&from, &to, &cut);
                break;
            }
        }
        s.counters.units.fetch_add(1, Relaxed);
        if unit.fate.duplicate {
            s.counters.duplicated.fetch_add(1, Relaxed);
        }
    }
}

/// Resets both connections: with zero linger the last task to drop a
/// stream closes it with RST; the cut ends every task of the pair.
fn reset_both(a: &TcpStream, b: &TcpStream, cut: &CancellationToken) {
    let _ = a.set_zero_linger();
    let _ = b.set_zero_linger();
    cut.cancel();
}

fn shutdown(s: &TcpStream, how: libc::c_int) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a descriptor owned by `s`, alive for the call
    if unsafe { libc::shutdown(s.as_raw_fd(), how) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Fills `buf`; `Ok(false)` on a clean end of stream before the first byte.
async fn read_exact(s: &TcpStream, buf: &mut [u8]) -> io::Result<bool> {
    let mut n = 0;
    while n < buf.len() {
        s.readable().await?;
        match s.try_read(&mut buf[n..]) {
            Ok(0) if n == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

async fn write_all(s: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        s.writable().await?;
        match s.try_write(buf) {
            Ok(k) => buf = &buf[k..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The SP announcement: 8 bytes, and a u16-length layer list when the
/// version byte says "layered" (as `spstack::wiretap` reads it).
async fn read_announcement(s: &TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut ann = vec![0u8; 8];
    if !read_exact(s, &mut ann).await? {
        return Ok(None);
    }
    if ann[3] == 1 {
        let mut l = [0u8; 2];
        read_exact(s, &mut l).await?;
        let mut list = vec![0u8; u16::from_be_bytes(l) as usize];
        read_exact(s, &mut list).await?;
        ann.extend_from_slice(&l);
        ann.extend_from_slice(&list);
    }
    Ok(Some(ann))
}

/// One SP/TCP frame, its length prefix included.
async fn read_frame(s: &TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 8];
    if !read_exact(s, &mut len).await? {
        return Ok(None);
    }
    let n = u64::from_be_bytes(len);
    if n > MAX_UNIT {
        return Err(io::Error::other("frame larger than the proxy takes"));
    }
    let mut f = vec![0u8; 8 + n as usize];
    f[..8].copy_from_slice(&len);
    read_exact(s, &mut f[8..]).await?;
    Ok(Some(f))
}

async fn read_chunk(s: &TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        s.readable().await?;
        match s.try_read(&mut buf) {
            Ok(0) => return Ok(None),
            Ok(k) => {
                buf.truncate(k);
                return Ok(Some(buf));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}
