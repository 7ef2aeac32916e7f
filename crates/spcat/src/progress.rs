//! `--progress`: how a long run goes, on stderr, from the socket's own
//! counters (`Socket::stats`): messages sent and received with their rates
//! over the last second, drops, pipes. On a terminal one line is rewritten
//! in place; elsewhere (`--progress` forced into a file or a pipe) one line
//! a second. Never a byte on stdout, which stays nngcat's.

use std::io::{IsTerminal, Write};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use spstack::{Socket, Stats};

struct State {
    sock: Socket,
    started: Instant,
    tty: bool,
    /// Counts and time of the last line, for its rates; `None` once ended.
    last: Mutex<Option<(Instant, Stats)>>,
}

static STATE: OnceLock<State> = OnceLock::new();

const EVERY: Duration = Duration::from_secs(1);

fn rate(n: u64, over: Duration) -> f64 {
    if over.is_zero() {
        0.0
    } else {
        n as f64 / over.as_secs_f64()
    }
}

fn line(s: &Stats, prev: &Stats, over: Duration, elapsed: Duration) -> String {
    let pipes = s.pipes_opened.saturating_sub(s.pipes_closed);
    format!(
        "spcat: {} sent ({:.0}/s), {} received ({:.0}/s), {} dropped, {} pipe{}, {:.1} s",
        s.msgs_out,
        rate(s.msgs_out - prev.msgs_out.min(s.msgs_out), over),
        s.msgs_in,
        rate(s.msgs_in - prev.msgs_in.min(s.msgs_in), over),
        s.total_drops(),
        pipes,
        if pipes == 1 { "" } else { "s" },
        elapsed.as_secs_f64()
    )
}

fn show(st: &State, text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = if st.tty {
        // back to the start of the line and clear it: the line is rewritten
        write!(err, "\r\x1b[K{text}")
    } else {
        writeln!(err, "{text}")
    };
    let _ = err.flush();
}

/// Shows progress of `sock` every second until [`end`]; must run inside
/// the tokio runtime.
pub fn start(sock: Socket) {
    let st = State {
        sock,
        started: Instant::now(),
        tty: std::io::stderr().is_terminal(),
        last: Mutex::new(Some((Instant::now(), Stats::default()))),
    };
    if STATE.set(st).is_err() {
        return;
    }
    tokio::spawn(async {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + EVERY, EVERY);
        loop {
            tick.tick().await;
            let Some(st) = STATE.get() else { return };
            let mut last = st.last.lock().unwrap_or_else(|e| e.into_inner());
            let Some((at, prev)) = last.take() else {
                return;
            };
            let now = Instant::now();
            let s = st.sock.stats();
            show(st, &line(&s, &prev, now - at, now - st.started));
            *last = Some((now, s));
        }
    });
}

/// The final line (the whole run's counts and average rates), ending the
/// terminal's line; nothing when progress was never started.
pub fn end() {
    let Some(st) = STATE.get() else { return };
    let mut last = st.last.lock().unwrap_or_else(|e| e.into_inner());
    if last.take().is_none() {
        return;
    }
    let elapsed = st.started.elapsed();
    let s = st.sock.stats();
    let text =
        line(&s, &Stats::default(), elapsed, elapsed).replacen("spcat: ", "spcat: done: ", 1);
    show(st, &text);
    if st.tty {
        let _ = writeln!(std::io::stderr());
    }
}
