//! `spcat bench`: PUSH/PULL throughput or REQ/REP latency over any URL
//! spcat speaks, one side per process (`--push` against `--pull`, `--req`
//! against `--rep`), or both ends in this process (`--loopback`). Each
//! measuring side prints one summary line on stdout.
//!
//! Throughput is measured where the messages arrive, from the first
//! message to the last (as nng's `local_thr`): connection set-up is not in
//! it. The sender reports its own rate too: how fast `send` took them,
//! which with bounded queues is the receiver's pace plus the queue's
//! worth. Latency is the round trip of one request at a time, each timed
//! alone; p50 and p99 are of those times. MB/s counts bodies, 10^6 bytes.

use std::time::{Duration, Instant};

use spstack::{Error, Options, Protocol, Socket};

use crate::{socket_builder, strerror, Tls};

fn usage_text() -> &'static str {
    "usage: spcat bench (--push | --pull | --req | --rep) (--dial <url> | --listen <url>)
                   [--size <bytes>] [--count <n>] [--recv-timeout <secs>] [-v]
                   [--cacert <file>] [--cert <file>] [--key <file>] [--insecure]
       spcat bench --loopback [--latency] [--url <url>] [--size <bytes>] [--count <n>]
  --push / --pull   throughput: PUSH sends <count> messages of <size> bytes,
                    PULL receives them and reports msgs/s and MB/s from the
                    first message to the last
  --req / --rep     latency: REQ sends <count> requests one at a time, REP
                    echoes them; REQ reports p50 and p99 of the round trips
  --loopback        both ends in this process, over <url> (default
                    tcp://127.0.0.1:0; inproc:// and ipc:// work too);
                    --latency for REQ/REP instead of PUSH/PULL
  --size 64, --count 10000 by default (both sides need the same --count);
  a side gives up after --recv-timeout (10 s) without a message to
  receive or a peer to send to.
  -v prints \"Listening at: <url>\" first (port 0 resolved)"
}

fn usage(msg: &str) -> i32 {
    eprintln!("spcat bench: {msg}\n{}", usage_text());
    1
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Push,
    Pull,
    Req,
    Rep,
}

impl Role {
    fn protocol(self) -> Protocol {
        match self {
            Role::Push => Protocol::Push0,
            Role::Pull => Protocol::Pull0,
            Role::Req => Protocol::Req0,
            Role::Rep => Protocol::Rep0,
        }
    }
}

struct Bench {
    size: usize,
    count: u64,
    recv_timeout: Duration,
}

/// What a run measured, or why it stopped.
type Outcome = Result<String, String>;

fn mb(bytes: f64) -> f64 {
    bytes / 1e6
}

fn throughput(what: &str, url: &str, b: &Bench, n: u64, took: Duration) -> String {
    let secs = took.as_secs_f64();
    let (msgs, bytes) = if secs > 0.0 {
        (n as f64 / secs, mb((n * b.size as u64) as f64) / secs)
    } else {
        (0.0, 0.0)
    };
    format!(
        "bench {what} {url}: {n} msgs × {} B in {secs:.3} s: {msgs:.0} msgs/s, {bytes:.2} MB/s",
        b.size
    )
}

/// The `p`-th percentile (0..=100) of sorted `v`, nearest rank.
fn percentile(v: &[Duration], p: usize) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * v.len()).div_ceil(100).clamp(1, v.len());
    v[rank - 1]
}

fn latency(url: &str, b: &Bench, mut rtts: Vec<Duration>, took: Duration) -> String {
    rtts.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let per_sec = if took.is_zero() {
        0.0
    } else {
        rtts.len() as f64 / took.as_secs_f64()
    };
    format!(
        "bench req/rep {url}: {} round trips × {} B: p50 {:.1} us, p99 {:.1} us, min {:.1} us, max {:.1} us, {per_sec:.0} round trips/s",
        rtts.len(),
        b.size,
        us(percentile(&rtts, 50)),
        us(percentile(&rtts, 99)),
        us(rtts.first().copied().unwrap_or_default()),
        us(rtts.last().copied().unwrap_or_default()),
    )
}

async fn recv(sock: &Socket, b: &Bench, got: u64) -> Result<spstack::Message, String> {
    match tokio::time::timeout(b.recv_timeout, sock.recv()).await {
        Ok(Ok(m)) => Ok(m),
        Ok(Err(e)) => Err(format!(
            "receive failed after {got} of {}: {}",
            b.count,
            strerror(&e)
        )),
        Err(_) => Err(format!(
            "no message for {:?} after {got} of {}",
            b.recv_timeout, b.count
        )),
    }
}

