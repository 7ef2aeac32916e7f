//! spcat for long runs: `--progress` on stderr (forced, refused, and on by
//! itself when stderr is a terminal) without a byte more on stdout, and
//! `spcat bench` (throughput and latency, in one process or two).

use std::process::Command;
use std::time::Duration;

mod common;

use common::{finish, listening, run, Out, SPCAT};

const WAIT: Duration = Duration::from_secs(20);

/// A PUSH listener sending three messages a second apart with `flags`,
/// drained by a PULL; returns spcat's output and its URL.
fn push_three(flags: &[&str]) -> (Out, String) {
    let mut args = vec![
        "--push0",
        "--listen",
        "tcp://127.0.0.1:0",
        "-v",
        "--count",
        "3",
        "--interval",
        "1",
        "--data",
        "x",
    ];
    args.extend_from_slice(flags);
    let (p, url) = listening(SPCAT, &args);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pull = spstack::pull0().build();
        pull.dial(&url).await.expect("dial the PUSH");
        for _ in 0..3 {
            let m = tokio::time::timeout(WAIT, pull.recv())
                .await
                .expect("a message in time")
                .unwrap();
            assert_eq!(m.body(), b"x");
        }
    });
    (finish(p, WAIT), url)
}

#[test]
fn progress_goes_to_stderr_only_and_only_when_asked_or_on_a_terminal() {
    let (o, url) = push_three(&["--progress"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    // stdout is exactly what nngcat prints for this command line
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("Listening at: {url}\n")
    );
    // not a terminal: one line a second, then the whole run's line
    let last = o.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("spcat: done: 3 sent (") && last.contains(", 0 dropped, "),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.lines().all(|l| l.starts_with("spcat: ")),
        "{}",
        o.stderr
    );
    assert!(
        !o.stderr.contains('\r'),
        "no terminal, no rewriting: {:?}",
        o.stderr
    );

    // refused, and by default into a pipe: nothing
    for flags in [&["--no-progress"][..], &[]] {
        let (o, url) = push_three(flags);
        assert_eq!(o.code, Some(0), "{flags:?}: {}", o.stderr);
        assert_eq!(o.stderr, "", "{flags:?}");
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            format!("Listening at: {url}\n")
        );
    }
}

