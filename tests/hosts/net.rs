//! Test hosts on one machine: a network namespace per host, joined by veth
//! pairs to bridges ("segments") that live in a namespace of their own (the
//! switch), so nothing is added to the machine's own namespace and no frame
//! can leave: a segment reaches only the hosts plugged into it.
//!
//! ```text
//!   host ns "…-client"        switch ns "…-sw"              host ns "…-dev1"
//!   eth0 10.77.0.1 ──veth── p0s0 ─┐ br0 ┌─ p1s0 ──veth── eth0 10.77.0.2
//!                                       p1s1 ──veth── eth1 10.77.1.2 (dev1 on segment 1 too)
//! ```
//!
//! A program runs on a host as a [`Node`]: a thread that `setns(2)`s into
//! the host's namespace and runs a tokio runtime of its own there, so every
//! socket its tasks open belongs to that host. Killing a node drops its
//! runtime: every task is dropped and the kernel closes the node's sockets
//! as it does for a process killed with SIGKILL (FIN, or RST when unread data
//! was pending). [`Net::power_off`] is the harsher death: the host's links
//! vanish first, so not even a FIN leaves, and the host comes back with a
//! fresh network stack that answers the peers' old connections with RST.
//!
//! Why threads and not child processes (`ip netns exec` of a test binary):
//! the tests read what only the process that owns a socket can see
//! (`socket.stats()`, per-pipe counters, pipe events, the runtime's task
//! count, `/proc/self` descriptors and RSS) and would otherwise need a
//! control protocol to every child; a node starts in microseconds, not a
//! process launch; and the death that matters to peers is the same: the
//! kernel closes a dead program's sockets whether a runtime was dropped or
//! a process got SIGKILL. What differs: a killed runtime runs destructors
//! (an ipc listener would remove its socket file, which SIGKILL leaves
//! behind; the host tests use tcp), and the process's memory is shared, so
//! a node that corrupts memory takes the test with it.
//!
//! Names are unique per process and test (`spstack-<pid>-<n>-…`); [`Net`]
//! deletes its namespaces on drop (panics included), and the first [`Net`] of
//! a process deletes those of processes that are gone (a run killed before
//! its guards ran). Everything needs root and `ip` from iproute2: without
//! them the tests fail with the reason, they never skip.

use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Every namespace this harness makes starts with this.
pub const PREFIX: &str = "spstack-";

/// Runs `ip` with `args`; panics with its stderr when it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip` ({e}): apt-get install iproute2"));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Runs `lines` as one `ip -batch` in namespace `ns` (one process for many
/// commands: a host takes two `ip` runs, not ten).
fn ip_batch(ns: &str, lines: &[String]) {
    let mut child = Command::new("ip")
        .args(["-n", ns, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `ip` ({e}): apt-get install iproute2"));
    let mut stdin = child.stdin.take().expect("ip's stdin");
    stdin
        .write_all(lines.join("\n").as_bytes())
        .expect("write to ip -batch");
    drop(stdin);
    let out = child.wait_with_output().expect("wait for ip -batch");
    assert!(
        out.status.success(),
        "ip -n {ns} -batch:\n{}\n{}",
        lines.join("\n"),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Fails the test, with what is missing, unless this process can make
/// namespaces; then removes what killed runs left behind. Once per process.
pub fn preflight() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        // SAFETY: geteuid has no preconditions and cannot fail
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "the host tests make network namespaces and need root (uid 0, here {euid}); \
             CI runs scripts/test.sh as root"
        );
        let v = Command::new("ip").arg("-V").output();
        assert!(
            v.as_ref().is_ok_and(|o| o.status.success()),
            "`ip` from iproute2 is missing ({v:?}): apt-get install iproute2"
        );
        remove_stale();
    });
}

/// Deletes the namespaces of test processes that no longer run (their Drop
/// guards never ran: SIGKILL, a timeout, a power cut).
pub fn remove_stale() -> usize {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return 0;
    };
    let mut removed = 0;
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !owner_alive(pid) {
            let _ = Command::new("ip")
                .args(["netns", "del", &name])
                .stderr(Stdio::null())
                .status();
            removed += 1;
        }
    }
    removed
}

/// True when `pid` is a running test binary of this harness (a reused pid
/// running something else does not keep leftovers alive).
fn owner_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
        return false;
    };
    let mine = std::env::current_exe().ok();
    let base = |p: &std::path::Path| {
        p.file_name().map(|n| {
            n.to_string_lossy()
                .split('-')
                .next()
                .unwrap_or("")
                .to_string()
        })
    };
    mine.is_some_and(|m| base(&m) == base(&exe))
}

