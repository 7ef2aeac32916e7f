//! `spcat decode --stack <layers>` on frames captured from real sockets
//! with `spstack::wiretap` (which records frames without their length
//! prefix): the fields a stack declares are decoded, what a transforming
//! layer carries is one opaque payload of that layer, and a layer spcat does
//! not know gets no invented fields.

use std::time::Duration;

use sp_crypto::integrity::{Integrity, IntegrityConfig};
use sp_crypto::keys::SigningKeypair;
use sp_crypto::noise::{self, NoiseConfig, StaticKeypair};
use spstack::wiretap::{Dir, Wiretap};
use spstack::SocketBuilder;
use tokio::time::timeout;

mod common;

use common::{run, Out, SPCAT};

const WAIT: Duration = Duration::from_secs(10);
const BODY: &[u8] = b"ping through the stack";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn decode(stack: &str, frame: &[u8], extra: &[&str]) -> (Out, String) {
    let h = hex(frame);
    let mut a = vec!["decode", "--stack", stack, "--hex", &h];
    a.extend_from_slice(extra);
    let o = run(SPCAT, &a, WAIT);
    let s = String::from_utf8_lossy(&o.stdout).into_owned();
    (o, s)
}

/// The output line of `component`'s `field`, split in its columns
/// (offset, component, field, value...).
fn line<'a>(out: &'a str, component: &str, field: &str) -> Option<Vec<&'a str>> {
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.len() >= 4 && w[1] == component && w[2] == field)
}

/// The size the body line gives (`application body N bytes`, no offset).
fn body_len(out: &str) -> Option<usize> {
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.len() == 4 && w[0] == "application" && w[1] == "body")
        .and_then(|w| w[2].parse().ok())
}

/// Which layers a captured REQ stack has.
#[derive(Clone, Copy)]
struct Layers {
    noise: bool,
    integrity: bool,
}

