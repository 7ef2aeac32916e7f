//! spcat: nngcat's command line, on spstack.
//!
//! Every nngcat 1.5.2 command line runs unchanged (nanocat's `--bind` and
//! `--connect` included), with nngcat's output bytes and exit codes. Beyond
//! nngcat: `--stats` prints the socket's counters to stderr at exit,
//! `--progress` shows counts and rates on stderr during `--count` and
//! `--interval` runs (on by itself when stderr is a terminal), `spcat
//! decode` decodes a captured frame layer by layer, `spcat dissector`
//! writes a Wireshark dissector for a stack, `spcat bench` measures
//! throughput or latency, and `-v` shows a ws/wss listener's port 0
//! resolved (nngcat resolves it for tcp only), and `quic://` (sp-quic)
//! takes the TLS flags as `tls+tcp://` does. stdout is always nngcat's.
#![deny(missing_docs)]

mod bench;
mod progress;

use spcat::{args, decode, dissector, format};

use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sp_transports::tls::{tls_tcp, Identity, Roots, TlsConfig};
use sp_transports::Tcp;
use sp_ws::Ws;
use spstack::{Error, Message, Options, Protocol, Socket};
use tokio::time::Instant;

use args::{intarg, secs, Format, Opt, Parser, Proto};

/// The socket whose counters `--stats` prints, once it exists.
static SOCKET: OnceLock<Socket> = OnceLock::new();
static WANT_STATS: AtomicBool = AtomicBool::new(false);

fn print_stats() {
    if WANT_STATS.load(Ordering::Relaxed) {
        if let Some(s) = SOCKET.get() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "{}", s.stats());
        }
    }
}

/// nngcat's `fatal`: the message on stderr, exit status 1.
fn fatal(msg: impl std::fmt::Display) -> ! {
    let _ = std::io::stdout().flush();
    // the progress line first: on a terminal the message would join it
    progress::end();
    eprintln!("{msg}");
    print_stats();
    std::process::exit(1);
}

fn finish(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    progress::end();
    print_stats();
    std::process::exit(code);
}

const HELP: &str = "\
Usage: spcat <proto> <addr>... [<fmt>] [<opts>...] [<src>]

<proto> must be one of:
  --req0                 (or alias --req)
  --rep0                 (or alias --rep)
  --pub0                 (or alias --pub)
  --sub0                 (or alias --sub)
  --push0                (or alias --push)
  --pull0                (or alias --pull)
  --surveyor0            (or alias --surveyor)
  --respondent0          (or alias --respondent)
  --pair0
  --pair1
  --pair                 (alias for either pair0 or pair1)
  --bus0                 (or alias --bus)

<addr> must be one or more of:
  --dial <url>           (or alias --connect <url>)
  --listen <url>         (or alias --bind <url>)
  --bind-local <port>    (or alias -L <port>)
  --connect-local <port> (or alias -l <port>)
  --bind-ipc <path>      (or alias -X <path>)
  --connect-ipc <path>   (or alias -x <path>)

<fmt> may be one or none of:
  --format <no|ascii|hex|msgpack|quoted|raw>
  --ascii                (or alias -A)
  --quoted               (or alias -Q)
  --hex
  --msgpack
  --raw