/// A segment: one bridge in the switch namespace, one /24.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seg(u8);

struct Port {
    seg: Seg,
    /// The veth end in the switch namespace.
    sw_end: String,
    /// The veth end in the host.
    host_end: String,
    addr: Ipv4Addr,
}

struct HostInner {
    name: String,
    ns: String,
    ports: Vec<Port>,
}

/// A test host: a network namespace with an address on each of its segments.
#[derive(Clone)]
pub struct Host(Arc<HostInner>);

impl Host {
    /// Its address on `seg` (panics if it is not plugged into `seg`).
    pub fn addr(&self, seg: Seg) -> Ipv4Addr {
        self.port(seg).addr
    }
    /// Its namespace's name (for `ip -n`).
    pub fn ns(&self) -> &str {
        &self.0.ns
    }
    fn port(&self, seg: Seg) -> &Port {
        self.0
            .ports
            .iter()
            .find(|p| p.seg == seg)
            .unwrap_or_else(|| panic!("host {} is not on segment {}", self.0.name, seg.0))
    }
}

/// One test's network: a switch namespace, segments, hosts. Dropping it
/// deletes every namespace it made.
pub struct Net {
    id: String,
    sw: String,
    segments: Mutex<u8>,
    hosts: Mutex<Vec<Host>>,
}

impl Net {
    /// A new network named after `tag` (for people reading `ip netns`).
    pub fn new(tag: &str) -> Net {
        preflight();
        static N: AtomicUsize = AtomicUsize::new(0);
        let id = format!(
            "{PREFIX}{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let sw = format!("{id}-sw");
        ip(&["netns", "add", &sw]);
        let net = Net {
            id,
            sw,
            segments: Mutex::new(0),
            hosts: Mutex::new(Vec::new()),
        };
        ip_batch(&net.sw, &["link set lo up".into()]);
        net
    }

    /// A new segment (a bridge, 10.77.<n>.0/24).
    pub fn segment(&self) -> Seg {
        let mut n = self.segments.lock().unwrap_or_else(|e| e.into_inner());
        let seg = Seg(*n);
        *n += 1;
        // no STP: a port forwards as soon as it is up, as a switch without
        // loops should
        ip_batch(
            &self.sw,
            &[
                format!("link add br{} type bridge stp_state 0", seg.0),
                format!("link set br{} up", seg.0),
            ],
        );
        seg
    }

    /// A new host named `name`, plugged into `segs`.
    pub fn host(&self, name: &str, segs: &[Seg]) -> Host {
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        let idx = hosts.len();
        assert!(idx < 250, "at most 250 hosts per net");
        let ns = format!("{}-{name}", self.id);
        let ports = segs
            .iter()
            .enumerate()
            .map(|(k, &seg)| Port {
                seg,
                sw_end: format!("p{idx}s{}", seg.0),
                host_end: format!("eth{k}"),
                addr: Ipv4Addr::new(10, 77, seg.0, idx as u8 + 1),
            })
            .collect();
        let host = Host(Arc::new(HostInner {
            name: name.to_string(),
            ns,
            ports,
        }));
        self.boot(&host);
        hosts.push(host.clone());
        host
    }

    /// Makes the host's namespace and plugs it in.
    fn boot(&self, h: &Host) {
        ip(&["netns", "add", h.ns()]);
        let mut sw = Vec::new();
        let mut inside = vec!["link set lo up".to_string()];
        for p in &h.0.ports {
            // the host's interface keeps its MAC across power cycles, as a
            // NIC does: peers' ARP caches stay right and a rebooted host is
            // reached at once (its new stack then answers old connections
            // with RST)
            let [_, _, seg, host] = p.addr.octets();
            sw.push(format!(
                "link add {} type veth peer name {} address 02:77:00:00:{seg:02x}:{host:02x} netns {}",
                p.sw_end,
                p.host_end,
                h.ns()
            ));
            sw.push(format!("link set {} master br{}", p.sw_end, p.seg.0));
            sw.push(format!("link set {} up", p.sw_end));
            inside.push(format!("addr add {}/24 dev {}", p.addr, p.host_end));
            inside.push(format!("link set {} up", p.host_end));
        }
        ip_batch(&self.sw, &sw);
        ip_batch(h.ns(), &inside);
    }

    /// Partition: the host's port leaves the segment's bridge. The link stays
    /// up (no carrier change the host could notice); frames go nowhere, as
    /// with a cable cut further down the path.
    pub fn cut(&self, h: &Host, seg: Seg) {
        ip_batch(
            &self.sw,
            &[format!("link set {} nomaster", h.port(seg).sw_end)],
        );
    }

    /// Heals [`Net::cut`].
    pub fn heal(&self, h: &Host, seg: Seg) {
        let p = h.port(seg);
        ip_batch(
            &self.sw,
            &[format!("link set {} master br{}", p.sw_end, seg.0)],
        );
    }

    /// Link down: the switch's end of the host's cable goes down, the host
    /// sees NO-CARRIER and whatever it sends on it is dropped.
    pub fn link_down(&self, h: &Host, seg: Seg) {
        ip_batch(&self.sw, &[format!("link set {} down", h.port(seg).sw_end)]);
    }

    /// Brings [`Net::link_down`] back up.
    pub fn link_up(&self, h: &Host, seg: Seg) {
        ip_batch(&self.sw, &[format!("link set {} up", h.port(seg).sw_end)]);
    }

    /// Power loss: the host's links vanish at once (deleting a veth end
    /// deletes its peer), then its namespace is replaced by a fresh one, not
    /// yet plugged in. Nodes still running there keep the old, unplugged
    /// stack (kill them: nothing they send leaves); nodes started from now on
    /// run on the new one. [`Net::power_on`] plugs it in again.
    pub fn power_off(&self, h: &Host) {
        let lines: Vec<String> =
            h.0.ports
                .iter()
                .map(|p| format!("link del {}", p.sw_end))
                .collect();
        ip_batch(&self.sw, &lines);
        ip(&["netns", "del", h.ns()]);
    }

    /// The host back with the same addresses and an empty network stack:
    /// no connection of its previous life exists, so a peer that still
    /// writes to one gets RST.
    pub fn power_on(&self, h: &Host) {
        self.boot(h);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // a thread still inside keeps its namespace alive until it exits;
        // the name goes now, so nothing outlives the test by name
        let hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        for h in hosts.iter() {
            let _ = Command::new("ip")
                .args(["netns", "del", h.ns()])
                .stderr(Stdio::null())
                .status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.sw])
            .stderr(Stdio::null())
            .status();
    }
}

