//! `survey_lat <bind-url> <msg-size> <rounds> <nresp>`: SURVEYOR round trip.
//!
//! The parent listens with SURVEYOR (survey time 1 s) and starts `nresp` copies
//! of this binary in the hidden role `--respondent K URL SIZE`. Each one dials
//! with RESPONDENT and echoes every survey (the received message object, size
//! checked) until the surveyor hangs up.
//!
//! Once the surveyor sees every pipe, it runs 1,000 untimed warm-up surveys
//! and then `rounds` timed ones. Each survey is timed from `send` until all
//! `nresp` responses have arrived, not until the deadline. The next survey then
//! starts at once on the same context, which ends the previous one. If a survey
//! reaches its deadline with responses missing, it counts as `incomplete` and
//! its time (about 1 s) stays in the sample.
//!
//! It prints
//! `RESULT lib=spstack test=survey url= size= nresp= n= mean_us= p50_us= p99_us= min_us= max_us= surveys_per_s= resp_per_s= incomplete= late_drops=`.
//! `resp_per_s` is the number of responses collected over the timed loop's wall time.
//! The anchors have no survey mode; compare with REQ/REP (`remote_lat`) and `raw_lat`.
#[path = "common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spstack::{DropReason, Error};

const TOOL: &str = "survey_lat";
const MAX_RESP: usize = 64;
const READY_WAIT: Duration = Duration::from_secs(20);
const SURVEY_TIME: Duration = Duration::from_secs(1);

#[tokio::main]
async fn main() {
    common::run(body()).await
}

fn usage() -> ! {
    eprintln!("usage: {TOOL} <url> <msg-size> <rounds> <nresp>");
    std::process::exit(1)
}

async fn body() {
    common::hard_limit(TOOL);
    let a: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if a.first().map(String::as_str) == Some("--respondent") {
        if a.len() != 4 {
            usage();
        }
        let k: usize = a[1].parse().unwrap_or_else(|_| usage());
        let size: usize = a[3].parse().unwrap_or_else(|_| usage());
        return respondent(k, &a[2], size).await;
    }
    if a.len() != 4 {
        usage();
    }
    let size: usize = a[1].parse().unwrap_or_else(|_| usage());
    let rounds: usize = a[2].parse().unwrap_or_else(|_| usage());
    let nresp: usize = a[3].parse().unwrap_or_else(|_| usage());
    if rounds == 0 || nresp == 0 || nresp > MAX_RESP {
        usage();
    }
    surveyor(&a[0], size, rounds, nresp).await
}

async fn surveyor(url: &str, size: usize, rounds: usize, nresp: usize) {
    let sock = spstack::typed::surveyor0()
        .options(spstack::Options::default().recv_max_size(common::RECV_MAX))
        .build();
    common::watch(sock.socket());
    sock.set_deadline(SURVEY_TIME);
    let _ep = sock
        .listen(url)
        .await
        .unwrap_or_else(|e| common::die(TOOL, format_args!("listen {url}: {e}")));

    let exe = std::env::current_exe().unwrap_or_else(|e| common::die(TOOL, e));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let mut kids: Vec<Child> = Vec::with_capacity(nresp);
    for k in 0..nresp {
        let mut child = Command::new(&exe)
            .args(["--respondent", &k.to_string(), url, &size.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| common::die(TOOL, format_args!("spawn respondent {k}: {e}")));
        let out = child.stdout.take().expect("piped stdout");
        let tx = ready_tx.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if l == "READY" {
                    let _ = tx.send(k);
                } else {
                    println!("{l}");
                }
            }
        });
        kids.push(child);
    }
    drop(ready_tx);
    let waited = tokio::time::timeout(READY_WAIT, async {
        for _ in 0..nresp {
            if ready_rx.recv().await.is_none() {
                return false;
            }
        }
        while sock.pipes().len() < nresp {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    })
    .await;
    if waited != Ok(true) {
        reap(&mut kids, Duration::ZERO).await;
        common::die(
            TOOL,
            format_args!(
                "respondents not ready: {} pipes of {nresp} after {READY_WAIT:?}",
                sock.pipes().len()
            ),
        );
    }

    let mut incomplete = 0usize;
    for _ in 0..common::LAT_WARMUP {
        if survey(sock.socket(), size, nresp).await < nresp {
            incomplete += 1;
        }
    }
    if incomplete > 0 {
        eprintln!("[{TOOL}] {incomplete} warm-up surveys incomplete");
    }
    incomplete = 0;
    let late_before = sock.stats().drops(DropReason::Late);
    let mut v: Vec<u64> = Vec::with_capacity(rounds);
    let mut responses = 0usize;
    let start = Instant::now();
    for _ in 0..rounds {
        let t = Instant::now();
        let got = survey(sock.socket(), size, nresp).await;
        v.push(t.elapsed().as_nanos() as u64);
        responses += got;
        if got < nresp {
            incomplete += 1;
        }
        common::progress();
    }
    let total = start.elapsed().as_secs_f64();
    let late = sock.stats().drops(DropReason::Late) - late_before;
    let n = v.len();
    let sum: f64 = v.iter().map(|&x| x as f64).sum();
    v.sort_unstable();
    sock.close();
    reap(&mut kids, Duration::from_secs(5)).await;
    println!(
        "RESULT lib={} test=survey url={url} size={size} nresp={nresp} n={n} mean_us={:.2} p50_us={:.2} p99_us={:.2} min_us={:.2} max_us={:.2} surveys_per_s={:.0} resp_per_s={:.0} incomplete={incomplete} late_drops={late}",
        common::lib_name(),
        sum / n as f64 / 1e3,
        v[n / 2] as f64 / 1e3,
        v[(n * 99) / 100] as f64 / 1e3,
        v[0] as f64 / 1e3,
        v[n - 1] as f64 / 1e3,
        n as f64 / total,
        responses as f64 / total,
    );
}

