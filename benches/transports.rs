//! PUSH → PULL throughput over tcp, tls+tcp, ws, wss and quic at 64 B and
//! 64 KiB, spstack beside nng (through pynng, `benches/peers/pynng_thr.py`)
//! on the same transports, with the same self-signed certificate, in one
//! run (nng has no QUIC transport: spstack alone there).
//! `benches/run_transports.sh` adds nng's C harness for tcp and ws.
//!
//! `cargo bench --bench transports`; `SPBENCH_QUICK=1` for a smoke run;
//! `SPBENCH_NO_PYNNG=1` to skip the nng side.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use sp_transports::tls::{tls_tcp, Identity, Roots, TlsConfig};
use sp_transports::{Tcp, Tls};
use sp_ws::Ws;
use spstack::{Options, SocketBuilder};

const SIZES: [usize; 2] = [64, 65536];
const SCHEMES: [&str; 5] = ["tcp", "tls+tcp", "ws", "wss", "quic"];

fn quick() -> bool {
    std::env::var("SPBENCH_QUICK").is_ok_and(|v| v == "1")
}

fn secs() -> f64 {
    if quick() {
        0.3
    } else {
        2.0
    }
}

struct Cert {
    tls: TlsConfig,
    cert_key_pem: PathBuf,
    ca_pem: PathBuf,
}

fn cert() -> Cert {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("certificate");
    let der = CertificateDer::from(c.cert.der().to_vec());
    let key = PrivatePkcs8KeyDer::from(c.key_pair.serialize_der());
    let tls = TlsConfig::new()
        .server_identity(Identity::from_der(vec![der.clone()], key.into()))
        .roots(Roots::from_der(vec![der]))
        .server_name("localhost");
    let dir = std::env::temp_dir().join(format!("spbench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cert_key_pem = dir.join("cert_key.pem");
    let ca_pem = dir.join("ca.pem");
    std::fs::write(
        &cert_key_pem,
        format!("{}{}", c.cert.pem(), c.key_pair.serialize_pem()),
    )
    .expect("write pem");
    std::fs::write(&ca_pem, c.cert.pem()).expect("write pem");
    Cert {
        tls,
        cert_key_pem,
        ca_pem,
    }
}

fn with_all(b: SocketBuilder, tls: &TlsConfig) -> SocketBuilder {
    b.options(Options::default().recv_max_size(2 << 20))
        .transport(Arc::new(tls_tcp(tls.clone())))
        .transport(Arc::new(Ws::new(Tcp)))
        .transport(Arc::new(Ws::secure(Tls::new(Tcp, tls.clone()))))
        .transport(Arc::new(sp_quic::quic(tls.clone())))
}

fn url(scheme: &str) -> String {
    match scheme {
        "ws" | "wss" => format!("{scheme}://localhost:0/bench"),
        // quic listens on one address: the IPv4 loopback, as the others
        // end up on (the certificate is checked for "localhost" by name)
        "quic" => "quic://127.0.0.1:0".to_string(),
        s => format!("{s}://localhost:0"),
    }
}

async fn spstack_thr(scheme: &str, size: usize, tls: &TlsConfig) -> f64 {
    let pull = with_all(spstack::pull0(), tls).build();
    let ep = pull.listen(&url(scheme)).await.expect("listen");
    let push = with_all(spstack::push0(), tls).build();
    push.dial(ep.url()).await.expect("dial");
    let stop = Arc::new(AtomicBool::new(false));
    let (p, s) = (push.clone(), stop.clone());
    let sender = tokio::spawn(async move {
        while !s.load(Ordering::Relaxed) {
            if p.send(p.new_message(size)).await.is_err() {
                break;
            }
        }
    });
    // warm up, then count for a fixed time
    for _ in 0..100 {
        let _ = tokio::time::timeout(Duration::from_secs(5), pull.recv()).await;
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs() {
        match tokio::time::timeout(Duration::from_secs(5), pull.recv()).await {
            Ok(Ok(_)) => n += 1,
            _ => break,
        }
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    push.close();
    pull.close();
    let _ = sender.await;
    rate
}

fn pynng_thr(scheme: &str, size: usize, port: u16, c: &Cert) {
    let url = match scheme {
        "ws" | "wss" => format!("{scheme}://localhost:{port}/bench"),
        s => format!("{s}://localhost:{port}"),
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/peers/pynng_thr.py");
    let mut cmd = std::process::Command::new("timeout");
    cmd.arg("60")
        .arg("python3")
        .arg(script)
        .arg(&url)
        .arg(size.to_string())
        .arg(secs().to_string());
    if scheme == "tls+tcp" || scheme == "wss" {
        cmd.arg(&c.cert_key_pem).arg(&c.ca_pem);
    }
    match cmd.output() {
        Ok(o) if o.status.success() => print!("{}", String::from_utf8_lossy(&o.stdout)),
        Ok(o) => eprintln!(
            "pynng {url} failed: {}",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ),
        Err(e) => eprintln!("cannot run python3: {e}"),
    }
}

fn main() {
    let c = cert();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "# PUSH -> PULL, one process each side's library, 2 cores; self-signed cert for localhost"
    );
    let mut port = 33000 + (std::process::id() % 2000) as u16;
    for scheme in SCHEMES {
        for size in SIZES {
            let rate = rt.block_on(spstack_thr(scheme, size, &c.tls));
            println!(
                "RESULT lib=spstack test=thr url={scheme} size={size} msgps={rate:.0} MBps={:.2}",
                rate * size as f64 / 1e6
            );
            if scheme != "quic" && std::env::var("SPBENCH_NO_PYNNG").is_err() {
                port += 1;
                pynng_thr(scheme, size, port, &c);
            }
        }
    }
}
