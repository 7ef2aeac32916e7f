//! A real browser speaks SP over WebSocket: headless Chromium opens the page
//! of `examples/axum_gateway.rs`, whose JavaScript sends three REQ requests
//! (`new WebSocket(url, "rep.sp.nanomsg.org")`, 4-byte request id with the
//! top bit set, then the payload) to the cooked REP socket mounted at `/sp`,
//! and writes the replies into the DOM. The test drives Chromium through
//! chromedriver (WebDriver), polls what the page shows until the replies are
//! in, and saves a screenshot.
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install chromium
//! chromium-driver`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The longest a browser run may take before it is killed.
const BROWSER_LIMIT: Duration = Duration::from_secs(60);

/// Kills the child when the test ends, however it ends.
struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = Command::new("which").arg(name).output() {
            if out.status.success() {
                let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if !p.is_empty() {
                    return PathBuf::from(p);
                }
            }
        }
    }
    panic!(
        "chromium is not installed: run `sudo apt-get install -y chromium chromium-driver` \
         (Debian/Ubuntu) so this test can drive a real browser"
    );
}

/// Builds the example if needed and returns its binary.
fn example_binary() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("debug/examples/axum_gateway");
    // always ask cargo: it is a no-op when the binary is fresh, and a stale
    // binary would test old code
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--example", "axum_gateway"])
        .current_dir(root)
        .status()
        .expect("run cargo build --example axum_gateway");
    assert!(
        status.success(),
        "cargo build --example axum_gateway failed"
    );
    assert!(bin.exists(), "{} missing after the build", bin.display());
    bin
}

/// The port chromedriver started on (`--port=0` lets it choose one, and it
/// says which on stdout); the rest of its output is drained in the
/// background so it never blocks on a full pipe.
fn driver_port(child: &mut Child) -> u16 {
    let out = child.stdout.take().expect("chromedriver's stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(out);
        let mut line = String::new();
        while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if let Some(p) = line
                .split("started successfully on port ")
                .nth(1)
                .and_then(|rest| rest.trim().trim_end_matches('.').parse::<u16>().ok())
            {
                let _ = tx.send(p);
            }
            line.clear();
        }
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("chromedriver did not say which port it listens on")
}

/// One WebDriver command: a minimal HTTP/1.1 exchange with the local
/// chromedriver (one request per connection), returning the JSON `value`.
fn webdriver(
    port: u16,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    use std::io::{Read, Write};
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to chromedriver");
    s.set_read_timeout(Some(BROWSER_LIMIT)).expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write to chromedriver");
    // read the head, then exactly Content-Length bytes: chromedriver may
    // keep the connection open whatever we ask
    let mut r = BufReader::new(s);
    let mut head = String::new();
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).expect("read from chromedriver") == 0 {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().expect("content-length");
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let mut json = vec![0u8; len];
    r.read_exact(&mut json)
        .expect("read the body from chromedriver");
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap_or_else(|e| {
        panic!(
            "chromedriver answered {method} {path} with non-JSON ({e}): {head}{}",
            String::from_utf8_lossy(&json)
        )
    });
    v["value"].clone()
}

/// chromedriver running Chromium headless; quits both when dropped.
struct Browser {
    port: u16,
    session: String,
    _driver: Guard,
}

impl Browser {
    fn start(profile: &Path) -> Browser {
        let chromium = chromium();
        let driver = Command::new("chromedriver")
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run chromedriver ({e}): run `sudo apt-get install -y chromium chromium-driver`"
                )
            });
        let mut driver = Guard(driver);
        let port = driver_port(&mut driver.0);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=800,400",
                format!("--user-data-dir={}", profile.display()),
            ]
        }}}});
        let v = webdriver(port, "POST", "/session", Some(caps));
        let session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver opened no session: {v}"))
            .to_string();
        Browser {
            port,
            session,
            _driver: driver,
        }
    }

    fn cmd(&self, method: &str, what: &str, body: Option<serde_json::Value>) -> serde_json::Value {
        webdriver(
            self.port,
            method,
            &format!("/session/{}/{what}", self.session),
            body,
        )
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| {
            webdriver(
                self.port,
                "DELETE",
                &format!("/session/{}", self.session),
                None,
            )
        });
    }
}

#[test]
fn chromium_talks_req_to_the_axum_gateway() {
    let bin = example_binary();
    let mut server = Command::new(bin)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the example");
    let stdout = server.stdout.take().expect("stdout");
    let _server = Guard(server);
    // the example prints its address first; read it on a thread so a
    // silent server fails the test instead of hanging it
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the example did not print its address within 30 s");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();

    let profile = std::env::temp_dir().join(format!("spstack-chromium-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&profile);
    std::fs::create_dir_all(&profile).expect("profile dir");
    let browser = Browser::start(&profile);
    browser.cmd("POST", "url", Some(serde_json::json!({ "url": url })));
    // the page's JavaScript talks to the REP socket on its own time: poll
    // what it shows, for at most BROWSER_LIMIT
    let read = serde_json::json!({
        "script": "return document.getElementById('status').textContent + '|' + \
                   Array.from(document.querySelectorAll('li.reply')).map(e => e.textContent).join(',');",
        "args": []
    });
    let start = Instant::now();
    let shown = loop {
        let v = browser.cmd("POST", "execute/sync", Some(read.clone()));
        let shown = v.as_str().unwrap_or_default().to_string();
        if shown.starts_with("done") || start.elapsed() > BROWSER_LIMIT {
            break shown;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (status, replies) = shown.split_once('|').unwrap_or((&shown, ""));
    assert_eq!(status, "done: 3 replies", "the page shows {shown:?}");
    let mut replies: Vec<&str> = replies.split(',').collect();
    replies.sort_unstable();
    assert_eq!(replies, ["echo: alpha", "echo: beta", "echo: gamma"]);

    let png = browser.cmd("GET", "screenshot", None);
    let png = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        png.as_str().expect("screenshot as base64"),
    )
    .expect("screenshot decodes");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let shot = std::env::temp_dir().join(format!("spstack-browser-{}.png", std::process::id()));
    std::fs::write(&shot, &png).expect("write the screenshot");
    println!(
        "screenshot: {} ({} bytes); the page showed {shown:?}",
        shot.display(),
        png.len()
    );
    drop(browser);
    let _ = std::fs::remove_dir_all(&profile);
}
