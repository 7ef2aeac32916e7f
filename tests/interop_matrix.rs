//! The SP interop matrix, in the manner of the QUIC interop runner: every
//! protocol pair × transport (tcp, ipc, ws, wss, tls+tcp) × foreign peer
//! (pynng for nng, nanocat for nanomsg) × direction (spstack dials or
//! listens; spstack sends or receives) × sizes (0 B, 1 B, 64 KiB and the
//! largest message a 1 MiB `recv_max_size` takes), every message checked
//! byte for byte on both sides. It writes what it measured to
//! `tests/interop/MATRIX.md` (pass, fail, or not supported by the peer and
//! why) and fails if any cell the peer supports failed.
//!
//! Built on the foreign-peer harness (`tests/common/foreign.rs`,
//! `tests/interop/peer.py`, `nano.py`, their payload convention); cells run
//! `SPSTACK_MATRIX_JOBS` at a time (default 4), each in a task of its own
//! with its own ports and ipc paths.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::foreign::{
    foreign_tls, listen, opts, payload, url, within, Peer, PeerTls, Tr, STEP, WS_PATH,
};
use common::pki::{Pki, SERVER_NAME};
use sp_transports::tls::{tls_tcp, Tls};
use sp_ws::Ws;
use spstack::{PipeId, Protocol, Socket, SubControl, SurveyorControl};
use tokio::sync::Semaphore;
use tokio::time::sleep;

/// The receive limit of our sockets in the matrix (the default) and of
/// nanomsg's (NN_RCVMAXSIZE, which nanocat cannot change).
const RECV_MAX: usize = 1 << 20;

/// The pairs, as (spstack's protocol, the peer's, the SP header bytes a
/// message carries on the wire).
const ROLES: [(Protocol, &str, usize); 11] = [
    (Protocol::Pair0, "pair0", 0),
    (Protocol::Pair1, "pair1", 4),
    (Protocol::Push0, "pull0", 0),
    (Protocol::Pull0, "push0", 0),
    (Protocol::Req0, "rep0", 4),
    (Protocol::Rep0, "req0", 4),
    (Protocol::Pub0, "sub0", 0),
    (Protocol::Sub0, "pub0", 0),
    (Protocol::Surveyor0, "respondent0", 4),
    (Protocol::Respondent0, "surveyor0", 4),
    (Protocol::Bus0, "bus0", 0),
];
const TRANSPORTS: [Tr; 5] = [Tr::Tcp, Tr::Ipc, Tr::Ws, Tr::Wss, Tr::TlsTcp];
const PEERS: [Peer; 2] = [Peer::Nng, Peer::Nano];

#[derive(Clone, Copy, Debug)]
struct Cell {
    ours: Protocol,
    theirs: &'static str,
    hdr: usize,
    tr: Tr,
    peer: Peer,
    we_listen: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Pass,
    Fail(String),
    /// Not supported by the peer, and why.
    Unsupported(String),
}

impl Cell {
    fn sizes(&self) -> Vec<usize> {
        vec![0, 1, 65536, RECV_MAX - self.hdr]
    }

    /// Does spstack send first (or only)?
    fn we_send(&self) -> bool {
        match self.ours {
            Protocol::Push0 | Protocol::Pub0 | Protocol::Req0 | Protocol::Surveyor0 => true,
            Protocol::Pull0 | Protocol::Sub0 | Protocol::Rep0 | Protocol::Respondent0 => false,
            // PAIR and BUS: the dialer speaks first (tests/interop/README.md)
            _ => !self.we_listen,
        }
    }

    fn name(&self) -> String {
        format!(
            "{:?} {} vs {:?} {} over {:?}, spstack {}",
            self.ours,
            if self.we_send() { "sends" } else { "receives" },
            self.peer,
            self.theirs,
            self.tr,
            if self.we_listen { "listens" } else { "dials" }
        )
    }

    /// Cells that run alone: nanocat's surveyor gives every survey nanomsg's
    /// default deadline of 1 s (nanocat cannot change it), and under load a
    /// 1 MiB survey and its 1 MiB answer over ws can take longer than that
    /// on two busy cores.
    fn alone(&self) -> bool {
        self.peer == Peer::Nano && self.ours == Protocol::Respondent0
    }