async fn push(sock: &Socket, url: &str, b: &Bench) -> Outcome {
    let body = vec![0x5a; b.size];
    let start = Instant::now();
    for _ in 0..b.count {
        sock.send(body.clone())
            .await
            .map_err(|e| format!("send failed: {}", strerror(&e)))?;
    }
    let took = start.elapsed();
    // every message written (or counted dropped) before the summary
    let stats = sock.shutdown().await;
    if stats.total_drops() > 0 {
        return Err(format!(
            "{} messages dropped:\n{stats}",
            stats.total_drops()
        ));
    }
    Ok(throughput("push (send)", url, b, b.count, took))
}

async fn pull(sock: &Socket, url: &str, b: &Bench) -> Outcome {
    let first = recv(sock, b, 0).await?;
    check_size(&first, b)?;
    let start = Instant::now();
    for got in 1..b.count {
        let m = recv(sock, b, got).await?;
        check_size(&m, b)?;
    }
    Ok(throughput("pull", url, b, b.count, start.elapsed()))
}

fn check_size(m: &spstack::Message, b: &Bench) -> Result<(), String> {
    if m.body().len() == b.size {
        Ok(())
    } else {
        Err(format!(
            "a message of {} bytes, not {} (the sides need the same --size)",
            m.body().len(),
            b.size
        ))
    }
}

async fn req(sock: &Socket, url: &str, b: &Bench) -> Outcome {
    let body = vec![0x5a; b.size];
    let mut rtts = Vec::with_capacity(b.count.min(10_000_000) as usize);
    let start = Instant::now();
    for i in 0..b.count {
        let t = Instant::now();
        sock.send(body.clone())
            .await
            .map_err(|e| format!("send failed: {}", strerror(&e)))?;
        let m = recv(sock, b, i).await?;
        rtts.push(t.elapsed());
        check_size(&m, b)?;
    }
    Ok(latency(url, b, rtts, start.elapsed()))
}

async fn rep(sock: &Socket, b: &Bench) -> Result<(), String> {
    for got in 0..b.count {
        let m = recv(sock, b, got).await?;
        sock.send(m.body())
            .await
            .map_err(|e| format!("send failed: {}", strerror(&e)))?;
    }
    sock.shutdown().await;
    Ok(())
}

fn build(role: Role, tls: &Tls, url: &str, b: &Bench) -> Result<Socket, String> {
    // a sender whose receiver went away (a PULL that gave up, a REP that
    // exited) must not wait for a pipe forever either
    socket_builder(
        role.protocol(),
        Options::default().send_timeout(Some(b.recv_timeout)),
        tls,
        std::iter::once(url),
    )
    .map(|b| b.build())
}

