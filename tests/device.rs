//! Devices: raw REP + raw REQ joined with `spstack::device`, chains of them,
//! the backtrace growing one word per hop, and the TTL guard against loops.

use std::future::Future;
use std::time::Duration;

use spstack::{DropReason, Error, Message, Options, Protocol, Socket};

const LIMIT: Duration = Duration::from_secs(5);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

fn word(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes(b[4 * i..4 * i + 4].try_into().unwrap())
}

/// One device: a raw REP facing clients (listening) and a raw REQ facing
/// servers (dialed to `upstream`), joined in a spawned task.
struct Device {
    front: Socket,
    back: Socket,
    url: String,
}

async fn device_to(upstream: &str, opts: Options) -> Device {
    let front = spstack::raw(Protocol::Rep0).options(opts.clone()).build();
    let back = spstack::raw(Protocol::Req0).options(opts).build();
    let ep = front.listen("tcp://127.0.0.1:0").await.unwrap();
    within("device dials upstream", back.dial(upstream))
        .await
        .unwrap();
    let (f, b) = (front.clone(), back.clone());
    tokio::spawn(async move { spstack::device(&f, &b).await });
    Device {
        front,
        back,
        url: ep.url().to_string(),
    }
}

/// `n` devices in a chain ending at `server_url`; returns them, the one
/// clients dial last.
async fn chain(n: usize, server_url: &str, opts: Options) -> Vec<Device> {
    let mut devices: Vec<Device> = Vec::new();
    let mut up = server_url.to_string();
    for _ in 0..n {
        let d = device_to(&up, opts.clone()).await;
        up = d.url.clone();
        devices.push(d);
    }
    devices
}

fn echo_server(rep: Socket) {
    let svc = tower::service_fn(|m: Message| async move {
        let mut v = b"echo:".to_vec();
        v.extend_from_slice(m.body());
        Ok::<_, Error>(Message::from(v))
    });
    tokio::spawn(spstack::rep::serve(rep, svc, 4));
}

#[tokio::test]
async fn req_device_device_rep_over_tcp() {
    let rep = spstack::typed::rep0().build();
    let ep = rep.listen("tcp://127.0.0.1:0").await.unwrap();
    echo_server(rep.clone().into());
    let devices = chain(2, ep.url(), Options::default()).await;
    let req = spstack::typed::req0().build();
    within("client dial", req.dial(&devices.last().unwrap().url))
        .await
        .unwrap();
    for i in 0..20 {
        let body = format!("hello {i}");
        req.send(body.as_str()).await.unwrap();
        let r = within("reply through two devices", req.recv())
            .await
            .unwrap();
        assert_eq!(r.body(), format!("echo:{body}").as_bytes());
    }
    // and concurrently through contexts
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let c = req.context();
            tokio::spawn(async move {
                c.send(format!("c{i}").as_str()).await?;
                Ok::<_, Error>((i, c.recv().await?))
            })
        })
        .collect();
    for r in within("contexts", futures::future::join_all(calls)).await {
        let (i, m) = r.unwrap().unwrap();
        assert_eq!(m.body(), format!("echo:c{i}").as_bytes());
    }
    for d in &devices {
        assert_eq!(d.front.stats().msgs_in, 40);
        assert_eq!(d.back.stats().msgs_in, 40);
    }
}

#[tokio::test]
async fn raw_rep_of_a_device_sees_pipe_id_and_request_id() {
    // a device forwarded by hand, to look at what its raw REP receives
    let rep = spstack::typed::rep0().build();
    let server = rep.listen("tcp://127.0.0.1:0").await.unwrap();
    echo_server(rep.clone().into());
    let front = spstack::raw(Protocol::Rep0).build();
    let back = spstack::raw(Protocol::Req0).build();
    let ep = front.listen("tcp://127.0.0.1:0").await.unwrap();
    within("back dial", back.dial(server.url())).await.unwrap();
    let req = spstack::typed::req0().build();
    within("client dial", req.dial(ep.url())).await.unwrap();

    req.send("by hand").await.unwrap();
    let m = within("front recv", front.recv()).await.unwrap();
    let h = m.header().to_vec();
    assert_eq!(h.len(), 8, "pipe id + request id, got {h:02x?}");
    assert_eq!(
        Some(word(&h, 0)),
        m.pipe(),
        "first word is the arriving pipe"
    );
    assert_eq!(word(&h, 0) & 0x8000_0000, 0);
    assert_ne!(word(&h, 1) & 0x8000_0000, 0, "last word is the request id");
    assert_eq!(m.body(), b"by hand");
    back.send(m).await.unwrap();

    let r = within("back recv", back.recv()).await.unwrap();
    assert_eq!(
        r.header(),
        &h[..],
        "the reply carries the same backtrace back"
    );
    assert_eq!(r.body(), b"echo:by hand");
    front.send(r).await.unwrap();
    let reply = within("client recv", req.recv()).await.unwrap();
    assert_eq!(reply.body(), b"echo:by hand");
}