/// spcat's output with a terminal for stdout and stderr (`script`).
fn on_a_terminal(args: &str) -> String {
    let o = Command::new("script")
        .args(["-q", "-e", "-c", &format!("{SPCAT} {args}"), "/dev/null"])
        .output()
        .expect("script (util-linux) runs a command on a terminal");
    assert!(o.status.success(), "{:?}", o);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn on_a_terminal_progress_is_on_by_itself_and_rewrites_its_line() {
    // a count run that ends at its receive timeout, having received nothing
    let run = "--pull0 --listen tcp://127.0.0.1:0 --count 2 --recv-timeout 1";
    let shown = on_a_terminal(run);
    assert!(
        shown.contains("\r\x1b[Kspcat: done: 0 sent (0/s), 0 received (0/s), 0 dropped, 0 pipes"),
        "{shown:?}"
    );
    let quiet = on_a_terminal(&format!("{run} --no-progress"));
    assert!(!quiet.contains("spcat:"), "{quiet:?}");
    // a run with neither a count nor an interval shows nothing either
    let once = on_a_terminal("--pull0 --listen tcp://127.0.0.1:0 --recv-timeout 1");
    assert!(!once.contains("spcat:"), "{once:?}");
}

/// The numbers of a bench line, in order (`3000`, `64`, `0.021`, ...).
fn numbers(line: &str) -> Vec<f64> {
    line.split_whitespace()
        .filter_map(|w| w.trim_end_matches([',', ':']).parse().ok())
        .collect()
}

fn bench(args: &[&str]) -> (Out, String) {
    let mut a = vec!["bench"];
    a.extend_from_slice(args);
    let o = run(SPCAT, &a, WAIT);
    let s = String::from_utf8_lossy(&o.stdout).into_owned();
    (o, s)
}

/// `bench <what> <url>: N msgs × S B in T s: M msgs/s, B MB/s`: the
/// counts, and MB/s consistent with msgs/s and the size.
fn check_throughput(line: &str, what: &str, n: u64, size: u64) {
    let head = format!("bench {what} ");
    assert!(line.starts_with(&head), "{line}");
    let tail = &line[line.find(": ").expect("url: summary") + 2..];
    let v = numbers(tail);
    assert_eq!(v.len(), 5, "{line}");
    assert_eq!((v[0] as u64, v[1] as u64), (n, size), "{line}");
    let (secs, msgs, mbs) = (v[2], v[3], v[4]);
    assert!(secs > 0.0 && msgs > 0.0 && mbs > 0.0, "{line}");
    let want = msgs * size as f64 / 1e6;
    assert!((mbs - want).abs() <= 0.01 + want * 0.01, "{line}: {want}");
}

fn check_latency(line: &str, n: u64, size: u64) {
    assert!(line.starts_with("bench req/rep "), "{line}");
    let tail = &line[line.find(": ").expect("url: summary") + 2..];
    assert!(tail.contains(" us, p99 "), "{line}");
    let v = numbers(tail);
    assert_eq!(v.len(), 7, "{line}");
    assert_eq!((v[0] as u64, v[1] as u64), (n, size), "{line}");
    let (p50, p99, min, max) = (v[2], v[3], v[4], v[5]);
    assert!(
        min > 0.0 && min <= p50 && p50 <= p99 && p99 <= max,
        "{line}"
    );
    assert!(v[6] > 0.0, "{line}");
}

#[test]
fn bench_in_one_process() {
    let (o, out) = bench(&["--loopback", "--count", "3000", "--size", "100"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(out.lines().count(), 1, "one summary line: {out}");
    check_throughput(out.trim_end(), "pull", 3000, 100);

    let (o, out) = bench(&[
        "--loopback",
        "--latency",
        "--url",
        "inproc://spcat-bench-test",
        "--count",
        "300",
    ]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains(" inproc://spcat-bench-test: "), "{out}");
    check_latency(out.trim_end(), 300, 64);
}

#[test]
fn bench_across_two_processes() {
    // PUSH/PULL: the receiver measures, the sender reports its pace too
    let (pull, url) = listening(
        SPCAT,
        &[
            "bench",
            "--pull",
            "--listen",
            "tcp://127.0.0.1:0",
            "-v",
            "--count",
            "4000",
            "--size",
            "256",
        ],
    );
    let (o, push) = bench(&["--push", "--dial", &url, "--count", "4000", "--size", "256"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    check_throughput(push.trim_end(), "push (send)", 4000, 256);
    let p = finish(pull, WAIT);
    assert_eq!(p.code, Some(0), "{}", p.stderr);
    let lines: Vec<String> = String::from_utf8_lossy(&p.stdout)
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines[0], format!("Listening at: {url}"));
    check_throughput(&lines[1], "pull", 4000, 256);

    // REQ/REP: the requester measures
    let (rep, url) = listening(
        SPCAT,
        &[
            "bench",
            "--rep",
            "--listen",
            "tcp://127.0.0.1:0",
            "-v",
            "--count",
            "200",
        ],
    );
    let (o, req) = bench(&["--req", "--dial", &url, "--count", "200"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    check_latency(req.trim_end(), 200, 64);
    let r = finish(rep, WAIT);
    assert_eq!(r.code, Some(0), "{}", r.stderr);

    // sides that disagree on the size: the receiver says so and fails
    let (pull, url) = listening(
        SPCAT,
        &[
            "bench",
            "--pull",
            "--listen",
            "tcp://127.0.0.1:0",
            "-v",
            "--count",
            "10",
            "--size",
            "8",
        ],
    );
    // one message: the PULL exits on it, so a longer run could leave the
    // PUSH with nobody to send the rest to
    let (o, _) = bench(&["--push", "--dial", &url, "--count", "1", "--size", "9"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let p = finish(pull, WAIT);
    assert_eq!(p.code, Some(1));
    assert!(
        p.stderr.contains("a message of 9 bytes, not 8"),
        "{}",
        p.stderr
    );
}

#[test]
fn a_bench_sender_whose_receiver_stops_reading_gives_up() {
    // a PULL that never reads: queues and kernel buffers fill, and the PUSH
    // has no room to send into; it says so instead of waiting forever
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pull = spstack::pull0().build();
    let url = rt.block_on(async {
        let ep = pull.listen("tcp://127.0.0.1:0").await.unwrap();
        ep.url().to_string()
    });
    let (o, out) = bench(&[
        "--push",
        "--dial",
        &url,
        "--count",
        "200",
        "--size",
        "1000000",
        "--recv-timeout",
        "1",
    ]);
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert!(o.stderr.contains("send failed"), "{}", o.stderr);
    assert_eq!(out, "");
    drop(pull);
}

#[test]
fn bench_usage_mistakes() {
    for (args, why) in [
        (&["--push"][..], "--dial <url> or --listen <url>"),
        (&["--dial", "tcp://127.0.0.1:1"], "one of --push"),
        (&["--loopback", "--push"], "--loopback runs both ends"),
        (&["--loopback", "--count", "0"], "at least 1"),
        (&["--loopback", "--size", "big"], "a number"),
    ] {
        let (o, out) = bench(args);
        assert_eq!(o.code, Some(1), "{args:?}");
        assert!(o.stderr.contains(why), "{args:?}: {}", o.stderr);
        assert!(out.is_empty(), "{args:?}: {out}");
    }
}