async fn open(sock: &Socket, listen: bool, url: &str, verbose: bool) -> Result<String, String> {
    let ep = if listen {
        sock.listen(url).await
    } else {
        // the other side may still be starting: its listener appears later
        let mut tries = 0;
        loop {
            match sock.dial(url).await {
                Err(Error::Io(e))
                    if tries < 100 && e.kind() == std::io::ErrorKind::ConnectionRefused =>
                {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                r => break r,
            }
        }
    }
    .map_err(|e| {
        let act = if listen { "listen" } else { "dial" };
        format!("Unable to {act} on {url}: {} ({e})", strerror(&e))
    })?;
    let bound = ep.url().to_string();
    if listen && verbose {
        println!("Listening at: {bound}");
    }
    Ok(if listen { bound } else { url.to_string() })
}

async fn one_side(
    role: Role,
    listen: bool,
    url: &str,
    b: &Bench,
    tls: &Tls,
    verbose: bool,
) -> Result<Option<String>, String> {
    let sock = build(role, tls, url, b)?;
    let url = open(&sock, listen, url, verbose).await?;
    match role {
        Role::Push => push(&sock, &url, b).await.map(Some),
        Role::Pull => pull(&sock, &url, b).await.map(Some),
        Role::Req => req(&sock, &url, b).await.map(Some),
        Role::Rep => rep(&sock, b).await.map(|()| None),
    }
}

async fn loopback(latency: bool, url: &str, b: &Bench, tls: &Tls) -> Result<String, String> {
    let (server, client) = if latency {
        (Role::Rep, Role::Req)
    } else {
        (Role::Pull, Role::Push)
    };
    let s = build(server, tls, url, b)?;
    let bound = open(&s, true, url, false).await?;
    let c = build(client, tls, &bound, b)?;
    open(&c, false, &bound, false).await?;
    if latency {
        let (served, measured) = tokio::join!(rep(&s, b), req(&c, &bound, b));
        served?;
        measured
    } else {
        let (sent, received) = tokio::join!(push(&c, &bound, b), pull(&s, &bound, b));
        sent?;
        received
    }
}

/// Runs `spcat bench` with the words after `bench`; returns the exit code.
pub fn run(words: &[Vec<u8>]) -> i32 {
    let mut role = None;
    let mut addr: Option<(bool, String)> = None;
    let mut loop_back = false;
    let mut lat = false;
    let mut url = "tcp://127.0.0.1:0".to_string();
    let mut b = Bench {
        size: 64,
        count: 10_000,
        recv_timeout: Duration::from_secs(10),
    };
    let mut tls = Tls::default();
    let mut verbose = false;
    let mut it = words
        .iter()
        .map(|w| String::from_utf8_lossy(w).into_owned());
    while let Some(w) = it.next() {
        let (flag, inline) = match w.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (w.clone(), None),
        };
        let mut value = |flag: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or(format!("{flag} requires an argument"))
        };
        let number = |flag: &str, v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag} {v:?}: a number"))
        };
        let file =
            |flag: &str, v: String| std::fs::read(&v).map_err(|e| format!("{flag} {v}: {e}"));
        let r: Result<(), String> = match flag.as_str() {
            "--push" | "--pull" | "--req" | "--rep" => {
                role = Some(match flag.as_str() {
                    "--push" => Role::Push,
                    "--pull" => Role::Pull,
                    "--req" => Role::Req,
                    _ => Role::Rep,
                });
                Ok(())
            }
            "--loopback" => {
                loop_back = true;
                Ok(())
            }
            "--latency" => {
                lat = true;
                Ok(())
            }
            "--dial" | "--connect" => value(&flag).map(|v| addr = Some((false, v))),
            "--listen" | "--bind" => value(&flag).map(|v| addr = Some((true, v))),
            "--url" => value("--url").map(|v| url = v),
            "--size" => value("--size")
                .and_then(|v| number("--size", v))
                .map(|n| b.size = n as usize),
            "--count" | "-C" => value("--count")
                .and_then(|v| number("--count", v))
                .and_then(|n| {
                    if n == 0 {
                        Err("--count: at least 1".to_string())
                    } else {
                        b.count = n;
                        Ok(())
                    }
                }),
            "--recv-timeout" => value("--recv-timeout")
                .and_then(|v| number("--recv-timeout", v))
                .map(|n| b.recv_timeout = Duration::from_secs(n.max(1))),
            "--cacert" => value(&flag)
                .and_then(|v| file(&flag, v))
                .map(|f| tls.cacert = Some(f)),
            "--cert" | "-E" => value(&flag)
                .and_then(|v| file(&flag, v))
                .map(|f| tls.cert = Some(f)),
            "--key" => value(&flag)
                .and_then(|v| file(&flag, v))
                .map(|f| tls.key = Some(f)),
            "--insecure" | "-k" => {
                tls.insecure = true;
                Ok(())
            }
            "-v" | "--verbose" => {
                verbose = true;
                Ok(())
            }
            "--help" | "-h" => {
                println!("{}", usage_text());
                return 0;
            }
            other => Err(format!("unknown argument {other:?}")),
        };
        if let Err(e) = r {
            return usage(&e);
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("spcat bench: {e}");
            return 1;
        }
    };
    let result = match (loop_back, role, addr) {
        (true, None, None) => rt.block_on(loopback(lat, &url, &b, &tls)).map(Some),
        (false, Some(role), Some((listen, url))) => {
            rt.block_on(one_side(role, listen, &url, &b, &tls, verbose))
        }
        (true, ..) => {
            return usage(
                "--loopback runs both ends: no --push/--pull/--req/--rep, --dial or --listen",
            )
        }
        (false, None, _) => return usage("one of --push, --pull, --req, --rep or --loopback"),
        (false, Some(_), None) => return usage("--dial <url> or --listen <url>"),
    };
    match result {
        Ok(line) => {
            if let Some(l) = line {
                println!("{l}");
            }
            0
        }
        Err(e) => {
            eprintln!("spcat bench: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&v, 50), Duration::from_micros(50));
        assert_eq!(percentile(&v, 99), Duration::from_micros(99));
        assert_eq!(percentile(&v[..1], 99), Duration::from_micros(1));
        assert_eq!(percentile(&[], 50), Duration::ZERO);
        let few: Vec<Duration> = (1..=3).map(Duration::from_micros).collect();
        assert_eq!(percentile(&few, 50), Duration::from_micros(2));
        assert_eq!(percentile(&few, 99), Duration::from_micros(3));
    }
}