#[tokio::test]
async fn backtrace_grows_one_word_per_device() {
    for n in 0..=3usize {
        let server = spstack::raw(Protocol::Rep0).build();
        let ep = server.listen("tcp://127.0.0.1:0").await.unwrap();
        let devices = chain(n, ep.url(), Options::default()).await;
        let entry = devices
            .last()
            .map(|d| d.url.clone())
            .unwrap_or_else(|| ep.url().to_string());
        let req = spstack::typed::req0().build();
        within("client dial", req.dial(&entry)).await.unwrap();
        req.send("trace").await.unwrap();
        let m = within("server recv", server.recv()).await.unwrap();
        let h = m.header().to_vec();
        assert_eq!(
            h.len(),
            4 * (2 + n),
            "{n} devices: header {h:02x?} should be server pipe + {n} device pipes + request id"
        );
        let words = h.len() / 4;
        for i in 0..words - 1 {
            assert_eq!(word(&h, i) & 0x8000_0000, 0, "hop word {i} of {h:02x?}");
        }
        assert_ne!(word(&h, words - 1) & 0x8000_0000, 0);
        // the reply finds its way back through every device
        let mut reply = Message::from("back");
        reply.set_header(&h);
        server.send(reply).await.unwrap();
        let r = within("client recv", req.recv()).await.unwrap();
        assert_eq!(r.body(), b"back", "{n} devices");
    }
}

#[tokio::test]
async fn ttl_stops_a_device_loop() {
    let opts = Options::default(); // ttl 8
    let rep1 = spstack::raw(Protocol::Rep0).options(opts.clone()).build();
    let req1 = spstack::raw(Protocol::Req0).options(opts.clone()).build();
    let rep2 = spstack::raw(Protocol::Rep0).options(opts.clone()).build();
    let req2 = spstack::raw(Protocol::Req0).options(opts).build();
    let l1 = rep1.listen("tcp://127.0.0.1:0").await.unwrap();
    let l2 = rep2.listen("tcp://127.0.0.1:0").await.unwrap();
    // device1 forwards to device2, which forwards back to device1
    within("req1 -> rep2", req1.dial(l2.url())).await.unwrap();
    within("req2 -> rep1", req2.dial(l1.url())).await.unwrap();
    for (a, b) in [(rep1.clone(), req1.clone()), (rep2.clone(), req2.clone())] {
        tokio::spawn(async move { spstack::device(&a, &b).await });
    }
    let client = spstack::typed::req0().build();
    within("client dial", client.dial(l1.url())).await.unwrap();
    client.send("round and round").await.unwrap();

    let ttl_drops = || {
        rep1.stats().drops(DropReason::TtlExceeded) + rep2.stats().drops(DropReason::TtlExceeded)
    };
    within("a TTL drop", async {
        while ttl_drops() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let before = rep1.stats().msgs_in + rep2.stats().msgs_in;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rep1.stats().msgs_in + rep2.stats().msgs_in;
    assert_eq!(before, after, "the loop must stop");
    assert!(after <= 20, "{after} messages went round the loop");
    // with ttl 8: words 1..=8 pass, the 9th hop drops it
    assert_eq!(after, 9, "rep1 {} rep2 {}", rep1.stats(), rep2.stats());
    assert_eq!(ttl_drops(), 1);
    // the client never gets a reply
    let r = tokio::time::timeout(Duration::from_millis(100), client.recv()).await;
    assert!(r.is_err(), "no reply expected, got {r:?}");
}

/// A chain of `n` devices whose sockets have `ttl(3)`, in front of a default
/// REP: does a request get through?
async fn chain_with_ttl3(n: usize) -> (bool, Vec<Device>) {
    let rep = spstack::typed::rep0().build();
    let ep = rep.listen("tcp://127.0.0.1:0").await.unwrap();
    echo_server(rep.clone().into());
    let devices = chain(n, ep.url(), Options::default().ttl(3)).await;
    let req = spstack::typed::req0().build();
    within("client dial", req.dial(&devices.last().unwrap().url))
        .await
        .unwrap();
    req.send("hop").await.unwrap();
    let delivered = match tokio::time::timeout(Duration::from_millis(500), req.recv()).await {
        Ok(r) => {
            assert_eq!(r.unwrap().body(), b"echo:hop");
            true
        }
        Err(_) => false,
    };
    (delivered, devices)
}

#[tokio::test]
async fn ttl3_three_devices_deliver() {
    let (ok, devices) = chain_with_ttl3(3).await;
    let drops: Vec<(u64, u64)> = devices
        .iter()
        .map(|d| {
            (
                d.front.stats().drops(DropReason::TtlExceeded),
                d.back.stats().drops(DropReason::TtlExceeded),
            )
        })
        .collect();
    assert!(
        ok,
        "3 devices with ttl 3 must deliver; TtlExceeded (front, back) per device: {drops:?}"
    );
    assert!(drops.iter().all(|&(f, b)| f == 0 && b == 0), "{drops:?}");
}

#[tokio::test]
async fn ttl3_four_devices_drop() {
    let (ok, devices) = chain_with_ttl3(4).await;
    assert!(!ok, "4 devices with ttl 3 must drop");
    // devices are listed from the server outward: the first sees 4 words
    // (3 device hops + the request id) and drops
    let counts: Vec<u64> = devices
        .iter()
        .map(|d| d.front.stats().drops(DropReason::TtlExceeded))
        .collect();
    assert_eq!(
        counts,
        vec![1, 0, 0, 0],
        "TtlExceeded per device (server side first)"
    );
    assert_eq!(
        devices[0].back.stats().msgs_out,
        0,
        "nothing reached the server"
    );
}
