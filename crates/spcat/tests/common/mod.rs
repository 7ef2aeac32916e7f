//! What the spcat suites share: running a program with a time limit and
//! collecting its output (watched while it runs), and starting listeners
//! that choose their own port and say which.
#![allow(dead_code)] // each suite uses a different part

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The spcat binary under test.
pub const SPCAT: &str = env!("CARGO_BIN_EXE_spcat");

pub struct Out {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
    /// When the exit was seen (at most 10 ms late), or the kill.
    pub exited: Instant,
}

/// What a child printed on stdout so far, and whether it closed stdout.
#[derive(Default)]
struct Seen {
    bytes: Vec<u8>,
    eof: bool,
}

/// A running child whose stdout and stderr are read as they come.
pub struct Proc {
    child: Child,
    what: String,
    stdout: Arc<(Mutex<Seen>, Condvar)>,
    reader: JoinHandle<()>,
    stderr: JoinHandle<String>,
}

pub fn spawn(prog: &str, args: &[&str]) -> Proc {
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {prog}: {e}"));
    let mut so = child.stdout.take().expect("stdout piped");
    let mut se = child.stderr.take().expect("stderr piped");
    let stdout: Arc<(Mutex<Seen>, Condvar)> = Arc::default();
    let seen = stdout.clone();
    let reader = thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            let n = so.read(&mut buf).unwrap_or(0);
            let (lock, cv) = &*seen;
            let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
            if n == 0 {
                s.eof = true;
            } else {
                s.bytes.extend_from_slice(&buf[..n]);
            }
            cv.notify_all();
            if n == 0 {
                return;
            }
        }
    });
    let stderr = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    });
    Proc {
        child,
        what: format!("{prog} {args:?}"),
        stdout,
        reader,
        stderr,
    }
}

/// `prog` with its stdout line-buffered: nngcat prints through C stdio,
/// which holds "Listening at: ..." until exit when stdout is a pipe.
pub fn spawn_line_buffered(prog: &str, args: &[&str]) -> Proc {
    if prog == SPCAT {
        return spawn(prog, args);
    }
    let mut a = vec!["-oL", prog];
    a.extend_from_slice(args);
    spawn("stdbuf", &a)
}

impl Proc {
    /// The rest of the first stdout line that starts with `prefix`, once
    /// printed; `None` when stdout closes first or `limit` passes.
    pub fn line_after(&self, prefix: &str, limit: Duration) -> Option<String> {
        let end = Instant::now() + limit;
        let (lock, cv) = &*self.stdout;
        let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let text = String::from_utf8_lossy(&s.bytes);
            let complete = match text.rfind('\n') {
                Some(i) => &text[..i],
                None => "",
            };
            if let Some(rest) = complete.lines().find_map(|l| l.strip_prefix(prefix)) {
                return Some(rest.to_string());
            }
            let now = Instant::now();
            if s.eof || now >= end {
                return None;
            }
            s = cv
                .wait_timeout(s, end - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// What was printed on stdout so far.
    pub fn stdout_so_far(&self) -> Vec<u8> {
        let (lock, _) = &*self.stdout;
        lock.lock().unwrap_or_else(|e| e.into_inner()).bytes.clone()
    }
}

/// Waits at most `limit`, then kills; collects the output.
pub fn finish(mut p: Proc, limit: Duration) -> Out {
    let end = Instant::now() + limit;
    let (code, exited) = loop {
        if let Ok(Some(st)) = p.child.try_wait() {
            break (st.code(), Instant::now());
        }
        if Instant::now() > end {
            let _ = p.child.kill();
            let _ = p.child.wait();
            break (None, Instant::now());
        }
        thread::sleep(Duration::from_millis(10));
    };
    let _ = p.reader.join();
    let stdout = std::mem::take(&mut p.stdout.0.lock().unwrap_or_else(|e| e.into_inner()).bytes);
    Out {
        code,
        stdout,
        stderr: p.stderr.join().unwrap_or_default(),
        exited,
    }
}

/// Runs `prog` to completion, killed after `limit`.
pub fn run(prog: &str, args: &[&str], limit: Duration) -> Out {
    finish(spawn(prog, args), limit)
}

/// Starts a listener that binds what it is given (port 0 included) and
/// says where with `-v` ("Listening at: URL", as spcat and nngcat print
/// it); returns it and that URL. `args` must hold `-v`.
pub fn listening(prog: &str, args: &[&str]) -> (Proc, String) {
    assert!(args.contains(&"-v"), "{prog} {args:?}: -v prints the URL");
    let p = spawn_line_buffered(prog, args);
    match p.line_after("Listening at: ", Duration::from_secs(10)) {
        Some(url) => (p, url),
        None => {
            let what = p.what.clone();
            let o = finish(p, Duration::from_secs(1));
            panic!(
                "{what} did not say where it listens ({:?}): {}",
                o.code, o.stderr
            )
        }
    }
}

/// For a listener that cannot report a port it chose (nngcat on ws://
/// prints `:0`): starts it on a port that was free a moment ago, and again
/// on another when it exits saying the address is in use (someone took the
/// port in between), at most 10 times. `args(port)` must hold `-v`.
pub fn listening_on_free_port(prog: &str, args: impl Fn(u16) -> Vec<String>) -> (Proc, u16) {
    for _ in 0..10 {
        let port = unused_port();
        let a = args(port);
        let a: Vec<&str> = a.iter().map(|s| s.as_str()).collect();
        assert!(a.contains(&"-v"), "{prog} {a:?}: -v says it listens");
        let p = spawn_line_buffered(prog, &a);
        if p.line_after("Listening at: ", Duration::from_secs(10))
            .is_some()
        {
            return (p, port);
        }
        let o = finish(p, Duration::from_secs(1));
        assert!(
            o.stderr.contains("Address in use") || o.stderr.contains("Address already in use"),
            "{prog} {a:?} did not listen ({:?}): {}",
            o.code,
            o.stderr
        );
    }
    panic!("{prog}: ten ports in a row were taken before it could bind one")
}

/// A port nobody had bound a moment ago. Only for a listener that cannot
/// choose its own, and always with a retry: see `listening_on_free_port`.
fn unused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