/// One survey: send, then collect until `nresp` responses or the deadline.
/// Returns how many responses arrived.
async fn survey(sock: &spstack::Socket, size: usize, nresp: usize) -> usize {
    sock.send(sock.new_message(size))
        .await
        .unwrap_or_else(|e| common::die(TOOL, format_args!("send: {e}")));
    let mut got = 0;
    while got < nresp {
        match sock.recv().await {
            Ok(m) => {
                if m.body().len() != size {
                    common::die(
                        TOOL,
                        format_args!("response of {} bytes, expected {size}", m.body().len()),
                    );
                }
                got += 1;
            }
            Err(Error::TimedOut(_)) => break,
            Err(e) => common::die(TOOL, format_args!("recv: {e}")),
        }
    }
    got
}

/// Waits up to `grace` for every child to exit, then kills the rest.
async fn reap(kids: &mut [Child], grace: Duration) {
    let until = Instant::now() + grace;
    for (k, c) in kids.iter_mut().enumerate() {
        loop {
            match c.try_wait() {
                Ok(Some(st)) => {
                    if !st.success() {
                        eprintln!("[{TOOL}] respondent {k} exited with {st}");
                    }
                    break;
                }
                Ok(None) if Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(10)).await
                }
                _ => {
                    if !grace.is_zero() {
                        eprintln!("[{TOOL}] respondent {k} still running; killed");
                    }
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
            }
        }
    }
}

async fn respondent(k: usize, url: &str, size: usize) {
    let tool = "survey_lat-respondent";
    let sock = spstack::typed::respondent0()
        .options(spstack::Options::default().recv_max_size(common::RECV_MAX))
        .build();
    common::watch(sock.socket());
    let gone = Arc::new(tokio::sync::Notify::new());
    {
        let gone = gone.clone();
        sock.on_pipe_event(move |ev| {
            if let spstack::PipeEvent::RemovePost(..) = ev {
                gone.notify_one();
            }
            true
        });
    }
    let _ep = sock
        .dial_background(url)
        .unwrap_or_else(|e| common::die(tool, format_args!("dial {url}: {e}")));
    let t = Instant::now();
    while sock.pipes().is_empty() {
        if t.elapsed() > READY_WAIT {
            common::die(tool, format_args!("respondent {k}: not connected to {url}"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    {
        use std::io::Write;
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "READY");
        let _ = o.flush();
    }
    let mut n: u64 = 0;
    loop {
        let m = tokio::select! {
            biased;
            r = sock.recv() => r.unwrap_or_else(|e| common::die(tool, format_args!("recv: {e}"))),
            _ = gone.notified() => break,
        };
        if m.body().len() != size {
            common::die(
                tool,
                format_args!("got {} bytes, expected {size}", m.body().len()),
            );
        }
        sock.send(m)
            .await
            .unwrap_or_else(|e| common::die(tool, format_args!("send: {e}")));
        n += 1;
        common::progress();
    }
    eprintln!(
        "RESPONDENT lib={} k={k} url={url} size={size} echoed={n}",
        common::lib_name()
    );
}
