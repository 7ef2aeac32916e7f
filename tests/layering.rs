//! The layering is real: a stack of two pipe layers and two message layers,
//! written for the test, carries REQ/REP end to end; the peer checks every
//! layer; a mismatch names the first differing layer; a captured frame
//! decodes field by field.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::layers::{full_stack, Checksum, LengthTag, Seq};
use spstack::layer::PipeLayer;
use spstack::RejectReason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(5);

/// A TCP proxy that records client→server bytes and can flip one of them.
async fn proxy(upstream: String, flip_at: Option<usize>) -> (String, Arc<Mutex<Vec<u8>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("tcp://{}", l.local_addr().unwrap());
    let rec = Arc::new(Mutex::new(Vec::new()));
    let rec2 = rec.clone();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            let up = upstream.trim_start_matches("tcp://").to_string();
            let mut s = TcpStream::connect(up).await.unwrap();
            let rec = rec2.clone();
            tokio::spawn(async move {
                let (mut cr, mut cw) = c.split();
                let (mut sr, mut sw) = s.split();
                let c2s = async {
                    let mut buf = [0u8; 65536];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        {
                            let mut r = rec.lock().unwrap();
                            let base = r.len();
                            if let Some(at) = flip_at {
                                if at >= base && at < base + n {
                                    buf[at - base] ^= 0x01;
                                }
                            }
                            r.extend_from_slice(&buf[..n]);
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = sw.shutdown().await;
                };
                let s2c = async {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    let _ = cw.shutdown().await;
                };
                tokio::join!(c2s, s2c);
            });
        }
    });
    (addr, rec)
}

/// Splits a recorded client stream into (announcement, frames with their u64 prefix).
fn frames(rec: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut at = 8;
    if rec[3] == 1 {
        let n = u16::from_be_bytes([rec[8], rec[9]]) as usize;
        at = 10 + n;
    }
    let ann = rec[..at].to_vec();
    let mut out = Vec::new();
    while at + 8 <= rec.len() {
        let len = u64::from_be_bytes(rec[at..at + 8].try_into().unwrap()) as usize;
        if at + 8 + len > rec.len() {
            break;
        }
        out.push(rec[at..at + 8 + len].to_vec());
        at += 8 + len;
    }
    (ann, out)
}

#[tokio::test]
async fn two_pipe_and_two_message_layers_round_trip() {
    let rep_seq = Seq::default();
    let req_seq = Seq::default();
    let rep = full_stack(spstack::rep0(), rep_seq.clone()).build();
    let ep = rep.listen("tcp://127.0.0.1:0").await.unwrap();
    let req = full_stack(spstack::req0(), req_seq.clone()).build();
    req.dial(ep.url()).await.unwrap();

    for i in 0..3u8 {
        req.send(&[b'q', i][..]).await.unwrap();
        let got = timeout(T, rep.recv()).await.unwrap().unwrap();
        assert_eq!(
            got.body(),
            &[b'q', i],
            "message layers stripped exactly their headers"
        );
        rep.send(&[b'a', i][..]).await.unwrap();
        let ans = timeout(T, req.recv()).await.unwrap().unwrap();
        assert_eq!(ans.body(), &[b'a', i]);
    }
    // the peer's message layer saw the sender's sequence numbers 0, 1, 2
    assert_eq!(*rep_seq.seen.lock().unwrap(), vec![0, 1, 2]);
    assert_eq!(*req_seq.seen.lock().unwrap(), vec![0, 1, 2]);
    // declared overhead was summed once for the whole stack
    let o = req.overhead();
    assert_eq!(
        o.header,
        4 /*lentag*/ + 4 /*req id*/ + 8 /*seq*/ + 2 /*magic*/
    );
    assert_eq!(o.trailer, 4);
    assert!(!o.contiguous);
}

#[tokio::test]
async fn layers_work_over_ipc_and_inproc_too() {
    for url in [
        format!("ipc:///tmp/sp-layering-{}.ipc", std::process::id()),
        "inproc://layering".to_string(),
    ] {
        let rep = full_stack(spstack::rep0(), Seq::default()).build();
        let ep = rep.listen(&url).await.unwrap();
        let req = full_stack(spstack::req0(), Seq::default()).build();
        req.dial(ep.url()).await.unwrap();
        req.send("over").await.unwrap();
        let got = timeout(T, rep.recv()).await.unwrap().unwrap();
        assert_eq!(got.body(), b"over", "{url}");
        rep.send("back").await.unwrap();
        assert_eq!(
            timeout(T, req.recv()).await.unwrap().unwrap().body(),
            b"back"
        );
    }
}