/// Moves the calling thread into the namespace `ns` refers to.
fn enter(ns: &File) -> std::io::Result<()> {
    // SAFETY: a valid open descriptor of a network namespace; setns only
    // changes the calling thread's namespace
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A program on a host: a thread in the host's namespace running a tokio
/// runtime of its own. Sockets are made by the tasks it runs, so they belong
/// to the host. Dropping it kills it ([`Node::kill`]).
pub struct Node {
    name: String,
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Node {
    /// Starts a node named `name` on `host`.
    pub fn start(host: &Host, name: &str) -> Node {
        let path = format!("/run/netns/{}", host.ns());
        let ns = Arc::new(
            File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e} (is the host up?)")),
        );
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("node-{name}"))
            .spawn(move || {
                enter(&ns).expect("setns into the host's network namespace");
                // the runtime's blocking threads (DNS lookups, file I/O) are
                // started by this thread, which already is in the namespace;
                // entering again from the descriptor keeps them there even
                // if the host was powered off and its name points elsewhere
                let ns2 = ns.clone();
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .on_thread_start(move || {
                        enter(&ns2).expect("setns of a blocking thread");
                    })
                    .build()
                    .expect("a node's runtime");
                let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
                tx.send((rt.handle().clone(), stop_tx))
                    .expect("the node's starter waits");
                rt.block_on(async {
                    let _ = stop_rx.await;
                });
                // every task goes with the runtime: their sockets close
                // without a goodbye from the program, as with SIGKILL
                drop(rt);
            })
            .expect("spawn a node thread");
        let (handle, stop) = rx.recv().expect("the node thread starts");
        Node {
            name: name.to_string(),
            handle,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Runs `f` on the node; panics there come back as panics here.
    pub async fn run<F>(&self, f: F) -> F::Output
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self.handle.spawn(f).await {
            Ok(v) => v,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("node {}: task ended: {e}", self.name),
        }
    }

    /// Spawns `f` on the node.
    pub fn spawn<F>(&self, f: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(f)
    }

    /// Tasks alive on the node's runtime (a leak shows up here).
    pub fn alive_tasks(&self) -> usize {
        self.handle.metrics().num_alive_tasks()
    }

    /// Kills the node: its runtime and every task on it are dropped, so its
    /// sockets are closed by the kernel (FIN, or RST with unread data), as
    /// for a process killed with SIGKILL.
    pub fn kill(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            // a panic on the node thread was already reported by its task
            let _ = t.join();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop_now();
    }
}
