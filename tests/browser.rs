//! A real browser speaks SP over WebSocket: headless Chromium opens the page
//! of `examples/axum_gateway.rs`, whose JavaScript sends three REQ requests
//! (`new WebSocket(url, "rep.sp.nanomsg.org")`, 4-byte request id with the
//! top bit set, then the payload) to the cooked REP socket mounted at `/sp`,
//! and writes the replies into the DOM. The test reads the DOM Chromium
//! dumps and saves a screenshot.
//!
//! Needs `chromium` (Debian: `apt-get install chromium chromium-driver`).

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

/// Runs chromium with `args` on `url`, killing it after [`BROWSER_LIMIT`];
/// returns its stdout.
fn run_browser(args: &[&str], url: &str, profile: &Path) -> String {
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .arg(url)
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let child = cmd.spawn().expect("start chromium");
    let mut guard = Guard(child);
    let mut stdout = guard.0.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        let _ = tx.send(s);
    });
    let start = Instant::now();
    loop {
        if let Ok(Some(_)) = guard.0.try_wait() {
            break;
        }
        if start.elapsed() > BROWSER_LIMIT {
            panic!("chromium did not finish within {BROWSER_LIMIT:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default()
}

#[test]
fn chromium_talks_req_to_the_axum_gateway() {
    let browser = chromium();
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

    // `--dump-dom` prints the DOM when the virtual time budget runs out,
    // and WebSocket traffic does not hold virtual time back: on a loaded
    // machine the replies can land after the dump. Give it three tries.
    let mut dom = String::new();
    for _ in 0..3 {
        dom = run_browser(
            &["--dump-dom", "--virtual-time-budget=10000"],
            &url,
            &profile,
        );
        if dom.contains("done: 3 replies") {
            break;
        }
    }
    assert!(
        dom.contains("open, protocol rep.sp.nanomsg.org") || dom.contains("done: 3 replies"),
        "the page never opened the WebSocket with the SP subprotocol; DOM:\n{dom}"
    );
    for word in ["alpha", "beta", "gamma"] {
        assert!(
            dom.contains(&format!("<li class=\"reply\">echo: {word}</li>")),
            "no reply for {word:?} in the DOM:\n{dom}"
        );
    }
    assert!(dom.contains("done: 3 replies"), "DOM:\n{dom}");

    let shot = std::env::temp_dir().join(format!("spstack-browser-{}.png", std::process::id()));
    let _ = std::fs::remove_file(&shot);
    let shot_profile = profile.join("shot");
    run_browser(
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=800,400",
            "--virtual-time-budget=10000",
        ],
        &url,
        &shot_profile,
    );
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 1000, "no screenshot written at {}", shot.display());
    println!(
        "screenshot: {} ({size} bytes, {})",
        shot.display(),
        browser.display()
    );
    let _ = std::fs::remove_dir_all(&profile);
}