#[tokio::test]
async fn missing_pipe_layer_is_refused_naming_it() {
    let rep = full_stack(spstack::rep0(), Seq::default()).build();
    let ep = rep.listen("tcp://127.0.0.1:0").await.unwrap();
    // the client lacks the checksum layer
    let req = spstack::req0()
        .pipe_layer(PipeLayer::new(LengthTag))
        .build();
    let err = req.dial(ep.url()).await.unwrap_err().to_string();
    assert!(
        err.contains("crc/1"),
        "error names the first differing layer: {err}"
    );
    // a plain (nng-shaped) client is refused too, and the server counts it
    let plain = spstack::req0().build();
    let err = plain.dial(ep.url()).await.unwrap_err().to_string();
    assert!(err.contains("lentag/1"), "{err}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(rep.stats().rejects(RejectReason::LayerMismatch) >= 2);
    // layers in the wrong order
    let swapped = spstack::req0()
        .pipe_layer(PipeLayer::new(Checksum))
        .pipe_layer(PipeLayer::new(LengthTag))
        .build();
    let err = swapped.dial(ep.url()).await.unwrap_err().to_string();
    assert!(err.contains("layer 0"), "{err}");
}

#[tokio::test]
async fn captured_frame_decodes_field_by_field() {
    let rep = full_stack(spstack::rep0(), Seq::default()).build();
    let ep = rep.listen("tcp://127.0.0.1:0").await.unwrap();
    let (paddr, rec) = proxy(ep.url().to_string(), None).await;
    let req = full_stack(spstack::req0(), Seq::default()).build();
    req.dial(&paddr).await.unwrap();
    req.send("hello").await.unwrap();
    let got = timeout(T, rep.recv()).await.unwrap().unwrap();
    assert_eq!(got.body(), b"hello");

    let rec = rec.lock().unwrap().clone();
    let (ann, fr) = frames(&rec);
    assert_eq!(
        &ann[..4],
        &[0, b'S', b'P', 1],
        "a layered stack announces version 1"
    );
    // two handshake frames (lentag hello, crc key), then the request
    assert_eq!(fr.len(), 3, "{fr:?}");
    let d = req.describe("tcp", &fr[2]).unwrap();
    println!("{d}");
    assert_eq!(d.error, None);
    assert_eq!(d.body, b"hello");
    let names: Vec<_> = d
        .fields
        .iter()
        .map(|f| format!("{}.{}", f.component, f.field))
        .collect();
    assert_eq!(
        names,
        [
            "tcp.length",
            "lentag/1.inner_len",
            "req/raw.backtrace",
            "seq/1.seq",
            "magic/1.magic",
            "crc/1.checksum"
        ]
    );
    assert_eq!(
        d.field("length").unwrap().bytes,
        ((fr[2].len() - 8) as u64).to_be_bytes()
    );
    let bt = d.field("backtrace").unwrap();
    assert_eq!(bt.bytes.len(), 4, "one word: the request id");
    assert!(
        bt.bytes[0] & 0x80 != 0 && bt.value.starts_with("id 0x"),
        "{}",
        bt.value
    );
    assert_eq!(d.field("seq").unwrap().bytes, 0u64.to_be_bytes());
    assert_eq!(d.field("magic").unwrap().bytes, b"SP");
}

#[tokio::test]
async fn peer_verifies_pipe_layer_and_closes_on_tampering() {
    let rep = full_stack(spstack::rep0(), Seq::default()).build();
    let ep = rep.listen("tcp://127.0.0.1:0").await.unwrap();
    // announcement is 10 + list bytes; the handshake frames follow; flip a
    // byte far enough in to land in the first request's body
    let ann_len = spstack::Announcement {
        protocol: spstack::ProtocolId::REQ0,
        layers: vec!["lentag/1".into(), "crc/1".into()],
    }
    .encode()
    .len();
    // lentag's hello travels bare; crc's key frame already carries the length tag
    let handshake = (8 + 3) + (8 + 4 + 4);
    let body_at = ann_len + handshake + 8 + 4 + 4 + 8 + 2 + 1;
    let (paddr, _rec) = proxy(ep.url().to_string(), Some(body_at)).await;
    let req = full_stack(spstack::req0(), Seq::default()).build();
    req.dial(&paddr).await.unwrap();
    req.send("tampered").await.unwrap();
    assert!(
        timeout(Duration::from_millis(500), rep.recv())
            .await
            .is_err(),
        "a tampered frame is never delivered"
    );
    assert!(
        rep.stats().rejects(RejectReason::ProtocolError) >= 1,
        "{}",
        rep.stats()
    );
}

#[tokio::test]
async fn describe_never_decodes_ciphertext_as_a_protocol_header() {
    use sp_crypto::noise::{self, NoiseConfig, StaticKeypair};
    use spstack::wiretap::{Dir, Wiretap};
    let noise = || noise::layer(NoiseConfig::new(StaticKeypair::generate()).accept_any_key());
    let rep = spstack::rep0().pipe_layer(noise()).build();
    let ep = rep.listen("tcp://127.0.0.1:0").await.unwrap();
    let tap = Wiretap::start(ep.url(), None).await.unwrap();
    let req = spstack::req0().pipe_layer(noise()).build();
    timeout(T, req.dial(&tap.url)).await.unwrap().unwrap();
    req.send("a request nobody on the path may read")
        .await
        .unwrap();
    timeout(T, rep.recv()).await.unwrap().unwrap();
    // XX takes three handshake frames up, then the request
    let up = timeout(T, tap.wait_frames(0, Dir::Up, 3))
        .await
        .unwrap()
        .unwrap();
    let wire = up.last().unwrap();
    let mut framed = (wire.len() as u64).to_be_bytes().to_vec();
    framed.extend_from_slice(wire);
    let d = req.describe("tcp", &framed).unwrap();
    println!("{d}");
    let o = d
        .opaque
        .as_ref()
        .expect("the sealed payload is reported opaque");
    assert_eq!(o.component, "noise-xx/2");
    assert_eq!(
        o.offset,
        8 + 5,
        "after the length and the sealed record header"
    );
    assert_eq!(
        o.len,
        wire.len() - 5 - 16,
        "all but the record header and its tag"
    );
    assert!(
        d.field("backtrace").is_none() && d.body.is_empty(),
        "ciphertext decoded as a backtrace: {d}"
    );
    // and over TLS the whole capture is the session's records
    let tls = spstack::req0()
        .transport(Arc::new(sp_transports::tls::tls_tcp(
            sp_transports::tls::TlsConfig::new(),
        )))
        .build();
    let d = tls.describe("tls+tcp", &framed).unwrap();
    assert_eq!(d.opaque.as_ref().map(|o| o.offset), Some(0), "{d}");
    assert!(d.fields.is_empty(), "{d}");
}

/// Noise under an optional `heartbeat/1`: the stack is not optional as a
/// whole, so a plain peer is refused both ways and never served without
/// encryption (no downgrade), and the dialer does not redial plain.
#[tokio::test]
async fn a_noise_stack_with_heartbeat_refuses_a_plain_peer_both_ways() {
    use sp_crypto::noise::{self, NoiseConfig, StaticKeypair};
    use sp_reliable::heartbeat;
    let stack = |b: spstack::SocketBuilder| {
        b.pipe_layer(noise::layer(
            NoiseConfig::new(StaticKeypair::generate()).accept_any_key(),
        ))
        .pipe_layer(heartbeat::layer(Duration::from_secs(1)))
    };
    // a secure listener, a plain dialer
    let pull = stack(spstack::pull0()).build();
    let ep = pull.listen("tcp://127.0.0.1:0").await.unwrap();
    let plain = spstack::push0().build();
    assert!(plain.dial(ep.url()).await.is_err(), "served plain");
    // a secure dialer, a plain listener
    let plain_pull = spstack::pull0().build();
    let plain_ep = plain_pull.listen("tcp://127.0.0.1:0").await.unwrap();
    let push = stack(spstack::push0()).build();
    let e = push.dial(plain_ep.url()).await.expect_err("downgraded");
    assert!(
        matches!(
            &e,
            spstack::Error::Mismatch {
                index: Some(0),
                theirs: None,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(push.stats().rejects(RejectReason::PlainPeer), 0);
    for _ in 0..200 {
        if pull.stats().rejects(RejectReason::LayerMismatch) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(pull.stats().rejects(RejectReason::LayerMismatch), 1);
    assert!(pull.pipes().is_empty() && push.pipes().is_empty());
}