    /// Known before running: what the peer has no way to do.
    fn unsupported(&self) -> Option<String> {
        if self.peer == Peer::Nano && matches!(self.tr, Tr::Wss | Tr::TlsTcp) {
            return Some("nanomsg 1.1.5 has no TLS: no wss://, no tls+tcp://".into());
        }
        if self.peer == Peer::Nano && self.ours == Protocol::Pair1 {
            return Some("nanomsg has no PAIR v1 (tests/interop/README.md, N11)".into());
        }
        None
    }
}

/// Our socket for `cell`, with the transport its URL needs.
fn socket(cell: &Cell, pki: &Pki) -> Socket {
    let mut b = spstack::cooked(cell.ours).options(opts().recv_max_size(RECV_MAX));
    b = match cell.tr {
        Tr::Tcp | Tr::Ipc => b,
        Tr::Ws => b.transport(Arc::new(Ws::new(spstack::Tcp))),
        Tr::Wss => b.transport(Arc::new(Ws::secure(Tls::new(
            spstack::Tcp,
            pki.ours(cell.we_listen),
        )))),
        Tr::TlsTcp => b.transport(Arc::new(tls_tcp(pki.ours(cell.we_listen)))),
    };
    let s = b.build();
    if cell.ours == Protocol::Sub0 {
        s.control::<SubControl>().unwrap().subscribe(b"").unwrap();
    }
    if cell.ours == Protocol::Surveyor0 {
        // nanocat starts a process per survey: time for it, the answer ends it
        s.control::<SurveyorControl>()
            .unwrap()
            .set_deadline(Duration::from_secs(20));
    }
    s
}

/// Waits for a pipe we have not used before (a new foreign process).
async fn new_pipe(s: &Socket, seen: &mut HashSet<PipeId>, what: &str) {
    let t0 = Instant::now();
    loop {
        if let Some(p) = s.pipes().into_iter().find(|p| !seen.contains(p)) {
            seen.insert(p);
            return;
        }
        assert!(t0.elapsed() < STEP, "{what}: no pipe from the peer");
        sleep(Duration::from_millis(10)).await;
    }
}

/// Runs one cell: our end of the sequence against the foreign peer's.
async fn run(cell: Cell, pki: Arc<Pki>, id: usize) -> Outcome {
    if let Some(why) = cell.unsupported() {
        return Outcome::Unsupported(why);
    }
    let sizes = cell.sizes();
    // nanocat's respondent answers one survey per process (README N7): one
    // peer run per size
    let runs: Vec<Vec<usize>> = if cell.peer == Peer::Nano && cell.ours == Protocol::Surveyor0 {
        sizes.iter().map(|s| vec![*s]).collect()
    } else {
        vec![sizes]
    };
    let what = cell.name();
    let s = socket(&cell, &pki);
    let (cert_key, ca) = (pki.cert_key_file(), pki.ca_file());
    let tls = matches!(cell.tr, Tr::Wss | Tr::TlsTcp).then(|| PeerTls {
        cert_key: &cert_key,
        ca: &ca,
        server_name: SERVER_NAME,
    });
    let mut u = url(cell.tr, &format!("matrix-{id}"));
    if cell.peer == Peer::Nano && !cell.we_listen && cell.tr == Tr::Ws {
        // nanomsg 1.1.5 cannot bind a ws:// URL with a path: the root
        u.truncate(u.len() - WS_PATH.len());
    }
    let our_url = if cell.we_listen {
        Some(listen(&s, &u).await)
    } else {
        None
    };
    let mut seen = HashSet::new();
    for seq in runs {
        let mut dialer = None;
        let child = match &our_url {
            Some(at) => foreign_tls(cell.peer, cell.theirs, "dial", at, &seq, tls.as_ref()).await,
            None => {
                let c = foreign_tls(cell.peer, cell.theirs, "listen", &u, &seq, tls.as_ref()).await;
                dialer = Some(s.dial_background(c.url()).expect("dial"));
                c
            }
        };
        match cell.ours {
            // a message sent before the peer's pipe exists goes nowhere
            Protocol::Pub0 | Protocol::Surveyor0 => {
                new_pipe(&s, &mut seen, &what).await;
                // nng attaches its end of the pipe a moment after ours
                sleep(Duration::from_millis(300)).await;
            }
            Protocol::Bus0 if cell.we_send() => new_pipe(&s, &mut seen, &what).await,
            _ => {}
        }
        let ours = {
            let (s, seq, what) = (s.clone(), seq.clone(), what.clone());
            tokio::spawn(async move {
                for (i, &size) in seq.iter().enumerate() {
                    let ctx = format!("{what}: message {i} ({size} B)");
                    let one_way = matches!(
                        cell.ours,
                        Protocol::Push0 | Protocol::Pub0 | Protocol::Pull0 | Protocol::Sub0
                    );
                    if cell.we_send() {
                        within(&ctx, s.send(payload(size, i))).await;
                        if !one_way {
                            let m = within(&ctx, s.recv()).await;
                            assert!(
                                m.body() == &payload(size, i + 1000)[..],
                                "{ctx}: the answer differs ({} B)",
                                m.len()
                            );
                        }
                    } else {
                        let m = within(&ctx, s.recv()).await;
                        assert!(
                            m.body() == &payload(size, i)[..],
                            "{ctx}: differs ({} B)",
                            m.len()
                        );
                        if !one_way {
                            within(&ctx, s.send(payload(size, i + 1000))).await;
                        }
                    }
                }
            })
        };
        if let Err(e) = ours.await {
            // our side failed: the peer's own report tells whose fault it was
            let theirs = match tokio::spawn(child.finish_or_unsupported()).await {
                Ok(Ok(())) => "the peer finished OK".to_string(),
                Ok(Err(why)) => format!("the peer cannot: {why}"),
                Err(p) if p.is_panic() => format!("the peer: {}", panic_text(p.into_panic())),
                Err(p) => format!("the peer: {p}"),
            };
            let ours = if e.is_panic() {
                panic_text(e.into_panic())
            } else {
                e.to_string()
            };
            return Outcome::Fail(format!("{ours}; {theirs}"));
        }
        // keep our socket open until the peer has checked everything
        if let Err(why) = child.finish_or_unsupported().await {
            return Outcome::Unsupported(format!("nano.py: {why}"));
        }
        // the next peer may listen at the same ipc path: one dialer at a time
        if let Some(d) = dialer {
            d.close();
        }
    }
    Outcome::Pass
}

