//! spcat from the shell: argument parsing, output formats and exit codes
//! against nngcat (when installed), interop with nanocat and pynng, decode.
//! Every child process is bounded by a timeout.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

mod common;

use common::{finish, listening, listening_on_free_port, run, spawn, Out, Proc, SPCAT};

const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pynng_peer.py");

fn spcat(args: &[&str]) -> Out {
    run(SPCAT, args, Duration::from_secs(10))
}

fn have(prog: &str, args: &[&str]) -> bool {
    Command::new(prog)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn have_nngcat() -> bool {
    have("nngcat", &["-V"])
}

fn have_pynng() -> bool {
    Command::new("python3")
        .args(["-c", "import pynng"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A fresh ipc URL.
fn ipc() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "ipc:///tmp/spcat-test-{}-{}.sock",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// What nngcat 1.5.2 prints to stderr (with exit code 1) for each line.
const USAGE: &[(&[&str], &str)] = &[
    (&[], "No address specified."),
    (&["--req0"], "No address specified."),
    (&["--dial", "ipc:///x"], "No protocol specified."),
    (&["--bogus"], "Option --bogus is invalid."),
    (&["--re"], "Option --re is ambiguous (specify in full)."),
    (&["--req0", "--dial"], "Option --dial requires argument."),
    (&["-vv"], "Option -vv is invalid."),
    (&["--req0", "--rep0"], "Only one protocol may be specified."),
    (
        &["--req0", "-l", "99999", "-D", "x"],
        "Integer argument too large.",
    ),
    (
        &["--req0", "-l", "abc", "-D", "x"],
        "Integer argument expected.",
    ),
    (&["--req0", "-l", "", "-D", "x"], "Empty integer argument."),
    (&["-C", "2147483648"], "Integer argument overflow."),
    (&["-d", "86401"], "Integer argument too large."),
    (&["--format", "xx"], "Invalid format specified."),
    (&["--hex", "-A"], "Format may be specified only once."),
    (
        &["-D", "x", "--data", "y"],
        "Data (--file, --data) may be specified only once.",
    ),
    (
        &["-F", "/nonexistent/spcat"],
        "Cannot open file /nonexistent/spcat: No such file or directory",
    ),
    (
        &["--pull0", "--listen", "ipc:///tmp/x", "-D", "x"],
        "Protocol does not support --file or --data.",
    ),
    (
        &["--sub0", "--listen", "ipc:///tmp/x", "-i", "1"],
        "Protocol does not support --interval.",
    ),
    (
        &["--push0", "--listen", "ipc:///tmp/x"],
        "Protocol requires either --file or --data.",
    ),
    (
        &["--pub0", "--listen", "ipc:///tmp/x", "-Q", "-D", "x"],
        "Protocol does not support --format options.",
    ),
    (
        &["--req0", "--dial", "ipc:///tmp/x", "stray", "-D", "x"],
        "Protocol requires either --file or --data.",
    ),
    (
        &["--rep0", "--listen", "ipc:///tmp/x", "-i", "3"],
        "Protocol does not support --interval.",
    ),
    (
        &["--pair0", "--listen", "ipc:///tmp/x", "-i", "3"],
        "Option --interval requires either --file or --data.",
    ),
    (
        &["--pull0", "--subscribe", "a", "--listen", "ipc:///tmp/x"],
        "Protocol does not support --subscribe.",
    ),
    (
        &["--pair1", "--compat", "--listen", "ipc:///tmp/x"],
        "Protocol does not support --compat.",
    ),
    (
        &["--pair0", "--compat", "-C", "2", "--listen", "ipc:///tmp/x"],
        "Options --count and --compat are incompatible.",
    ),
    (
        &["--pair0", "--compat", "--async", "--listen", "ipc:///tmp/x"],
        "Options --async and --compat are incompatible.",
    ),
    (
        &["--req0", "--dial", "foo://x", "-D", "x"],
        "Unable to create dialer for foo://x: Not supported",
    ),
    (
        &["--req0", "--listen", "foo", "-D", "x"],
        "Unable to create listener for foo: Invalid argument",
    ),
    (
        &["--pull0", "--dial", "tcp://127.0.0.1"],
        "Unable to create dialer for tcp://127.0.0.1: Address invalid",
    ),
    (
        &["--pull0", "--dial", "tcp://127.0.0.1:1"],
        "Unable to dial on tcp://127.0.0.1:1: Connection refused",
    ),
    (
        &["--pull0", "-x", "/tmp/spcat-none.sock"],
        "Unable to dial on ipc:////tmp/spcat-none.sock: Connection refused",
    ),
];

#[test]
fn usage_errors_as_nngcat() {
    let nng = have_nngcat();
    let handles: Vec<_> = USAGE
        .iter()
        .map(|(args, want)| {
            thread::spawn(move || {
                let o = spcat(args);
                assert_eq!(o.code, Some(1), "{args:?}: {}", o.stderr);
                assert_eq!(o.stderr, format!("{want}\n"), "{args:?}");
                assert!(o.stdout.is_empty(), "{args:?}");
                if nng {
                    let r = run("nngcat", args, Duration::from_secs(5));
                    assert_eq!(r.code, o.code, "{args:?}: nngcat {}", r.stderr);
                    assert_eq!(r.stderr, o.stderr, "{args:?}");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn every_flag_parses() {
    // each line must get past parsing and fail only at the dial: the address
    // has nobody behind it
    let url = "ipc:///tmp/spcat-nobody.sock";
    let want = format!("Unable to dial on {url}: Connection refused\n");
    let f = std::env::temp_dir().join(format!("spcat-flag-{}", std::process::id()));
    std::fs::write(&f, b"from a file").unwrap();
    let file = f.to_str().unwrap().to_string();
    let lines: Vec<Vec<String>> = [
        vec!["--req0", "-D", "x"],
        vec!["--req", "-D", "x"],
        vec!["--rep0"],
        vec!["--rep"],
        vec!["--push0", "-D", "x"],
        vec!["--push", "-D", "x"],
        vec!["--pull0"],
        vec!["--pull"],
        vec!["--pub0", "-D", "x"],
        vec!["--pub", "-D", "x"],
        vec!["--sub0"],
        vec!["--sub", "--subscribe", "t"],
        vec!["--surveyor0", "-D", "x"],
        vec!["--surveyor", "-D", "x"],
        vec!["--respondent0"],
        vec!["--respondent"],
        vec!["--pair0"],
        vec!["--pair1"],
        vec!["--pair"],
        vec!["--bus0"],
        vec!["--bus"],
        vec!["--pull0", "--raw"],
        vec!["--pull0", "-A"],
        vec!["--pull0", "--ascii"],
        vec!["--pull0", "-Q"],
        vec!["--pull0", "--quoted"],
        vec!["--pull0", "--hex"],
        vec!["--pull0", "--msgpack"],
        vec!["--pull0", "--format", "no"],
        vec!["--pull0", "--format=quoted"],
        vec!["--pull0", "-v"],
        vec!["--pull0", "-q"],
        vec!["--pull0", "--verbose", "--silent"],
        vec!["--pull0", "--count", "3"],
        vec!["--pull0", "-C", "3"],
        vec!["--pull0", "--recv-timeout", "1"],
        vec!["--pull0", "--send-timeout", "1"],
        vec!["--pull0", "--recv-maxsz", "0"],
        vec!["--pull0", "-Z", "100"],
        vec!["--pull0", "--socket-name", "n"],
        vec!["--pull0", "--zt-home", "/tmp"],
        vec!["--pull0", "--stats"],
        vec!["--pull0", "--progress"],
        vec!["--pull0", "--no-progress"],
        vec!["--pull0", "-C", "2", "--progress", "--stats"],
        vec!["--push0", "--data", "x", "--delay", "0", "--interval", "1"],
        vec!["--push0", "-Dx", "-d", "0", "-i", "1"],
        vec!["--push0", "--file", &file],
        vec!["--push0", "-F", &file],
        vec!["--pair0", "-D", "x", "-i", "1", "-C", "2"],
    ]
    .iter()
    .map(|l| l.iter().map(|s| s.to_string()).collect())
    .collect();
    let handles: Vec<_> = lines
        .into_iter()
        .flat_map(|l| {
            // both address forms: nngcat's --dial and nanocat's --connect
            [("--dial", l.clone()), ("--connect", l)]
        })
        .map(|(flag, mut l)| {
            let want = want.clone();
            l.push(flag.to_string());
            l.push(url.to_string());
            thread::spawn(move || {
                let args: Vec<&str> = l.iter().map(|s| s.as_str()).collect();
                let o = spcat(&args);
                // -v adds spstack's explanation, --stats the counters
                assert!(o.stderr.contains(&want), "{args:?}: {}", o.stderr);
                assert_eq!(o.code, Some(1), "{args:?}");
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // -x/-X/-l/-L build the URLs nngcat builds
    let o = spcat(&["--pull0", "-x", "tmp/spcat-nobody.sock"]);
    assert_eq!(
        o.stderr,
        "Unable to dial on ipc:///tmp/spcat-nobody.sock: Connection refused\n"
    );
    let o = spcat(&["--pull0", "-l", "1"]);
    assert_eq!(
        o.stderr,
        "Unable to dial on tcp://127.0.0.1:1: Connection refused\n"
    );
    let path = format!("/tmp/spcat-X-{}.sock", std::process::id());
    let o = spcat(&["--pull0", "-X", &path[1..], "--recv-timeout", "1", "-v"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("Listening at: ipc:///{}\n", &path[1..])
    );
    let o = spcat(&["--pull0", "-L", "0", "--recv-timeout", "1", "-v"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.starts_with("Listening at: tcp://127.0.0.1:") && !s.ends_with(":0\n"));
    // the TLS flags parse, and as in nngcat they matter only for tls+tcp
    // addresses: here the dial itself is what fails
    for tls in [
        &["-k"][..],
        &["--insecure"],
        &["--cacert", &file],
        &["--cert", &file],
        &["-E", &file],
        &["--key", &file],
    ] {
        let mut a = vec!["--pull0", "--dial", url];
        a.extend_from_slice(tls);
        let o = spcat(&a);
        assert_eq!(o.code, Some(1), "{a:?}");
        assert_eq!(o.stderr, want, "{a:?}");
    }
    // on a tls+tcp address a file that is not PEM is refused up front
    let o = spcat(&[
        "--pull0",
        "--dial",
        "tls+tcp://127.0.0.1:1",
        "--cacert",
        &file,
    ]);
    assert_eq!(o.code, Some(1));
    assert!(
        o.stderr.starts_with("Unable to configure TLS:"),
        "{}",
        o.stderr
    );
    // help and version
    let o = spcat(&["--help"]);
    assert_eq!(o.code, Some(1));
    assert!(o.stdout.starts_with(b"Usage: spcat"));
    let o = spcat(&["-h"]);
    assert_eq!(o.code, Some(1));
    let o = spcat(&["-V"]);
    assert_eq!(o.code, Some(0));
    let _ = std::fs::remove_file(f);
}

/// The messages every format is checked with.
fn messages() -> Vec<Vec<u8>> {
    vec![
        b"hello".to_vec(),
        b"tab\there \"q\" back\\slash\nnl\r".to_vec(),
        (0..=255u8).collect(),
        Vec::new(),
        vec![b'a'; 300],
        (0..70_000u32).map(|i| (i % 251) as u8).collect(),
    ]
}

/// Runs `prog` as a PULL listener with `fmt`, pushes `messages()` to it
/// from spstack, returns what it printed.
fn received_as(prog: &str, fmt: &[&str]) -> Out {
    let url = ipc();
    let n = messages().len().to_string();
    let mut args = vec![
        "--pull0",
        "--listen",
        &url,
        "-C",
        &n,
        "--recv-timeout",
        "10",
    ];
    args.extend_from_slice(fmt);
    let child = spawn(prog, &args);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let push = spstack::push0().build();
        let end = Instant::now() + Duration::from_secs(5);
        while push.dial(&url).await.is_err() {
            assert!(Instant::now() < end, "{prog} never listened on {url}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for m in messages() {
            push.send(m).await.unwrap();
        }
        let out = tokio::task::spawn_blocking(move || finish(child, Duration::from_secs(10)))
            .await
            .unwrap();
        drop(push);
        out
    })
}

fn expected(fmt: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages() {
        match fmt {
            "--raw" => out.extend_from_slice(&m),
            "-A" => out.extend(
                m.iter()
                    .map(|&b| if (0x20..0x7f).contains(&b) { b } else { b'.' }),
            ),
            "--hex" => {
                out.push(b'"');
                for b in &m {
                    out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
                }
                out.extend_from_slice(b"\"\n");
            }
            "--msgpack" => {
                match m.len() {
                    l if l < 256 => out.extend_from_slice(&[0xc4, l as u8]),
                    l if l < 65536 => {
                        out.push(0xc5);
                        out.extend_from_slice(&(l as u16).to_be_bytes());
                    }
                    l => {
                        out.push(0xc6);
                        out.extend_from_slice(&(l as u32).to_be_bytes());
                    }
                }
                out.extend_from_slice(&m);
            }
            _ => {}
        }
    }
    out
}

#[test]
fn output_formats_as_nngcat() {
    let fmts: &[&[&str]] = &[
        &["--raw"],
        &["-A"],
        &["--ascii"],
        &["-Q"],
        &["--quoted"],
        &["--hex"],
        &["--msgpack"],
        &["--format", "no"],
        &["--format", "hex"],
        &[],
    ];
    let nng = have_nngcat();
    let handles: Vec<_> = fmts
        .iter()
        .map(|fmt| {
            thread::spawn(move || {
                let o = received_as(SPCAT, fmt);
                assert_eq!(o.code, Some(0), "{fmt:?}: {}", o.stderr);
                if let Some(f) = fmt.first() {
                    if ["--raw", "-A", "--hex", "--msgpack"].contains(f) {
                        assert!(
                            o.stdout == expected(f),
                            "{fmt:?} differs from nngcat's format"
                        );
                    }
                }
                if fmt.is_empty() || fmt == &["--format", "no"] {
                    assert!(o.stdout.is_empty());
                }
                if nng {
                    let r = received_as("nngcat", fmt);
                    assert_eq!(r.code, Some(0), "nngcat {fmt:?}: {}", r.stderr);
                    assert!(
                        r.stdout == o.stdout,
                        "{fmt:?}: spcat's bytes differ from nngcat's"
                    );
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // the quoted escapes, spelled out
    let o = received_as(SPCAT, &["-Q"]);
    let s = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines[0], "\"hello\"");
    assert_eq!(lines[1], r#""tab\there \"q\" back\\slash\nnl\r""#);
    assert_eq!(lines[3], "\"\"");
}

#[test]
fn timeouts_and_exit_codes() {
    let url = ipc();
    // a receive loop ends at the receive timeout: success, nothing printed
    let t = Instant::now();
    let o = spcat(&["--pull0", "--listen", &url, "--recv-timeout", "1", "-Q"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stdout.is_empty());
    assert!(t.elapsed() >= Duration::from_millis(900));
    // REP answering with --data treats the timeout as an error
    let o = spcat(&["--rep0", "--listen", &url, "--recv-timeout", "1", "-D", "x"]);
    assert_eq!(o.code, Some(1));
    assert_eq!(o.stderr, "Receive error: Timed out\n");
    // REQ with nobody to take the request
    let o = spcat(&[
        "--req0",
        "--listen",
        &url,
        "--send-timeout",
        "1",
        "--recv-timeout",
        "1",
        "-D",
        "x",
    ]);
    if have_nngcat() {
        let r = run(
            "nngcat",
            &[
                "--req0",
                "--listen",
                &ipc(),
                "--send-timeout",
                "1",
                "--recv-timeout",
                "1",
                "-D",
                "x",
            ],
            Duration::from_secs(5),
        );
        assert_eq!((o.code, &o.stderr), (r.code, &r.stderr));
    }
    assert!(o.code.is_some());
    // --stats: counters on stderr at exit
    let o = spcat(&[
        "--pull0",
        "--listen",
        &url,
        "--recv-timeout",
        "1",
        "--stats",
    ]);
    assert_eq!(o.code, Some(0));
    assert!(o.stderr.contains("msgs_in 0"), "{}", o.stderr);
}

/// The number after `name` in `--stats` output (`msgs_out 2`, `dropped
/// NoPeer 1`); 0 when the counter is not printed (spcat omits zero drops).
fn stat(stderr: &str, name: &str) -> u64 {
    for l in stderr.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        if let Some(i) = w.iter().position(|x| *x == name) {
            if let Some(v) = w.get(i + 1) {
                return v.parse().unwrap_or_else(|_| panic!("{name} {v}"));
            }
        }
    }
    0
}

/// A PUB whose first message found no subscriber (dropped, `NoPeer`) and
/// whose subscriber then connected. Returns spcat's or nngcat's output, how
/// many messages the subscriber got, and how long after the last one the
/// PUB exited.
fn pub_with_late_subscriber(prog: &str) -> (Out, u64, Duration) {
    let mut args = vec![
        "--pub0",
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
    if prog == SPCAT {
        args.push("--stats");
    }
    let (p, url) = listening(prog, &args);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sub = spstack::sub0().build();
        sub.control::<spstack::SubControl>()
            .expect("SUB control")
            .subscribe(b"")
            .unwrap();
        // the PUB sends its first message as soon as it listens; this dial
        // waits long enough that it comes after that send (the second is a
        // second later), as a late subscriber's does. Without the wait a
        // fast machine dialled before the first send three runs in a row.
        tokio::time::sleep(Duration::from_millis(300)).await;
        tokio::time::timeout(Duration::from_secs(10), sub.dial(&url))
            .await
            .expect("dial in time")
            .unwrap_or_else(|e| panic!("{prog}: dial {url}: {e}"));
        let mut done = tokio::task::spawn_blocking(move || finish(p, Duration::from_secs(20)));
        let mut got = 0;
        let mut last = None;
        let out = loop {
            tokio::select! {
                o = &mut done => break o.unwrap(),
                m = sub.recv() => match m {
                    Ok(m) => {
                        assert_eq!(m.body(), b"x", "{prog}");
                        got += 1;
                        last = Some(Instant::now());
                    }
                    Err(e) => panic!("{prog}: SUB recv: {e}"),
                },
            }
        };
        let last =
            last.unwrap_or_else(|| panic!("{prog}: the subscriber got nothing: {}", out.stderr));
        let after = out.exited.saturating_duration_since(last);
        (out, got, after)
    })
}

#[test]
fn pub_exits_after_its_last_send_though_some_found_no_subscriber() {
    // spcat's drain used to wait until msgs_out reached the number sent: a
    // message dropped for want of a subscriber never got there, and spcat
    // stayed 5 s after its last send. Every message is now written or
    // counted dropped, and the drain waits for exactly that.
    let mut exercised = false;
    for _ in 0..3 {
        let (o, got, after) = pub_with_late_subscriber(SPCAT);
        assert_eq!(o.code, Some(0), "{}", o.stderr);
        assert!(
            after < Duration::from_secs(3),
            "spcat stayed {after:?} after its last send\n{}",
            o.stderr
        );
        let (out, no_peer) = (stat(&o.stderr, "msgs_out"), stat(&o.stderr, "NoPeer"));
        assert_eq!(
            out + no_peer,
            3,
            "every message accounted for: {}",
            o.stderr
        );
        assert_eq!(
            got, out,
            "what was written reached the subscriber: {}",
            o.stderr
        );
        if no_peer > 0 {
            exercised = true;
            break;
        }
        // the subscriber beat the first send: nothing was dropped, run again
    }
    assert!(
        exercised,
        "the subscriber never missed the first message in 3 runs"
    );
    if have_nngcat() {
        let (o, got, after) = pub_with_late_subscriber("nngcat");
        assert_eq!(o.code, Some(0), "nngcat: {}", o.stderr);
        assert!((1..=3).contains(&got), "nngcat: the subscriber got {got}");
        assert!(
            after < Duration::from_secs(3),
            "nngcat stayed {after:?} after its last send"
        );
    }
}

#[test]
fn spcat_to_spcat_req_rep() {
    // the REQ's dial fails when nobody listens yet: start it once the REP
    // says it listens
    let (rep, url) = listening(
        SPCAT,
        &[
            "--rep0",
            "--listen",
            &ipc(),
            "-v",
            "-D",
            "pong",
            "-Q",
            "-C",
            "2",
        ],
    );
    let o = spcat(&["--req0", "--dial", &url, "-D", "ping", "-Q", "-C", "2"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(o.stdout, b"\"pong\"\n\"pong\"\n");
    let r = finish(rep, Duration::from_secs(5));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        String::from_utf8_lossy(&r.stdout),
        format!("Listening at: {url}\n\"ping\"\n\"ping\"\n")
    );
}

#[test]
fn decode_captured_req_frame() {
    // tcp length 9, REQ request id 0x80000001, body "hello"
    let o = spcat(&[
        "decode",
        "--stack",
        "req0",
        "--hex",
        "0000000000000009 80000001 68656c6c6f",
    ]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        s.contains("tcp") && s.contains("length") && s.contains("9 (0x9)"),
        "{s}"
    );
    assert!(s.contains("req/raw") && s.contains("id 0x80000001"), "{s}");
    assert!(s.contains("body") && s.contains("5 bytes"), "{s}");
    // the same request after a device hop, over ipc, from a file
    let f = std::env::temp_dir().join(format!("spcat-frame-{}", std::process::id()));
    let mut frame = vec![1u8];
    frame.extend_from_slice(&13u64.to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 5, 0x80, 0, 0, 1]);
    frame.extend_from_slice(b"hello");
    std::fs::write(&f, &frame).unwrap();
    let o = spcat(&[
        "decode",
        "--stack",
        "rep0/raw",
        "--transport",
        "ipc",
        "--file",
        f.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_file(&f);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("pipe 0x00000005, id 0x80000001"), "{s}");
    // truncated frame, unknown stack
    let o = spcat(&["decode", "--stack", "req0", "--hex", "000000"]);
    assert_eq!(o.code, Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("truncated"));
    let o = spcat(&["decode", "--stack", "nope", "--hex", "00"]);
    assert_eq!(o.code, Some(1));
}

/// One interop case: spcat's arguments (role and output), the peer's
/// protocol and data, what spcat must print and what the peer must print.
struct Case {
    spcat: &'static [&'static str],
    /// extra spcat arguments when spcat listens (e.g. a delay so that the
    /// peer has connected before a PUB/BUS/SURVEYOR sends)
    listen_extra: &'static [&'static str],
    peer: &'static str,
    peer_data: &'static str,
    spcat_prints: &'static str,
    peer_prints: &'static str,
}

const CASES: &[Case] = &[
    Case {
        spcat: &["--push0", "-D", "hello"],
        listen_extra: &[],
        peer: "pull0",
        peer_data: "",
        spcat_prints: "",
        peer_prints: "hello",
    },
    Case {
        spcat: &["--pull0", "-Q", "-C", "1"],
        listen_extra: &[],
        peer: "push0",
        peer_data: "hello",
        spcat_prints: "\"hello\"\n",
        peer_prints: "",
    },
    Case {
        spcat: &["--req0", "-D", "ping", "-Q"],
        listen_extra: &[],
        peer: "rep0",
        peer_data: "pong",
        spcat_prints: "\"pong\"\n",
        peer_prints: "ping",
    },
    Case {
        spcat: &["--rep0", "-D", "pong", "-Q", "-C", "1"],
        listen_extra: &[],
        peer: "req0",
        peer_data: "ping",
        spcat_prints: "\"ping\"\n",
        peer_prints: "pong",
    },
    Case {
        spcat: &["--pub0", "-D", "news", "-C", "3", "-i", "1"],
        listen_extra: &[],
        peer: "sub0",
        peer_data: "",
        spcat_prints: "",
        peer_prints: "news",
    },
    Case {
        spcat: &["--sub0", "-Q", "-C", "1"],
        listen_extra: &[],
        peer: "pub0",
        peer_data: "news",
        spcat_prints: "\"news\"\n",
        peer_prints: "",
    },
    Case {
        spcat: &["--surveyor0", "-D", "q", "-Q", "-C", "5", "-i", "1"],
        listen_extra: &[],
        peer: "respondent0",
        peer_data: "a",
        spcat_prints: "\"a\"\n",
        peer_prints: "q",
    },
    Case {
        spcat: &["--respondent0", "-D", "a", "-Q", "-C", "1"],
        listen_extra: &[],
        peer: "surveyor0",
        peer_data: "q",
        spcat_prints: "\"q\"\n",
        peer_prints: "a",
    },
    Case {
        spcat: &["--pair0", "-D", "hi", "-Q", "-C", "1", "-i", "2"],
        listen_extra: &[],
        peer: "pair0",
        peer_data: "yo",
        spcat_prints: "\"yo\"\n",
        peer_prints: "hi",
    },
    Case {
        spcat: &["--pair1", "-D", "hi", "-Q", "-C", "1", "-i", "2"],
        listen_extra: &[],
        peer: "pair1",
        peer_data: "yo",
        spcat_prints: "\"yo\"\n",
        peer_prints: "hi",
    },
    Case {
        spcat: &["--bus0", "-D", "hi", "-Q", "-C", "5", "-i", "1"],
        listen_extra: &[],
        peer: "bus0",
        peer_data: "yo",
        spcat_prints: "\"yo\"\n",
        peer_prints: "hi",
    },
];

/// Starts the peer in a mode (`dial`/`listen`) on a URL.
type StartPeer = Box<dyn Fn(&str, &str) -> Proc + Send>;

fn check_case(c: &Case, listen: bool, peer: StartPeer) {
    let url = ipc();
    let (mine, theirs) = if listen {
        ("--listen", "dial")
    } else {
        ("--dial", "listen")
    };
    let mut args: Vec<&str> = c.spcat.to_vec();
    args.extend_from_slice(&[mine, &url]);
    if listen {
        args.extend_from_slice(c.listen_extra);
    }
    let (me, them) = if listen {
        let me = spawn(SPCAT, &args);
        thread::sleep(Duration::from_millis(200));
        (me, peer(theirs, &url))
    } else {
        let them = peer(theirs, &url);
        // nngcat's dial fails at once when nobody listens: wait for the peer
        let path = url.trim_start_matches("ipc://").to_string();
        let end = Instant::now() + Duration::from_secs(5);
        while !std::path::Path::new(&path).exists() && Instant::now() < end {
            thread::sleep(Duration::from_millis(20));
        }
        thread::sleep(Duration::from_millis(50));
        (spawn(SPCAT, &args), them)
    };
    let o = finish(me, Duration::from_secs(8));
    let p = finish(them, Duration::from_secs(8));
    let what = format!("spcat {args:?} vs {} {theirs}", c.peer);
    assert_eq!(o.code, Some(0), "{what}: {}", o.stderr);
    let printed = String::from_utf8_lossy(&o.stdout);
    if c.spcat_prints.is_empty() {
        assert!(printed.is_empty(), "{what}: {printed}");
    } else {
        assert!(
            printed.starts_with(c.spcat_prints),
            "{what}: printed {printed:?}; peer: {}",
            p.stderr
        );
    }
    let peer_out = String::from_utf8_lossy(&p.stdout);
    assert!(
        peer_out.contains(c.peer_prints),
        "{what}: peer printed {peer_out:?} {}",
        p.stderr
    );
}

fn interop(peer: fn(&Case, &str, &str) -> Option<Proc>, supports: fn(&Case) -> bool) {
    // a few cases at a time: each starts a Python interpreter or nanocat, and
    // dozens at once on two cores would starve the time-bound exchanges
    let jobs: Vec<_> = CASES
        .iter()
        .filter(|c| supports(c))
        .flat_map(|c| [(c, false), (c, true)])
        .collect();
    let mut failed = Vec::new();
    for chunk in jobs.chunks(4) {
        let handles: Vec<_> = chunk
            .iter()
            .map(|&(c, listen)| {
                thread::spawn(move || {
                    check_case(
                        c,
                        listen,
                        Box::new(move |mode, url| peer(c, mode, url).unwrap()),
                    )
                })
            })
            .collect();
        for h in handles {
            if let Err(e) = h.join() {
                failed.push(e);
            }
        }
    }
    assert!(failed.is_empty(), "{} interop case(s) failed", failed.len());
}

fn pynng_peer(c: &Case, mode: &str, url: &str) -> Option<Proc> {
    Some(spawn(
        "python3",
        &[PEER, c.peer, mode, url, c.peer_data, "6"],
    ))
}

/// nanocat has no PAIR1; its BUS/PAIR/SURVEYOR/PUB repeat with -i.
fn nanocat_peer(c: &Case, mode: &str, url: &str) -> Option<Proc> {
    let flag = match c.peer {
        "pull0" => "--pull",
        "push0" => "--push",
        "req0" => "--req",
        "rep0" => "--rep",
        "pub0" => "--pub",
        "sub0" => "--sub",
        "surveyor0" => "--surveyor",
        "respondent0" => "--respondent",
        "pair0" => "--pair",
        "bus0" => "--bus",
        _ => return None,
    };
    let addr = if mode == "listen" {
        "--bind"
    } else {
        "--connect"
    };
    let mut a = vec![flag, addr, url];
    if !matches!(c.peer, "push0" | "pub0") {
        // nanocat refuses these on send-only sockets
        a.extend_from_slice(&["-A", "--recv-timeout", "3"]);
    }
    if !c.peer_data.is_empty() {
        a.extend_from_slice(&["-D", c.peer_data]);
        if matches!(c.peer, "pub0" | "bus0" | "surveyor0" | "push0" | "pair0") {
            a.extend_from_slice(&["-i", "0.2"]);
        }
    }
    Some(spawn("nanocat", &a))
}

#[test]
fn interop_pynng() {
    if !have_pynng() {
        eprintln!("skipped: python3 with pynng is not installed");
        return;
    }
    interop(pynng_peer, |_| true);
}

#[test]
fn interop_nanocat() {
    if !have("nanocat", &["--help"]) {
        eprintln!("skipped: nanocat is not installed");
        return;
    }
    // nanocat has no PAIR1
    interop(nanocat_peer, |c| c.peer != "pair1");
}

#[test]
fn keygen_writes_both_kinds_of_keys_with_safe_modes() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("spcat-keygen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_str().unwrap();
    let out = spcat(&["keygen", "--dir", d, "alice"]);
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ed25519 public key"), "{stdout}");
    assert!(stdout.contains("x25519 public key"), "{stdout}");
    for (file, mode) in [
        ("alice.ed25519.pem", 0o600),
        ("alice.ed25519.pub.pem", 0o644),
        ("alice.noise.key", 0o600),
        ("alice.noise.pub", 0o644),
    ] {
        let m = std::fs::metadata(dir.join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(m, mode, "{file}");
    }
    let pem = std::fs::read_to_string(dir.join("alice.ed25519.pem")).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
    // a second run refuses to overwrite; --force replaces
    let again = spcat(&["keygen", "--dir", d, "alice"]);
    assert_eq!(again.code, Some(1), "stderr: {}", again.stderr);
    assert!(
        again.stderr.starts_with("spcat keygen:"),
        "{}",
        again.stderr
    );
    let forced = spcat(&["keygen", "--dir", d, "--force", "alice"]);
    assert_eq!(forced.code, Some(0), "stderr: {}", forced.stderr);
    assert_ne!(
        std::fs::read_to_string(dir.join("alice.ed25519.pem")).unwrap(),
        pem
    );
    let bad = spcat(&["keygen", "--kind", "rsa", "bob"]);
    assert_eq!(bad.code, Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ws_with_nngcat_both_ways() {
    assert!(
        have_nngcat(),
        "nngcat is missing: run `sudo apt-get install -y nng-utils`"
    );
    let rep = |url: &str| -> Vec<String> {
        [
            "--rep0", "--listen", url, "--data", "pong", "-A", "--count", "1", "-v",
        ]
        .map(String::from)
        .to_vec()
    };
    // spcat listens on port 0 and says which port; nngcat dials
    let (srv, url) = listening(
        SPCAT,
        &rep("ws://127.0.0.1:0/sp")
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>(),
    );
    assert!(
        url.starts_with("ws://127.0.0.1:") && url.ends_with("/sp") && !url.contains(":0/"),
        "{url}"
    );
    ws_req_rep(srv, &url, SPCAT, "nngcat");
    // nngcat listens; it prints ws://127.0.0.1:0/sp for port 0, so it is
    // given a port, and another when that one was taken meanwhile
    let (srv, port) =
        listening_on_free_port("nngcat", |port| rep(&format!("ws://127.0.0.1:{port}/sp")));
    ws_req_rep(srv, &format!("ws://127.0.0.1:{port}/sp"), "nngcat", SPCAT);
}

/// `dprog` sends a REQ "ping" over ws to the REP `srv` (`lprog`) on `url`.
fn ws_req_rep(srv: Proc, url: &str, lprog: &str, dprog: &str) {
    let req = run(
        dprog,
        &["--req0", "--dial", url, "--data", "ping", "-A"],
        Duration::from_secs(10),
    );
    let rep = finish(srv, Duration::from_secs(10));
    assert_eq!(req.stdout, b"pong", "{dprog} req: {}", req.stderr);
    assert_eq!(
        String::from_utf8_lossy(&rep.stdout),
        format!("Listening at: {url}\nping"),
        "{lprog} rep: {}",
        rep.stderr
    );
}