/// REQ → wiretap → REP with `layers` on both; returns the request frame as
/// the tap recorded it (the last frame up, after any handshake frames) and
/// the requester's signing key id.
async fn captured_request(layers: Layers) -> (Vec<u8>, [u8; 32]) {
    let (req_key, rep_key) = (SigningKeypair::generate(), SigningKeypair::generate());
    let req_id = req_key.key_id();
    let (req_pub, rep_pub) = (req_key.verifying_key(), rep_key.verifying_key());
    let stack = |b: SocketBuilder, replier: bool| {
        let mut b = b;
        if layers.noise {
            let cfg = NoiseConfig::new(StaticKeypair::generate()).accept_any_key();
            b = b.pipe_layer(noise::layer(cfg));
        }
        if layers.integrity {
            b = if replier {
                b.message_layer(Integrity::replier(
                    IntegrityConfig::new(
                        SigningKeypair::from_bytes(&rep_key.to_bytes()),
                        [req_pub],
                        "decode-test",
                    )
                    .expect("config"),
                ))
            } else {
                b.message_layer(Integrity::requester(
                    IntegrityConfig::new(
                        SigningKeypair::from_bytes(&req_key.to_bytes()),
                        [rep_pub],
                        "decode-test",
                    )
                    .expect("config"),
                ))
            };
        }
        b.build()
    };
    let rep = stack(spstack::rep0(), true);
    let ep = rep.listen("tcp://127.0.0.1:0").await.expect("listen");
    let tap = Wiretap::start(ep.url(), None).await.expect("tap");
    let req = stack(spstack::req0(), false);
    timeout(WAIT, req.dial(&tap.url))
        .await
        .expect("dial in time")
        .expect("dial");
    req.send(BODY).await.expect("send");
    let got = timeout(WAIT, rep.recv())
        .await
        .expect("request in time")
        .expect("recv");
    assert_eq!(got.body(), BODY);
    // the tap records a frame before forwarding it: the request is there
    let frames = tap.frames_of(0, Dir::Up);
    let frame = frames.last().expect("a frame up").clone();
    (frame, req_id)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_noise_request_is_one_opaque_payload_never_a_backtrace() {
    let (frame, _) = rt().block_on(captured_request(Layers {
        noise: true,
        integrity: true,
    }));
    for stack in ["noise-xx/2,req0,integrity/2", "noise-xx/2,req0"] {
        let (o, out) = decode(stack, &frame, &["--no-prefix"]);
        assert_eq!(o.code, Some(0), "{stack}: {}{out}", o.stderr);
        // the record's declared header and trailer, where they lie
        let head = line(&out, "noise-xx/2", "sealed_flags_len").unwrap_or_else(|| panic!("{out}"));
        assert_eq!(head[0], "0", "{out}");
        let tags = line(&out, "noise-xx/2", "poly1305_tags").unwrap_or_else(|| panic!("{out}"));
        assert_eq!(tags[0], (frame.len() - 16).to_string(), "{out}");
        // everything between them: ciphertext, owned by noise, with its size
        let p = line(&out, "noise-xx/2", "payload").unwrap_or_else(|| panic!("{out}"));
        assert_eq!(p[0], "5", "{out}");
        assert_eq!(p[3], (frame.len() - 5 - 16).to_string(), "{out}");
        assert!(out.contains("opaque (transformed by noise-xx/2)"), "{out}");
        // nothing of what lies inside is decoded from the ciphertext
        for inner in [
            "req/raw",
            "backtrace",
            "id 0x",
            "integrity/2",
            "signature",
            "body",
        ] {
            assert!(
                !out.contains(inner),
                "{stack}: {inner} decoded from ciphertext:\n{out}"
            );
        }
    }
}

#[test]
fn a_plain_request_without_prefix_decodes_its_request_id() {
    let (frame, _) = rt().block_on(captured_request(Layers {
        noise: false,
        integrity: false,
    }));
    assert_eq!(
        frame.len(),
        4 + BODY.len(),
        "request id and body, no length"
    );
    let id = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
    assert!(id & 0x8000_0000 != 0, "a request id has its top bit set");
    for flag in ["--no-prefix", "--wiretap"] {
        let (o, out) = decode("req0", &frame, &[flag]);
        assert_eq!(o.code, Some(0), "{}{out}", o.stderr);
        let bt = line(&out, "req/raw", "backtrace").unwrap_or_else(|| panic!("{out}"));
        assert_eq!(bt[0], "0", "no length prefix before it: {out}");
        assert_eq!(bt[3..], ["id", &format!("0x{id:08x}")], "{out}");
        assert_eq!(body_len(&out), Some(BODY.len()), "{out}");
        assert!(!out.contains("tcp"), "{out}");
    }
    // the same frame read as if it had the tcp prefix: the request id and
    // the body's start are taken for the length, and what follows has no
    // request id: the decode fails instead of showing one that is not there
    let (o, out) = decode("req0", &frame, &[]);
    assert_eq!(o.code, Some(1), "{out}");
    assert!(
        out.contains("error: req/raw: backtrace has no terminating word"),
        "{out}"
    );
    assert!(line(&out, "req/raw", "backtrace").is_none(), "{out}");
}

#[test]
fn a_signed_request_decodes_the_declared_integrity_trailer() {
    let (frame, key_id) = rt().block_on(captured_request(Layers {
        noise: false,
        integrity: true,
    }));
    let (o, out) = decode("req0,integrity", &frame, &["--wiretap"]);
    assert_eq!(o.code, Some(0), "{}{out}", o.stderr);
    assert!(line(&out, "req/raw", "backtrace").is_some(), "{out}");
    let signer = line(&out, "integrity/2", "signer_key_id").unwrap_or_else(|| panic!("{out}"));
    let shown: String = signer[3..].concat();
    assert_eq!(shown, hex(&key_id), "the requester's key id: {out}");
    for f in [
        "version",
        "kind",
        "protocol",
        "peer_protocol",
        "to",
        "msg_id",
        "seq",
        "timestamp_ms",
        "valid_for_ms",
        "in_reply_to",
        "signature",
    ] {
        assert!(line(&out, "integrity/2", f).is_some(), "{f}: {out}");
    }
    // a request (kind 1) from a REQ (0x30) for a REP (0x31), to no server in particular
    let value = |f: &str| line(&out, "integrity/2", f).map(|w| w[3..].join(" "));
    assert_eq!(value("kind").as_deref(), Some("1 (0x1)"), "{out}");
    assert_eq!(value("protocol").as_deref(), Some("48 (0x30)"), "{out}");
    assert_eq!(
        value("peer_protocol").as_deref(),
        Some("49 (0x31)"),
        "{out}"
    );
    assert_eq!(value("to"), Some(vec!["00"; 32].join(" ")), "{out}");
    // REQ's default resend (60 s): two of them and the 5 s skew
    assert_eq!(
        value("valid_for_ms").as_deref(),
        Some("125000 (0x1e848)"),
        "{out}"
    );
    assert_eq!(body_len(&out), Some(BODY.len()), "{out}");
}

#[test]
fn a_layer_spcat_does_not_know_gets_no_invented_fields() {
    let (frame, _) = rt().block_on(captured_request(Layers {
        noise: false,
        integrity: false,
    }));
    // above the protocol: the request id decodes; the rest is xor/1's
    let (o, out) = decode("req0,xor/1", &frame, &["--no-prefix"]);
    assert_eq!(o.code, Some(0), "{}{out}", o.stderr);
    assert!(line(&out, "req/raw", "backtrace").is_some(), "{out}");
    let p = line(&out, "xor/1", "payload").unwrap_or_else(|| panic!("{out}"));
    assert_eq!((p[0], p[3]), ("4", &*BODY.len().to_string()), "{out}");
    assert!(out.contains("unknown to spcat"), "{out}");
    assert!(!out.contains("body"), "{out}");
    // below the protocol: nothing above it can be read
    let (o, out) = decode("xor/1,req0", &frame, &["--no-prefix"]);
    assert_eq!(o.code, Some(0), "{}{out}", o.stderr);
    assert_eq!(out.lines().count(), 1, "one line, the payload: {out}");
    let p = line(&out, "xor/1", "payload").unwrap_or_else(|| panic!("{out}"));
    assert_eq!((p[0], p[3]), ("0", &*frame.len().to_string()), "{out}");
}

#[test]
fn stack_mistakes_are_refused_with_the_reason() {
    for (stack, why) in [
        ("integrity/2,req0", "integrity/2 is a message layer"),
        ("req0,noise-xx/2", "noise-xx/2 is a pipe layer"),
        ("req0,rep0", "one protocol"),
        ("noise-xx/2,integrity/2", "message layer"),
        ("noise-xx/2", "no protocol"),
    ] {
        let (o, out) = decode(stack, &[0x80, 0, 0, 1], &["--no-prefix"]);
        assert_eq!(o.code, Some(1), "{stack}: {out}");
        assert!(o.stderr.contains(why), "{stack}: {}", o.stderr);
        assert!(out.is_empty(), "{stack}: {out}");
    }
    let o = run(
        SPCAT,
        &[
            "decode",
            "--stack",
            "req0",
            "--hex",
            "00",
            "--transport",
            "carrier-pigeon",
        ],
        WAIT,
    );
    assert_eq!(o.code, Some(1));
    assert!(o.stderr.contains("unknown transport"), "{}", o.stderr);
}