/// A panic's message.
fn panic_text(e: Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panicked".into())
}

fn cells() -> Vec<Cell> {
    let mut v = Vec::new();
    for (ours, theirs, hdr) in ROLES {
        for tr in TRANSPORTS {
            for we_listen in [false, true] {
                for peer in PEERS {
                    v.push(Cell {
                        ours,
                        theirs,
                        hdr,
                        tr,
                        peer,
                        we_listen,
                    });
                }
            }
        }
    }
    v
}

fn tr_name(tr: Tr) -> &'static str {
    match tr {
        Tr::Tcp => "tcp",
        Tr::Ipc => "ipc",
        Tr::Ws => "ws",
        Tr::Wss => "wss",
        Tr::TlsTcp => "tls+tcp",
    }
}

fn pair_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Pair0 => "PAIR0",
        Protocol::Pair1 => "PAIR1",
        Protocol::Push0 | Protocol::Pull0 => "PUSH/PULL",
        Protocol::Req0 | Protocol::Rep0 => "REQ/REP",
        Protocol::Pub0 | Protocol::Sub0 => "PUB/SUB",
        Protocol::Surveyor0 | Protocol::Respondent0 => "SURVEYOR/RESPONDENT",
        _ => "BUS",
    }
}

/// The table: a row per (spstack role, transport, dials/listens), a column
/// per peer; reasons for "not supported" and failures in notes below it.
fn markdown(results: &[(Cell, Outcome)]) -> String {
    let mut notes: Vec<String> = Vec::new();
    let mut note = |text: &str| -> usize {
        match notes.iter().position(|n| n == text) {
            Some(i) => i + 1,
            None => {
                notes.push(text.to_string());
                notes.len()
            }
        }
    };
    let count = |f: fn(&Outcome) -> bool| results.iter().filter(|(_, o)| f(o)).count();
    let (pass, fail, ns) = (
        count(|o| *o == Outcome::Pass),
        count(|o| matches!(o, Outcome::Fail(_))),
        count(|o| matches!(o, Outcome::Unsupported(_))),
    );
    let mut out = format!(
        "# SP interop matrix\n\n\
         Written by `cargo test --test interop_matrix` (`tests/interop_matrix.rs`); do not edit.\n\n\
         Every cell runs the whole sequence of sizes 0 B, 1 B, 64 KiB and `1 MiB − header` (the\n\
         largest message a 1 MiB `recv_max_size` takes: 1048576 B, or 1048572 B for protocols with\n\
         a 4-byte header), checked byte for byte on both sides (`tests/interop/README.md`). Peers:\n\
         **nng** = pynng 0.9.0 (nng 1.11.0), **nanomsg** = nanocat (nanomsg 1.1.5). PAIR and\n\
         BUS cells carry every message both ways: the dialer sends it, the listener answers.\n\n\
         **{pass} pass, {fail} fail, {ns} not supported by the peer** ({} cells).\n",
        results.len()
    );
    let mut pair = "";
    for (cell, _) in results.iter().filter(|(c, _)| c.peer == Peer::Nng) {
        if pair_name(cell.ours) != pair {
            pair = pair_name(cell.ours);
            out += &format!(
                "\n## {pair}\n\n| spstack | transport | spstack | nng | nanomsg |\n|---|---|---|---|---|\n"
            );
        }
        let cell_text = |peer: Peer, note: &mut dyn FnMut(&str) -> usize| {
            let (_, o) = results
                .iter()
                .find(|(c, _)| {
                    c.peer == peer
                        && c.ours == cell.ours
                        && c.tr == cell.tr
                        && c.we_listen == cell.we_listen
                })
                .expect("every peer has every cell");
            match o {
                Outcome::Pass => "pass".to_string(),
                Outcome::Fail(why) => format!("**FAIL** [{}]", note(why)),
                Outcome::Unsupported(why) => format!("not supported [{}]", note(why)),
            }
        };
        let nng = cell_text(Peer::Nng, &mut note);
        let nano = cell_text(Peer::Nano, &mut note);
        let symmetric = matches!(
            cell.ours,
            Protocol::Pair0 | Protocol::Pair1 | Protocol::Bus0
        );
        out += &format!(
            "| {:?} ({}) | {} | {} | {nng} | {nano} |\n",
            cell.ours,
            match (symmetric, cell.we_send()) {
                (true, true) => "sends first",
                (true, false) => "answers",
                (false, true) => "sends",
                (false, false) => "receives",
            },
            tr_name(cell.tr),
            if cell.we_listen { "listens" } else { "dials" },
        );
    }
    out += "\n## Notes\n\n";
    for (i, n) in notes.iter().enumerate() {
        let one_line = n.replace('\n', " ");
        out += &format!("{}. {}\n", i + 1, one_line.trim());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interop_matrix() {
    common::foreign::preflight(Peer::Nng);
    common::foreign::preflight(Peer::Nano);
    let jobs = std::env::var("SPSTACK_MATRIX_JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
        .unwrap_or(4);
    let pki = Arc::new(Pki::new("matrix"));
    let gate = Arc::new(Semaphore::new(jobs));
    let t0 = Instant::now();
    // SPSTACK_MATRIX_ONLY=text runs the cells whose name holds it (and
    // leaves MATRIX.md alone)
    let only = std::env::var("SPSTACK_MATRIX_ONLY").ok();
    let handles: Vec<_> = cells()
        .into_iter()
        .filter(|c| only.as_ref().is_none_or(|o| c.name().contains(o.as_str())))
        .enumerate()
        .map(|(id, cell)| {
            let (pki, gate) = (pki.clone(), gate.clone());
            let task = tokio::spawn(async move {
                let n = if cell.alone() { jobs as u32 } else { 1 };
                let _slot = gate.acquire_many_owned(n).await.expect("never closed");
                let t = Instant::now();
                let o = tokio::spawn(run(cell, pki, id));
                // aborting the cell drops its peer process (kill_on_drop)
                let abort = o.abort_handle();
                let o = match tokio::time::timeout(Duration::from_secs(180), o).await {
                    Ok(Ok(o)) => o,
                    Ok(Err(e)) if e.is_panic() => Outcome::Fail(panic_text(e.into_panic())),
                    Ok(Err(e)) => Outcome::Fail(e.to_string()),
                    Err(_) => {
                        abort.abort();
                        Outcome::Fail("no result within 180 s".into())
                    }
                };
                eprintln!(
                    "[{:>5.1}s] {}: {o:?}",
                    t.elapsed().as_secs_f64(),
                    cell.name()
                );
                o
            });
            (cell, task)
        })
        .collect();
    let mut results = Vec::new();
    for (cell, h) in handles {
        results.push((cell, h.await.expect("a cell's runner")));
    }
    eprintln!("matrix: {} cells in {:?}", results.len(), t0.elapsed());
    let md = markdown(&results);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/MATRIX.md");
    if only.is_none() {
        std::fs::write(&path, &md).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(c, o)| match o {
            Outcome::Fail(why) => Some(format!("{}: {why}", c.name())),
            _ => None,
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} cells failed (table in {}):\n{}",
        failed.len(),
        path.display(),
        failed.join("\n")
    );
}