<opts> may be any of:
  --subscribe <topic>    (only with --sub protocol)
  --silent               (or alias -q)
  --verbose              (or alias -v)
  --count <num>          (or alias -C <num>)
  --delay <secs>         (or alias -d <secs>)
  --interval <secs>      (or alias -i <secs>)
  --recv-timeout <secs>
  --send-timeout <secs>
  --recv-maxsz <size>    (or alias -Z <size>)
  --compat
  --async
  --insecure             (or alias -k)
  --cacert <file>
  --cert <file>          (or alias -E <file>)
  --key <file>
  --zt-home <path>
  --stats                (spcat: print the socket's counters to stderr at exit)
  --progress             (spcat: counts, rates and drops on stderr during
                          --count/--interval runs; the default when stderr
                          is a terminal)
  --no-progress          (spcat: never)

<src> may be one of:
  --file <file>          (or alias -F <file>). Use - for standard input.
  --data <data>          (or alias -D <data>)

spcat decode --stack <layers> (--hex <hex> | --file <path>) [--transport <scheme> | --no-prefix]
  decodes one captured frame field by field; <layers>: pipe layers, the protocol,
  message layers, e.g. noise-xx/2,req0,integrity/2 (spcat decode --help)
spcat dissector --stack <layers> [--declare <format>]... [--port <port>]... [--output <file>]
  writes a Wireshark dissector (Lua) for SP/TCP with that stack (spcat dissector --help)
spcat bench (--push | --pull | --req | --rep) (--dial <url> | --listen <url>) [--size N] [--count N]
spcat bench --loopback [--latency] [--url <url>] [--size N] [--count N]
  PUSH/PULL throughput or REQ/REP latency, one summary line (spcat bench --help)
spcat keygen [--dir DIR] [--kind signing|noise|both] [--force] NAME
  writes Ed25519 signing keys (PKCS#8 / SPKI PEM) and Noise static keys (base64)
";

/// nngcat's TLS flags: file contents, loaded while parsing as nngcat does,
/// used only for `tls+tcp`, `wss` and `quic` addresses (QUIC's TLS takes
/// the same certificates).
#[derive(Debug, Default)]
struct Tls {
    cacert: Option<Vec<u8>>,
    cert: Option<Vec<u8>>,
    key: Option<Vec<u8>>,
    insecure: bool,
}

impl Tls {
    /// The TLS config nngcat's `configtls` would make: `--cert` (with
    /// `--key`, or the key in the same file) is the listener's certificate
    /// and the dialer's client certificate; `--cacert` verifies servers;
    /// `--insecure` skips that. As in nng, a listener asks no client
    /// certificate, so `--cacert` does not change what it accepts.
    fn config(&self) -> Result<TlsConfig, String> {
        let why = |e: Error| match e {
            Error::Layer { reason, .. } => reason,
            e => e.to_string(),
        };
        let mut c = TlsConfig::new();
        if let Some(cert) = &self.cert {
            let key = self.key.as_deref().unwrap_or(cert);
            let id = Identity::from_pem(cert, key).map_err(why)?;
            c = c.server_identity(id.clone()).client_identity(id);
        } else if self.key.is_some() {
            return Err("--key given without --cert".into());
        }
        if let Some(ca) = &self.cacert {
            c = c.roots(Roots::from_pem(ca).map_err(why)?);
        }
        if self.insecure {
            c = c.danger_accept_invalid_certs();
        }
        Ok(c)
    }
}

/// Everything the command line says.
#[derive(Debug, Default)]
struct Config {
    proto: Option<Proto>,
    /// (listen?, url)
    addrs: Vec<(bool, String)>,
    topics: Vec<Vec<u8>>,
    verbose: bool,
    format: Option<Format>,
    delay: Duration,
    interval: Option<Duration>,
    send_timeout: Option<Duration>,
    recv_timeout: Option<Duration>,
    recv_maxsz: Option<usize>,
    data: Option<Vec<u8>>,
    compat: bool,
    nonblock: bool,
    count: u64,
    tls: Tls,
    stats: bool,
    /// `--progress` / `--no-progress`; `None`: when stderr is a terminal.
    progress: Option<bool>,
}

fn loadfile(path: &[u8]) -> Vec<u8> {
    let shown = String::from_utf8_lossy(path);
    let strerror = |e: std::io::Error| {
        let s = e.to_string();
        // "No such file or directory (os error 2)" -> libc's wording
        match s.find(" (os error") {
            Some(i) => s[..i].to_string(),
            None => s,
        }
    };
    if path == b"-" {
        let mut v = Vec::new();
        if let Err(e) = std::io::stdin().read_to_end(&mut v) {
            fatal(format!("Read file {shown} failed: {}", strerror(e)));
        }
        return v;
    }
    let p = std::path::Path::new(std::ffi::OsStr::from_bytes(path));
    let mut f = match std::fs::File::open(p) {
        Ok(f) => f,
        Err(e) => fatal(format!("Cannot open file {shown}: {}", strerror(e))),
    };
    let mut v = Vec::new();
    if let Err(e) = f.read_to_end(&mut v) {
        fatal(format!("Read file {shown} failed: {}", strerror(e)));
    }
    v
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Parses and checks the command line in nngcat's order, with its messages.
fn parse(words: &[Vec<u8>]) -> Config {
    let mut c = Config::default();
    let mut p = Parser::new(words);
    loop {
        let (opt, arg) = match p.next_opt() {
            Ok(Some(x)) => x,
            Ok(None) => break,
            Err(e) => fatal(e),
        };
        let arg = arg.unwrap_or_default();
        let int = |max| intarg(arg, max).unwrap_or_else(|e| fatal(e));
        let sec = || secs(arg).unwrap_or_else(|e| fatal(e));
        match opt {
            Opt::Help => {
                print!("{HELP}");
                finish(1);
            }
            Opt::Proto(pr) => {
                if c.proto.is_some() {
                    fatal("Only one protocol may be specified.");
                }
                c.proto = Some(pr);
            }
            Opt::Dial => c.addrs.push((false, text(arg))),
            Opt::Listen => c.addrs.push((true, text(arg))),
            Opt::DialLocal | Opt::ListenLocal => {
                let port = int(65536);
                c.addrs
                    .push((opt == Opt::ListenLocal, format!("tcp://127.0.0.1:{port}")));
            }
            Opt::DialIpc | Opt::ListenIpc => {
                c.addrs
                    .push((opt == Opt::ListenIpc, format!("ipc:///{}", text(arg))));
            }
            Opt::Count => c.count = int(0x7fff_ffff),
            Opt::Subscribe => c.topics.push(arg.to_vec()),
            Opt::Verbose => c.verbose = true,
            Opt::Silent => c.verbose = false,
            Opt::Delay => c.delay = sec(),
            Opt::Interval => c.interval = Some(sec()),
            Opt::SendTimeout => c.send_timeout = Some(sec()),
            Opt::RecvTimeout => c.recv_timeout = Some(sec()),
            Opt::RecvMaxSz => {
                let v = int(0x7fff_ffff) as usize;
                c.recv_maxsz = Some(if v == 0 { 0x7fff_ffff } else { v });
            }
            Opt::Compat => c.compat = true,
            Opt::Async => c.nonblock = true,
            Opt::Fmt(f) => {
                if c.format.is_some() {
                    fatal("Format may be specified only once.");
                }
                c.format = Some(f);
            }
            Opt::Format => {
                if c.format.is_some() {
                    fatal("Format may be specified only once.");
                }
                c.format = Some(match arg {
                    b"no" => Format::Blank,
                    b"ascii" => Format::Ascii,
                    b"hex" => Format::Hex,
                    b"quoted" => Format::Quoted,
                    b"raw" => Format::Raw,
                    b"msgpack" => Format::Msgpack,
                    _ => fatal("Invalid format specified."),
                });
            }
            Opt::File => {
                if c.data.is_some() {
                    fatal("Data (--file, --data) may be specified only once.");
                }
                c.data = Some(loadfile(arg));
            }
            Opt::Data => {
                if c.data.is_some() {
                    fatal("Data (--file, --data) may be specified only once.");
                }
                c.data = Some(arg.to_vec());
            }
            Opt::CaCert | Opt::Key | Opt::Cert => {
                let (slot, what) = match opt {
                    Opt::CaCert => (&mut c.tls.cacert, "CA Certificate (--cacert)"),
                    Opt::Key => (&mut c.tls.key, "Key (--key)"),
                    _ => (&mut c.tls.cert, "Cert (--cert)"),
                };
                if slot.is_some() {
                    fatal(format!("{what} may be specified only once."));
                }
                *slot = Some(loadfile(arg));
            }
            Opt::Insecure => c.tls.insecure = true,
            Opt::ZtHome | Opt::SocketName => {}
            Opt::Version => {
                println!("{}", env!("CARGO_PKG_VERSION"));
                finish(0);
            }
            Opt::Stats => c.stats = true,
            Opt::Progress => c.progress = Some(true),
            Opt::NoProgress => c.progress = Some(false),
        }
    }
    if c.addrs.is_empty() {
        fatal("No address specified.");
    }
    if c.compat {
        if c.nonblock {
            fatal("Options --async and --compat are incompatible.");
        }
        if c.count != 0 {
            fatal("Options --count and --compat are incompatible.");
        }
        match c.proto {
            Some(Proto::Pair) => c.proto = Some(Proto::Pair0),
            Some(Proto::Pair1) => fatal("Protocol does not support --compat."),
            _ => {}
        }
        c.nonblock = true;
    } else if c.proto == Some(Proto::Pair) {
        c.proto = Some(Proto::Pair1);
    }
    if c.proto == Some(Proto::Sub0) {
        if c.topics.is_empty() {
            c.topics.push(Vec::new());
        }
    } else if !c.topics.is_empty() {
        fatal("Protocol does not support --subscribe.");
    }
    match c.proto {
        Some(Proto::Pull0 | Proto::Sub0) => {
            if c.data.is_some() {
                fatal("Protocol does not support --file or --data.");
            }
            if c.interval.is_some() {
                fatal("Protocol does not support --interval.");
            }
        }
        Some(Proto::Push0 | Proto::Pub0) => {
            if c.format.is_some() {
                fatal("Protocol does not support --format options.");
            }
            if c.data.is_none() {
                fatal("Protocol requires either --file or --data.");
            }
        }
        Some(Proto::Surveyor0 | Proto::Req0) => {
            if c.data.is_none() {
                fatal("Protocol requires either --file or --data.");
            }
        }
        Some(Proto::Rep0 | Proto::Respondent0) => {
            if c.interval.is_some() {
                fatal("Protocol does not support --interval.");
            }
        }
        Some(Proto::Pair0 | Proto::Pair1 | Proto::Bus0) => {
            if c.interval.is_some() && c.data.is_none() {
                fatal("Option --interval requires either --file or --data.");
            }
        }
        Some(Proto::Pair) | None => {}
    }
    c
}

/// The spstack protocol behind an nngcat socket type.
fn protocol(p: Proto) -> Protocol {
    match p {
        Proto::Req0 => Protocol::Req0,
        Proto::Rep0 => Protocol::Rep0,
        Proto::Push0 => Protocol::Push0,
        Proto::Pull0 => Protocol::Pull0,
        Proto::Pub0 => Protocol::Pub0,
        Proto::Sub0 => Protocol::Sub0,
        Proto::Surveyor0 => Protocol::Surveyor0,
        Proto::Respondent0 => Protocol::Respondent0,
        Proto::Pair0 => Protocol::Pair0,
        Proto::Pair1 | Proto::Pair => Protocol::Pair1,
        Proto::Bus0 => Protocol::Bus0,
    }
}

/// `nng_strerror`'s wording for an spstack error.
fn strerror(e: &Error) -> String {
    use std::io::ErrorKind as K;
    match e {
        Error::Closed => "Object closed".into(),
        Error::TimedOut(_) | Error::HandshakeTimeout(_) => "Timed out".into(),
        Error::State(_) => "Incorrect state".into(),
        Error::NotSupported(_) => "Not supported".into(),
        Error::Address { .. } => "Address invalid".into(),
        Error::TooLarge { .. } => "Message too large".into(),
        // nng's words for TLS failures, then what to change
        Error::Layer { layer, reason } if layer == "tls" || layer == "quic" => {
            let nng = if reason.contains("certificate") {
                "Peer could not be authenticated"
            } else {
                "Cryptographic error"
            };
            format!("{nng} ({reason})")
        }
        Error::Protocol(_) | Error::Mismatch { .. } | Error::Layer { .. } => {
            "Protocol error".into()
        }
        Error::ConnectionClosed => "Connection shutdown".into(),
        Error::Io(io) => match io.kind() {
            K::ConnectionRefused => "Connection refused".into(),
            K::AddrInUse => "Address in use".into(),
            K::AddrNotAvailable => "Address invalid".into(),
            K::NotFound => "Entry not found".into(),
            K::PermissionDenied => "Permission denied".into(),
            K::ConnectionReset => "Connection reset".into(),
            K::ConnectionAborted => "Connection aborted".into(),
            K::TimedOut => "Timed out".into(),
            _ => io.to_string(),
        },
        other => other.to_string(),
    }
}

/// In verbose mode, spstack's own explanation follows nngcat's message.
fn detail(verbose: bool, e: &Error) {
    if verbose {
        eprintln!("spcat: {e}");
    }
}

/// Checks a URL before use, with nngcat's "Unable to create ..." messages.
fn check_url(listen: bool, url: &str) {
    let what = if listen { "listener" } else { "dialer" };
    let Some((scheme, _)) = url.split_once("://") else {
        fatal(format!(
            "Unable to create {what} for {url}: Invalid argument"
        ));
    };
    match scheme {
        "tcp" | "tcp4" | "tcp6" | "ipc" | "unix" | "inproc" | "tls+tcp" | "tls+tcp4"
        | "tls+tcp6" | "ws" | "wss" | "quic" => {}
        _ => fatal(format!("Unable to create {what} for {url}: Not supported")),
    }
}

/// What nngcat shows as a listener's URL: as given, with a port 0 resolved
/// and a `*` host dropped. nngcat resolves the port of tcp and tls+tcp
/// only; spcat of ws and wss too (nngcat prints `ws://host:0/path`), so that
/// a script can listen on port 0 and learn the port whatever the transport.
fn listen_url(given: &str, bound: &str) -> String {
    let u = given.replacen("://*:", "://:", 1);
    let Some((scheme, rest)) = u.split_once("://") else {
        return u;
    };
    let resolves = matches!(
        scheme,
        "tcp" | "tcp4" | "tcp6" | "tls+tcp" | "tls+tcp4" | "tls+tcp6" | "ws" | "wss" | "quic"
    );
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let bound_port = bound
        .split_once("://")
        .and_then(|(_, r)| r.split('/').next())
        .and_then(|a| a.rsplit_once(':'))
        .map(|(_, p)| p);
    match (resolves, authority.strip_suffix(":0"), bound_port) {
        (true, Some(host), Some(port)) => format!("{scheme}://{host}:{port}{path}"),
        _ => u,
    }
}

struct Cat {
    sock: Socket,
    cfg: Config,
    sent: u64,
}

impl Cat {
    fn print(&self, m: &Message) {
        let mut out = Vec::new();
        format::render(self.cfg.format, m.body(), &mut out);
        if !out.is_empty() {
            let mut so = std::io::stdout().lock();
            if so.write_all(&out).and_then(|_| so.flush()).is_err() {
                // a closed stdout (e.g. `| head`) ends the run quietly
                finish(1);
            }
        }
    }

    async fn recv_for(&self, t: Option<Duration>) -> Result<Message, Error> {
        match t {
            Some(t) => tokio::time::timeout(t, self.sock.recv())
                .await
                .unwrap_or(Err(Error::TimedOut(t))),
            None => self.sock.recv().await,
        }
    }

    /// The socket-wide receive timeout (nngcat sets it only when > 0).
    fn recv_timeout(&self) -> Option<Duration> {
        self.cfg.recv_timeout.filter(|t| !t.is_zero())
    }

    async fn send(&mut self) {
        let data = self.cfg.data.clone().unwrap_or_default();
        let t = self.cfg.send_timeout.filter(|t| !t.is_zero());
        let r = match t {
            Some(t) => tokio::time::timeout(t, self.sock.send(data))
                .await
                .unwrap_or(Err(Error::TimedOut(t))),
            None => self.sock.send(data).await,
        };
        if let Err(e) = r {
            detail(self.cfg.verbose, &e);
            fatal(format!("Send error: {}", strerror(&e)));
        }
        self.sent += 1;
    }

    /// Lets the pipes write what was sent, then closes. `Socket::shutdown`
    /// returns once every message `send` accepted is written or counted as
    /// dropped (a PUB message sent with no subscriber is `NoPeer` at once,
    /// so nothing waits for it), at most the linger after the close; the
    /// timeout is only a bound on the bound. nngcat sleeps 200 ms instead.
    async fn drain(&self) {
        let bound = self.sock.options().linger + Duration::from_secs(5);
        let _ = tokio::time::timeout(bound, self.sock.shutdown()).await;
    }

    async fn recvloop(&self) {
        let mut iters = 0;
        loop {
            if self.cfg.count > 0 && iters >= self.cfg.count {
                break;
            }
            let r = self.recv_for(self.recv_timeout()).await;
            iters += 1;
            match r {
                Ok(m) => self.print(&m),
                Err(Error::TimedOut(_) | Error::State(_)) => return,
                Err(e) => {
                    detail(self.cfg.verbose, &e);
                    fatal(format!("Receive error: {}", strerror(&e)))
                }
            }
        }
    }

    async fn resploop(&mut self) {
        let mut iters = 0;
        loop {
            match self.recv_for(self.recv_timeout()).await {
                Ok(m) => self.print(&m),
                Err(e) => {
                    detail(self.cfg.verbose, &e);
                    fatal(format!("Receive error: {}", strerror(&e)))
                }
            }
            self.send().await;
            iters += 1;
            if self.cfg.count > 0 && iters >= self.cfg.count {
                break;
            }
        }
        self.drain().await;
    }

    async fn sendloop(&mut self) {
        tokio::time::sleep(self.cfg.delay).await;
        let mut iters = 0;
        loop {
            let start = Instant::now();
            self.send().await;
            iters += 1;
            let count = self.cfg.count;
            if (self.cfg.interval.is_none() && count == 0) || (count > 0 && iters >= count) {
                break;
            }
            if let Some(iv) = self.cfg.interval {
                tokio::time::sleep_until(start + iv).await;
            }
        }
        self.drain().await;
    }

    async fn sendrecv(&mut self) {
        tokio::time::sleep(self.cfg.delay).await;
        let mut iters = 0;
        loop {
            let start = Instant::now();
            self.send().await;
            if self.cfg.interval.is_none() && self.cfg.count == 0 {
                self.recvloop().await;
                break;
            }
            loop {
                let mut expire = self
                    .cfg
                    .interval
                    .map(|iv| iv.saturating_sub(start.elapsed()));
                if let Some(rt) = self.cfg.recv_timeout {
                    expire = Some(expire.map_or(rt, |e| e.min(rt)));
                }
                match self.recv_for(expire).await {
                    Ok(m) => self.print(&m),
                    Err(Error::TimedOut(_) | Error::State(_)) => break,
                    Err(e) => {
                        detail(self.cfg.verbose, &e);
                        fatal(format!("Cannot receive: {}", strerror(&e)))
                    }
                }
            }
            iters += 1;
            if self.cfg.count > 0 && iters >= self.cfg.count {
                break;
            }
            if let Some(iv) = self.cfg.interval {
                tokio::time::sleep_until(start + iv).await;
            }
        }
    }
}

/// A cooked socket of `protocol` with every transport spcat speaks; the
/// TLS ones (`tls+tcp`, `wss`) configured from nngcat's TLS flags, which
/// are read and checked only when a URL needs them (as nngcat does).
fn socket_builder<'a>(
    protocol: Protocol,
    opts: Options,
    tls: &Tls,
    mut urls: impl Iterator<Item = &'a str>,
) -> Result<spstack::SocketBuilder, String> {
    let mut builder = spstack::cooked(protocol)
        .options(opts)
        .transport(Arc::new(Ws::new(Tcp)));
    // as nngcat: the TLS files are read and checked only for TLS addresses
    if urls.any(|u| u.starts_with("tls+tcp") || u.starts_with("wss://") || u.starts_with("quic://"))
    {
        let t = tls.config()?;
        builder = builder
            .transport(Arc::new(Ws::secure(sp_transports::Tls::new(
                Tcp,
                t.clone(),
            ))))
            .transport(Arc::new(sp_quic::quic(t.clone())))
            .transport(Arc::new(tls_tcp(t)));
    }
    Ok(builder)
}

async fn run(cfg: Config) -> i32 {
    let Some(proto) = cfg.proto else {
        fatal("No protocol specified.");
    };
    let mut opts = Options::default();
    if let Some(m) = cfg.recv_maxsz {
        opts = opts.recv_max_size(m);
    }
    let urls = cfg.addrs.iter().map(|(_, u)| u.as_str());
    let builder = match socket_builder(protocol(proto), opts, &cfg.tls, urls) {
        Ok(b) => b,
        Err(e) => fatal(format!("Unable to configure TLS: {e}")),
    };
    let sock = builder.build();
    let _ = SOCKET.set(sock.clone());
    WANT_STATS.store(cfg.stats, Ordering::Relaxed);

    for t in &cfg.topics {
        let Some(ctl) = sock.control::<spstack::SubControl>() else {
            fatal("Unable to subscribe: this SUB socket has no subscriptions control");
        };
        if let Err(e) = ctl.subscribe(t) {
            fatal(format!(
                "Unable to subscribe to topic {}: {}",
                text(t),
                strerror(&e)
            ));
        }
    }

    for (listen, url) in &cfg.addrs {
        check_url(*listen, url);
        let (act, r) = if *listen {
            ("listen", sock.listen(url).await)
        } else if cfg.nonblock {
            ("dial", sock.dial_background(url))
        } else {
            ("dial", sock.dial(url).await)
        };
        match r {
            Ok(ep) => {
                if cfg.verbose {
                    if *listen {
                        println!("Listening at: {}", listen_url(url, ep.url()));
                    } else {
                        println!("Connected to: {url}");
                    }
                }
            }
            Err(e) => {
                detail(cfg.verbose, &e);
                let create = matches!(&e, Error::Address { reason, .. }
                    if reason.contains("missing :port") || reason.contains("needs a host"));
                if create {
                    let what = if *listen { "listener" } else { "dialer" };
                    fatal(format!(
                        "Unable to create {what} for {url}: {}",
                        strerror(&e)
                    ));
                }
                // nng reports a missing ipc path as a refused connection when dialing
                let why = match &e {
                    Error::Io(io) if !*listen && io.kind() == std::io::ErrorKind::NotFound => {
                        "Connection refused".to_string()
                    }
                    _ => strerror(&e),
                };
                fatal(format!("Unable to {act} on {url}: {why}"));
            }
        }
    }

    // a long run (a count or an interval) shows how it goes; a one-shot
    // run has nothing to show
    let long = cat_is_long(&cfg);
    let show = cfg
        .progress
        .unwrap_or_else(|| std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if long && show {
        progress::start(sock.clone());
    }
    let mut cat = Cat { sock, cfg, sent: 0 };
    match proto {
        Proto::Sub0 | Proto::Pull0 => cat.recvloop().await,
        Proto::Rep0 | Proto::Respondent0 => {
            if cat.cfg.data.is_none() {
                cat.recvloop().await
            } else {
                cat.resploop().await
            }
        }
        Proto::Push0 | Proto::Pub0 => cat.sendloop().await,
        Proto::Bus0 | Proto::Pair0 | Proto::Pair1 | Proto::Pair => {
            if cat.cfg.data.is_some() {
                cat.sendrecv().await
            } else {
                cat.recvloop().await
            }
        }
        Proto::Req0 | Proto::Surveyor0 => cat.sendrecv().await,
    }
    0
}

/// A run that goes on: `--count` or `--interval`.
fn cat_is_long(cfg: &Config) -> bool {
    cfg.count > 0 || cfg.interval.is_some()
}

fn main() {
    let words: Vec<Vec<u8>> = std::env::args_os().map(|a| a.into_vec()).collect();
    if words.get(1).map(|w| w.as_slice()) == Some(b"decode") {
        std::process::exit(decode::run(&words[2..]));
    }
    if words.get(1).map(|w| w.as_slice()) == Some(b"bench") {
        std::process::exit(bench::run(&words[2..]));
    }
    if words.get(1).map(|w| w.as_slice()) == Some(b"dissector") {
        std::process::exit(dissector::run(&words[2..]));
    }
    if words.get(1).map(|w| w.as_slice()) == Some(b"keygen") {
        let args = words[2..]
            .iter()
            .map(|w| String::from_utf8_lossy(w).into_owned());
        std::process::exit(sp_crypto::keygen_cli::run("spcat keygen", args).into());
    }
    let cfg = parse(&words);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fatal(format!("Unable to start the runtime: {e}")));
    let code = rt.block_on(run(cfg));
    finish(code);
}

#[cfg(test)]
mod tests {
    use super::listen_url;

    #[test]
    fn listen_urls_show_the_bound_port() {
        let b = "tcp://127.0.0.1:4567";
        assert_eq!(listen_url("tcp://127.0.0.1:0", b), b);
        assert_eq!(listen_url("tcp://*:0", b), "tcp://:4567");
        assert_eq!(listen_url("tcp://127.0.0.1:80", b), "tcp://127.0.0.1:80");
        assert_eq!(
            listen_url("tls+tcp://localhost:0", "tls+tcp://127.0.0.1:99"),
            "tls+tcp://localhost:99"
        );
        assert_eq!(
            listen_url("ws://127.0.0.1:0/sp", "ws://127.0.0.1:7000/sp"),
            "ws://127.0.0.1:7000/sp"
        );
        assert_eq!(
            listen_url("wss://localhost:0", "wss://127.0.0.1:7001"),
            "wss://localhost:7001"
        );
        assert_eq!(
            listen_url("ipc:///tmp/x:0", "ipc:///tmp/x:0"),
            "ipc:///tmp/x:0"
        );
    }
}
