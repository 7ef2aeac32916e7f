//! The seed's scenario: a REQ client → device → device → REP server, every
//! hop encrypted with its own Noise keys, requests and replies signed end to
//! end with Ed25519. Prints what each hop carries and what each end checks,
//! then plays three attacks and shows how each is stopped.
//!
//! ```text
//! [integrity] → [REQ] → [noise] → [tcp] ─hop 1─ device 1 ─hop 2─ device 2 ─hop 3─ [tcp] → [noise] → [REP] → [integrity]
//! ```
//!
//! Run with `cargo run --example secure_relay`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sp_crypto::integrity::{Integrity, IntegrityConfig, IntegrityStats};
use sp_crypto::keys::SigningKeypair;
use sp_crypto::noise::{self, NoiseConfig, StaticKeypair};
use spstack::wiretap::{Dir, Wiretap};
use spstack::{Message, PipeEvent, Protocol, Socket, SocketBuilder};

fn short(k: &[u8]) -> String {
    k.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

fn hex(b: &[u8], n: usize) -> String {
    let h: String = b.iter().take(n).map(|b| format!("{b:02x}")).collect();
    format!("{h}… ({} bytes)", b.len())
}

/// A Noise hop layer for `me` that admits only `peer`.
fn hop(b: SocketBuilder, me: &StaticKeypair, peer: &StaticKeypair) -> SocketBuilder {
    b.pipe_layer(noise::layer(
        NoiseConfig::new(me.clone()).allow(peer.public()),
    ))
}

/// Prints every pipe a socket opens, with the peer key its hop verified.
fn announce_pipes(name: &'static str, s: &Socket) {
    let mut ev = s.pipe_events();
    tokio::spawn(async move {
        while let Ok(e) = ev.recv().await {
            match e {
                PipeEvent::AddPost(_, info) => println!(
                    "  {name}: pipe up over {} from {}, peer's Noise key {} verified",
                    info.transport,
                    info.peer_addr,
                    info.peer_identity.as_deref().map(short).unwrap_or_default()
                ),
                PipeEvent::RemovePost(_, _) => println!("  {name}: pipe closed"),
                _ => {}
            }
        }
    });
}

/// Device 2 forwards like `spstack::device`, but can be made to flip a byte:
/// a compromised relay.
fn start_compromised_device(front: Socket, back: Socket, tamper: Arc<AtomicBool>) {
    let (f, b) = (front.clone(), back.clone());
    tokio::spawn(async move {
        while let Ok(m) = f.recv().await {
            let mut fwd = Message::from(m.body());
            fwd.set_header(m.header());
            if tamper.load(Ordering::Relaxed) {
                if let Some(last) = fwd.body_mut().last_mut() {
                    *last ^= 1;
                }
                println!("  device 2: flipped the last body byte of a request");
            }
            if b.send(fwd).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        while let Ok(mut m) = back.recv().await {
            m.set_pipe(None);
            if front.send(m).await.is_err() {
                break;
            }
        }
    });
}

async fn ask(client: &Socket, what: &str) -> Option<String> {
    let mut ctx = client.context();
    ctx.send(what).await.ok()?;
    match tokio::time::timeout(Duration::from_secs(1), ctx.recv()).await {
        Ok(Ok(r)) => Some(String::from_utf8_lossy(r.body()).into_owned()),
        _ => None,
    }
}

fn report(name: &str, s: &IntegrityStats) {
    println!(
        "  {name}: verified {}, dropped: bad signature {}, unknown signer {}, unsigned {}, misdirected {}, replayed {}, duplicate {}, stale {}, unbound reply {}",
        s.verified(),
        s.bad_signature(),
        s.unknown_signer(),
        s.unsigned(),
        s.misdirected(),
        s.replayed(),
        s.duplicate(),
        s.stale(),
        s.unbound_reply()
    );
}

/// The service both ends sign for (the integrity layer's audience).
const SERVICE: &str = "payments";

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    println!("== keys: one Noise static key per pipe end, one Ed25519 signing key per end point");
    let (client_k, d1f_k, d1b_k) = (
        StaticKeypair::generate(),
        StaticKeypair::generate(),
        StaticKeypair::generate(),
    );
    let (d2f_k, d2b_k, server_k) = (
        StaticKeypair::generate(),
        StaticKeypair::generate(),
        StaticKeypair::generate(),
    );
    let client_signer = SigningKeypair::generate();
    let server_signer = SigningKeypair::generate();
    println!(
        "  client signs as {}, server signs as {}",
        short(&client_signer.key_id()),
        short(&server_signer.key_id())
    );

    println!("== building the chain (each listener admits exactly one Noise key)");
    // both ends sign for the "payments" service: a message signed for
    // another service that trusts the same keys does not verify here
    let server_integrity = Integrity::replier(IntegrityConfig::new(
        server_signer.clone(),
        [client_signer.verifying_key()],
        SERVICE,
    )?);
    let server_stats = server_integrity.stats();
    let server = hop(spstack::rep0(), &server_k, &d2b_k)
        .message_layer(server_integrity)
        .build();
    announce_pipes("server", &server);
    let server_ep = server.listen("tcp://127.0.0.1:0").await?;
    let tap3 = Wiretap::start(server_ep.url(), None).await?;

    let d2_front = hop(spstack::raw(Protocol::Rep0), &d2f_k, &d1b_k).build();
    announce_pipes("device 2", &d2_front);
    let d2_ep = d2_front.listen("tcp://127.0.0.1:0").await?;
    let d2_back = hop(spstack::raw(Protocol::Req0), &d2b_k, &server_k).build();
    d2_back.dial(&tap3.url).await?;
    let tap2 = Wiretap::start(d2_ep.url(), None).await?;
    let tamper = Arc::new(AtomicBool::new(false));
    start_compromised_device(d2_front.clone(), d2_back.clone(), tamper.clone());

    let d1_front = hop(spstack::raw(Protocol::Rep0), &d1f_k, &client_k).build();
    announce_pipes("device 1", &d1_front);
    let d1_ep = d1_front.listen("tcp://127.0.0.1:0").await?;
    let d1_back = hop(spstack::raw(Protocol::Req0), &d1b_k, &d2f_k).build();
    d1_back.dial(&tap2.url).await?;
    let tap1 = Wiretap::start(d1_ep.url(), None).await?;
    {
        let (f, b) = (d1_front.clone(), d1_back.clone());
        tokio::spawn(async move { spstack::device(&f, &b).await });
    }

    // its requests are addressed to this one server, and only its replies count
    let client_integrity = Integrity::requester(
        IntegrityConfig::new(
            client_signer.clone(),
            [server_signer.verifying_key()],
            SERVICE,
        )?
        .answered_by([server_signer.verifying_key()]),
    );
    let client_stats = client_integrity.stats();
    let client = hop(spstack::req0(), &client_k, &d1f_k)
        .message_layer(client_integrity)
        .build();
    client.dial(&tap1.url).await?;

    // the server answers every verified request
    {
        let s = server.clone();
        tokio::spawn(async move {
            while let Ok(m) = s.recv().await {
                println!(
                    "  server: verified request {:?}",
                    String::from_utf8_lossy(m.body())
                );
                let reply = [b"receipt for ".as_slice(), m.body()].concat();
                if s.send(reply).await.is_err() {
                    break;
                }
            }
        });
    }

    println!("== a signed request through two devices");
    let reply = ask(&client, "transfer 10 to bob").await;
    println!("  client: verified reply {reply:?}");
    for (name, tap) in [("hop 1", &tap1), ("hop 2", &tap2), ("hop 3", &tap3)] {
        let frames = tap.frames_of(0, Dir::Up);
        if let Some(last) = frames.last() {
            println!(
                "  {name} carried the request as {} — different bytes on every hop",
                hex(last, 12)
            );
        }
    }

    println!("== attack 1: device 2 flips one byte of the body");
    tamper.store(true, Ordering::Relaxed);
    let r = ask(&client, "transfer 10 to bob").await;
    println!(
        "  client: {}",
        r.map_or(
            "no reply (the server dropped the request)".into(),
            |r| format!("reply {r:?}")
        )
    );
    tamper.store(false, Ordering::Relaxed);
    report("server", &server_stats);

    println!("== attack 2: device 2 forges requests (it has no trusted key)");
    let forger = Integrity::requester(IntegrityConfig::new(
        SigningKeypair::generate(),
        Vec::<ed25519_dalek::VerifyingKey>::new(),
        SERVICE,
    )?)
    .on_protocol(spstack::ProtocolId::REQ0);
    for (what, body) in [
        ("unsigned", Message::from("transfer 1000 to mallory")),
        (
            "signed with its own key",
            forger.sign_message(b"transfer 1000 to mallory")?,
        ),
    ] {
        let mut m = body;
        m.push_header_u32(0x8000_0001);
        d2_back.send(m).await?;
        println!("  device 2: sent a forged request, {what}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    report("server", &server_stats);

    println!("== attack 3: a captured hop-2 frame replayed into device 2");
    if let Some(captured) = tap2.frames_of(0, Dir::Up).last().cloned() {
        tap2.inject_up(&captured).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        println!(
            "  device 2: {} pipe(s) closed for bad frames; device 1 redials",
            d2_front.stats().pipes_closed
        );
    }
    let r = ask(&client, "transfer 5 to carol").await;
    println!("  client: after the redial, verified reply {r:?}");

    println!("== attack 4: an intruder whose Noise key is not on device 1's list");
    let intruder = hop(spstack::req0(), &StaticKeypair::generate(), &d1f_k).build();
    intruder.dial_background(&tap1.url)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!(
        "  device 1: refused {} pipe(s); the client still has its own",
        d1_front.stats().total_rejects()
    );

    println!("== totals");
    report("server", &server_stats);
    report("client", &client_stats);
    Ok(())
}
