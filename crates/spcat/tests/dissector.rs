//! `spcat dissector --stack ...` on real captures: tshark records loopback
//! traffic of real sockets (plain REQ/REP with a message that spans TCP
//! segments, PUB/SUB found by its header alone, PAIR1, a third-party pipe
//! layer spcat does not know and a third-party message layer whose format
//! is declared on the command line, Noise with integrity), then reads the
//! capture with the generated dissector and the fields must decode by name
//! with the values the sockets sent.
//!
//! tshark is required: these tests fail, not skip, without it
//! (`scripts/test.sh` installs it). They capture on `lo`, as root.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use sp_crypto::integrity::{Integrity, IntegrityConfig};
use sp_crypto::keys::SigningKeypair;
use sp_crypto::noise::{self, NoiseConfig, StaticKeypair};
use spstack::{Message, Protocol, Socket};
use spstack_example_star::{trace::Trace, xor};
use tokio::time::timeout;

mod common;

use common::{run, SPCAT};

const WAIT: Duration = Duration::from_secs(10);

fn tshark_present() {
    let ok = Command::new("tshark")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "tshark is missing: `bash scripts/test.sh` installs it (apt-get install tshark)"
    );
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("spcat-dissector-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// tshark capturing `port <port>` on loopback into a pcap file.
struct Capture {
    child: Child,
    pcap: PathBuf,
}

impl Capture {
    /// Returns once tshark captures: "Capturing on" comes before the
    /// filter is in place, so UDP datagrams are sent to the port until
    /// tshark shows one (they stay in the capture, and no SP dissector
    /// looks at UDP).
    fn start(port: u16, name: &str) -> Capture {
        tshark_present();
        let pcap = scratch(&format!("{name}.pcap"));
        let _ = std::fs::remove_file(&pcap);
        let mut child = Command::new("tshark")
            .args([
                "-i",
                "lo",
                "-f",
                &format!("port {port}"),
                "-F",
                "pcap",
                "-P",
                "-l",
                "-w",
            ])
            .arg(&pcap)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run tshark");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..200 {
            let _ = probe.send_to(b"probe", ("127.0.0.1", port));
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(l) if l.contains("UDP") => return Capture { child, pcap },
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let _ = child.kill();
        panic!("tshark never showed a probe on port {port}");
    }

    /// Stops the capture (SIGINT: tshark writes what it has) and returns
    /// the file.
    fn stop(mut self) -> PathBuf {
        // the last segments' copies reach the capture after the sockets
        // saw them: a moment for the kernel to hand them over
        std::thread::sleep(Duration::from_millis(300));
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return self.pcap.clone();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("tshark did not stop on SIGINT");
    }
}

/// Writes the dissector for `args` (spcat dissector ...) into a file.
fn dissector(name: &str, args: &[&str]) -> PathBuf {
    let lua = scratch(&format!("{name}.lua"));
    let out = lua.to_str().unwrap().to_string();
    let mut a = vec!["dissector"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--output", &out]);
    let o = run(SPCAT, &a, WAIT);
    assert_eq!(o.code, Some(0), "spcat {a:?}: {}", o.stderr);
    lua
}

/// Every value tshark shows for each field, over the whole capture.
fn fields(lua: &Path, pcap: &Path, names: &[&str], extra: &[&str]) -> Vec<Vec<String>> {
    let script = format!("lua_script:{}", lua.display());
    let mut args = vec!["-X", &script, "-r", pcap.to_str().unwrap(), "-T", "fields"];
    args.extend_from_slice(extra);
    for n in names {
        args.extend_from_slice(&["-e", n]);
    }
    args.extend_from_slice(&["-E", "separator=|", "-E", "aggregator=;"]);
    let o = Command::new("tshark").args(&args).output().expect("tshark");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "tshark {args:?}: {err}");
    // a Lua error is a warning on stderr, not an exit status
    assert!(
        !err.contains("Lua") && !err.contains("lua"),
        "the dissector failed: {err}"
    );
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut cols = vec![Vec::new(); names.len()];
    for line in text.lines() {
        for (i, v) in line.split('|').enumerate() {
            if i < cols.len() {
                cols[i].extend(v.split(';').filter(|s| !s.is_empty()).map(String::from));
            }
        }
    }
    cols
}

/// tshark's tree view of the capture.
fn verbose(lua: &Path, pcap: &Path, extra: &[&str]) -> String {
    let script = format!("lua_script:{}", lua.display());
    let o = Command::new("tshark")
        .args(["-X", &script, "-r", pcap.to_str().unwrap(), "-V"])
        .args(extra)
        .output()
        .expect("tshark");
    assert!(o.status.success());
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn set(v: &[String]) -> BTreeSet<&str> {
    v.iter().map(String::as_str).collect()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

/// Listens with `listener` and returns its port, for the capture filter.
async fn listen(s: &Socket) -> (String, u16) {
    let ep = s.listen("tcp://127.0.0.1:0").await.expect("listen");
    let url = ep.url().to_string();
    let port = port_of(&url);
    (url, port)
}

/// Waits (bounded) until `s` has a pipe: a PUB sends to nobody before that.
async fn has_pipe(s: &Socket) {
    for _ in 0..200 {
        if !s.pipes().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no pipe joined");
}

#[test]
fn req_rep_request_ids_and_a_message_across_segments() {
    let rt = rt();
    let rep = rt.block_on(async { spstack::rep0().build() });
    let (url, port) = rt.block_on(listen(&rep));
    let cap = Capture::start(port, "reqrep");
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    rt.block_on(async {
        // a raw REQ: the test chooses the request ids
        let req = spstack::raw(Protocol::Req0).build();
        req.dial(&url).await.unwrap();
        for (id, body) in [
            (0x8000_0123u32, b"hello".to_vec()),
            (0x8000_0124, big.clone()),
        ] {
            let mut m = Message::from(body.clone());
            m.push_header(&id.to_be_bytes());
            req.send(m).await.unwrap();
            let got = timeout(WAIT, rep.recv()).await.unwrap().unwrap();
            assert_eq!(got.body(), &body[..]);
            rep.send(got.body()).await.unwrap();
            let back = timeout(WAIT, req.recv()).await.unwrap().unwrap();
            assert_eq!(back.body(), &body[..]);
        }
        req.shutdown().await;
    });
    let pcap = cap.stop();
    let lua = dissector("reqrep", &["--stack", "req0", "--port", &port.to_string()]);
    let f = fields(
        &lua,
        &pcap,
        &[
            "sp.announce.protocol",
            "sp.tcp.length",
            "sp.req_raw.backtrace.id",
            "sp.req_raw.backtrace.last",
            "sp.body.len",
            "sp.body",
        ],
        &[],
    );
    assert_eq!(set(&f[0]), BTreeSet::from(["0x0030", "0x0031"]), "{f:?}");
    // request and reply each: 4-byte id and the body
    let big_len = (4 + big.len()).to_string();
    assert_eq!(
        f[1],
        ["9", "9", big_len.as_str(), big_len.as_str()],
        "{f:?}"
    );
    assert_eq!(
        f[2],
        ["0x80000123", "0x80000123", "0x80000124", "0x80000124"],
        "{f:?}"
    );
    assert!(f[3].iter().all(|v| v == "1" || v == "True"), "{f:?}");
    let n = big.len().to_string();
    assert_eq!(f[4], ["5", "5", n.as_str(), n.as_str()], "{f:?}");
    assert_eq!(f[5][0], hex(b"hello"), "{f:?}");
    assert_eq!(
        f[5][2],
        hex(&big),
        "the message reassembled from its segments"
    );
    // the tree names the components and fields
    let v = verbose(&lua, &pcap, &[]);
    for want in [
        "Scalability Protocols (req0)",
        "req/raw",
        "backtrace: 80000123",
        "id: 0x80000123",
        "Body length: 200000",
        "Reassembled TCP Segments (200012 bytes)",
    ] {
        assert!(v.contains(want), "{want:?} not in:\n{v}");
    }
}

#[test]
fn pub_sub_found_by_its_header_without_a_port() {
    let rt = rt();
    let publisher = rt.block_on(async { spstack::pub0().build() });
    let (url, port) = rt.block_on(listen(&publisher));
    let cap = Capture::start(port, "pubsub");
    rt.block_on(async {
        let sub = spstack::sub0().build();
        sub.control::<spstack::SubControl>()
            .unwrap()
            .subscribe(b"weather/")
            .unwrap();
        sub.dial(&url).await.unwrap();
        has_pipe(&publisher).await;
        for m in ["weather/sun", "weather/rain", "weather/snow"] {
            publisher.send(m).await.unwrap();
            let got = timeout(WAIT, sub.recv()).await.unwrap().unwrap();
            assert_eq!(got.body(), m.as_bytes());
        }
        publisher.shutdown().await;
    });
    let pcap = cap.stop();
    // no --port: the connection is recognised by the SP header it opens with
    let lua = dissector("pubsub", &["--stack", "pub0"]);
    let f = fields(
        &lua,
        &pcap,
        &[
            "sp.announce.protocol",
            "sp.tcp.length",
            "sp.body",
            "sp.opaque",
        ],
        &["-o", "tcp.try_heuristic_first:TRUE"],
    );
    assert_eq!(set(&f[0]), BTreeSet::from(["0x0020", "0x0021"]), "{f:?}");
    assert_eq!(f[1], ["11", "12", "12"], "{f:?}");
    assert_eq!(
        f[2],
        [
            hex(b"weather/sun"),
            hex(b"weather/rain"),
            hex(b"weather/snow")
        ],
        "{f:?}"
    );
    assert!(f[3].is_empty(), "{f:?}");
    // PUB/SUB has no header: the message is the length and the body
    let v = verbose(&lua, &pcap, &["-o", "tcp.try_heuristic_first:TRUE"]);
    assert!(!v.contains("backtrace"), "{v}");
    assert!(v.contains("SP message: body 11 bytes"), "{v}");
}

#[test]
fn pair1_hop_count_and_a_declared_third_party_message_layer() {
    let rt = rt();
    let a = rt.block_on(async { spstack::pair1().message_layer(Trace::new()).build() });
    let (url, port) = rt.block_on(listen(&a));
    let cap = Capture::start(port, "pair1");
    rt.block_on(async {
        let b = spstack::pair1().message_layer(Trace::new()).build();
        b.dial(&url).await.unwrap();
        has_pipe(&a).await;
        for i in 0..3 {
            b.send(format!("ping {i}")).await.unwrap();
            timeout(WAIT, a.recv()).await.unwrap().unwrap();
        }
        b.shutdown().await;
    });
    let pcap = cap.stop();
    let lua = dissector(
        "pair1",
        &[
            "--stack",
            "pair1,trace/1",
            "--declare",
            "trace/1=seq:u32",
            "--port",
            &port.to_string(),
        ],
    );
    let f = fields(
        &lua,
        &pcap,
        &[
            "sp.pair1_raw.hops",
            "sp.trace_1.seq",
            "sp.body",
            "sp.opaque",
        ],
        &[],
    );
    // PAIR1 puts hop count 1 on the wire (nng's); trace/1 numbers from 1
    assert_eq!(f[0], ["1", "1", "1"], "{f:?}");
    assert_eq!(f[1], ["1", "2", "3"], "{f:?}");
    assert_eq!(
        f[2],
        [hex(b"ping 0"), hex(b"ping 1"), hex(b"ping 2")],
        "{f:?}"
    );
    assert!(f[3].is_empty(), "a declared layer is no opaque one: {f:?}");
}

#[test]
fn above_an_unknown_pipe_layer_one_opaque_payload_with_its_owner() {
    let rt = rt();
    let rep = rt.block_on(async { spstack::rep0().pipe_layer(xor::layer()).build() });
    let (url, port) = rt.block_on(listen(&rep));
    let cap = Capture::start(port, "xor");
    rt.block_on(async {
        let req = spstack::req0().pipe_layer(xor::layer()).build();
        req.dial(&url).await.unwrap();
        req.send("scrambled").await.unwrap();
        let got = timeout(WAIT, rep.recv()).await.unwrap().unwrap();
        rep.send(got.body()).await.unwrap();
        timeout(WAIT, req.recv()).await.unwrap().unwrap();
        req.shutdown().await;
    });
    let pcap = cap.stop();
    let lua = dissector(
        "xor",
        &["--stack", "xor/1,req0", "--port", &port.to_string()],
    );
    let f = fields(
        &lua,
        &pcap,
        &[
            "sp.announce.version",
            "sp.announce.layer",
            "sp.opaque.owner",
            "sp.opaque.len",
            "sp.req_raw.backtrace",
            "sp.body",
        ],
        &[],
    );
    assert_eq!(f[0], ["1", "1"], "the layered announcement: {f:?}");
    assert_eq!(f[1], ["xor/1", "xor/1"], "{f:?}");
    assert!(
        f[2].len() == 4 && f[2].iter().all(|o| o == "xor/1"),
        "{f:?}"
    );
    // each side's 8-byte key half, then request and reply: id and body
    let n = (4 + "scrambled".len()).to_string();
    assert_eq!(f[3], ["8", "8", n.as_str(), n.as_str()], "{f:?}");
    assert!(
        f[4].is_empty() && f[5].is_empty(),
        "nothing decoded above xor/1: {f:?}"
    );
    let v = verbose(&lua, &pcap, &[]);
    assert!(
        v.contains("layer xor/1 unknown to spcat: its format is not declared"),
        "{v}"
    );
}

#[test]
fn noise_and_integrity_show_the_record_and_nothing_inside() {
    let rt = rt();
    let (req_key, rep_key) = (SigningKeypair::generate(), SigningKeypair::generate());
    let (req_pub, rep_pub) = (req_key.verifying_key(), rep_key.verifying_key());
    let hop = || noise::layer(NoiseConfig::new(StaticKeypair::generate()).accept_any_key());
    let rep = rt.block_on(async {
        spstack::rep0()
            .pipe_layer(hop())
            .message_layer(Integrity::replier(
                IntegrityConfig::new(rep_key, [req_pub], "dissector-test").expect("config"),
            ))
            .build()
    });
    let (url, port) = rt.block_on(listen(&rep));
    let cap = Capture::start(port, "noise");
    rt.block_on(async {
        let req = spstack::req0()
            .pipe_layer(hop())
            .message_layer(Integrity::requester(
                IntegrityConfig::new(req_key, [rep_pub], "dissector-test").expect("config"),
            ))
            .build();
        req.dial(&url).await.unwrap();
        req.send("secret").await.unwrap();
        let got = timeout(WAIT, rep.recv()).await.unwrap().unwrap();
        rep.send(got.body()).await.unwrap();
        timeout(WAIT, req.recv()).await.unwrap().unwrap();
        req.shutdown().await;
    });
    let pcap = cap.stop();
    let lua = dissector(
        "noise",
        &[
            "--stack",
            "noise-xx/2,req0,integrity/2",
            "--port",
            &port.to_string(),
        ],
    );
    let f = fields(
        &lua,
        &pcap,
        &[
            "sp.announce.layer",
            "sp.opaque.owner",
            "sp.noise-xx_2.poly1305_tags",
            "sp.req_raw.backtrace",
            "sp.integrity_2.signature",
            "sp.body",
        ],
        &[],
    );
    assert_eq!(f[0], ["noise-xx/2", "noise-xx/2"], "{f:?}");
    // three handshake messages, the request and the reply
    assert_eq!(f[1].len(), 5, "{f:?}");
    assert!(f[1].iter().all(|o| o == "noise-xx/2"), "{f:?}");
    assert_eq!(f[2].len(), 5, "{f:?}");
    for (i, inner) in f[3..].iter().enumerate() {
        assert!(
            inner.is_empty(),
            "field {} decoded from ciphertext: {f:?}",
            i + 3
        );
    }
}

#[test]
fn dissector_mistakes_are_refused_with_the_reason() {
    for (args, why) in [
        (&["--stack", "integrity/2,req0"][..], "is a message layer"),
        (
            &["--stack", "req0", "--declare", "trace/1=seq"],
            "is not name:type",
        ),
        (&["--stack", "req0", "--port", "0"], "a TCP port"),
        (&["--stack", "req0", "--name", "SP"], "lower-case"),
        (&["--port", "5555"], "--stack is required"),
    ] {
        let mut a = vec!["dissector"];
        a.extend_from_slice(args);
        let o = run(SPCAT, &a, WAIT);
        assert_eq!(o.code, Some(1), "{args:?}");
        assert!(o.stderr.contains(why), "{args:?}: {}", o.stderr);
        assert!(o.stdout.is_empty(), "{args:?}");
    }
}
