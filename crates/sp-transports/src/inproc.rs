//! `inproc://name`: pipes inside one process. Messages move as values: no
//! serialisation and no copy of the body. As in nng, the receiver sees a flat
//! frame (header folded into the body, by moving an offset), so protocols
//! parse inproc exactly as they parse TCP.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use futures::{Sink, Stream};
use sp_core::layer::{ComponentInfo, Overhead};
use sp_core::queue::{Queue, WaitKey};
use sp_core::transport::{Listener, PipeConfig, Transport, Unannounced};
use sp_core::{split_url, Announcement, BoxFuture, Connection, Error, Message, Result};
use tokio::sync::{mpsc, oneshot};

/// Frames in flight per direction of an inproc pipe.
const DEPTH: usize = 128;
/// Frames a stream takes off its queue at once.
const TAKE: usize = 32;

/// The in-process transport.
#[derive(Clone, Copy, Debug, Default)]
pub struct Inproc;

type Registry = Mutex<HashMap<String, mpsc::Sender<Half>>>;

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(Default::default)
}

struct Half {
    out: Arc<Queue<Message>>,
    inn: Arc<Queue<Message>>,
    mine: oneshot::Sender<Announcement>,
    theirs: oneshot::Receiver<Announcement>,
    name: String,
}

fn pair(name: &str) -> (Half, Half) {
    let a2b = Arc::new(Queue::new(DEPTH));
    let b2a = Arc::new(Queue::new(DEPTH));
    let (ta, ra) = oneshot::channel();
    let (tb, rb) = oneshot::channel();
    (
        Half {
            out: a2b.clone(),
            inn: b2a.clone(),
            mine: ta,
            theirs: rb,
            name: name.into(),
        },
        Half {
            out: b2a,
            inn: a2b,
            mine: tb,
            theirs: ra,
            name: name.into(),
        },
    )
}

fn name_of(url: &str) -> Result<String> {
    match split_url(url) {
        Some((_, n)) if !n.is_empty() => Ok(n.to_string()),
        _ => Err(Error::Address {
            url: url.into(),
            reason: "expected inproc://name".into(),
        }),
    }
}

impl Transport for Inproc {
    fn schemes(&self) -> &'static [&'static str] {
        &["inproc"]
    }
    fn info(&self) -> ComponentInfo {
        ComponentInfo::new("inproc", Overhead::NONE)
    }
    fn dial(&self, url: &str) -> BoxFuture<'static, Result<Box<dyn Unannounced>>> {
        let url = url.to_string();
        Box::pin(async move {
            let name = name_of(&url)?;
            let tx = registry()
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&name)
                .cloned()
                .ok_or_else(|| Error::Io(std::io::ErrorKind::ConnectionRefused.into()))?;
            let (mine, theirs) = pair(&name);
            tx.send(theirs)
                .await
                .map_err(|_| Error::Io(std::io::ErrorKind::ConnectionRefused.into()))?;
            Ok(Box::new(mine) as Box<dyn Unannounced>)
        })
    }
    fn listen(&self, url: &str) -> BoxFuture<'static, Result<Box<dyn Listener>>> {
        let url = url.to_string();
        Box::pin(async move {
            let name = name_of(&url)?;
            let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
            if reg.get(&name).is_some_and(|t| !t.is_closed()) {
                return Err(Error::Io(std::io::ErrorKind::AddrInUse.into()));
            }
            let (tx, rx) = mpsc::channel(128);
            reg.insert(name.clone(), tx);
            Ok(Box::new(InprocListen {
                name,
                url,
                rx: tokio::sync::Mutex::new(rx),
            }) as Box<dyn Listener>)
        })
    }
}

struct InprocListen {
    name: String,
    url: String,
    rx: tokio::sync::Mutex<mpsc::Receiver<Half>>,
}

impl Drop for InprocListen {
    fn drop(&mut self) {
        let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
        if reg
            .get(&self.name)
            .is_some_and(|t| t.is_closed() || t.capacity() == t.max_capacity())
        {
            reg.remove(&self.name);
        }
    }
}

impl Listener for InprocListen {
    fn url(&self) -> String {
        self.url.clone()
    }
    fn accept(&self) -> BoxFuture<'_, Result<Box<dyn Unannounced>>> {
        Box::pin(async move {
            let h = self.rx.lock().await.recv().await.ok_or(Error::Closed)?;
            Ok(Box::new(h) as Box<dyn Unannounced>)
        })
    }
}

impl Unannounced for Half {
    fn peer_addr(&self) -> String {
        format!("inproc://{}", self.name)
    }
    fn announce(
        self: Box<Self>,
        cfg: PipeConfig,
        dialer: bool,
    ) -> BoxFuture<'static, Result<Connection>> {
        Box::pin(async move {
            let Half {
                out,
                inn,
                mine,
                theirs,
                name,
            } = *self;
            let mut cfg = cfg;
            let peer = if cfg.reads_first(dialer) {
                // the dialer sends without waiting: answer a plain one plain
                let peer = theirs.await.map_err(|_| Error::ConnectionClosed)?;
                let _ = mine.send(cfg.answer(&peer));
                peer
            } else {
                let _ = mine.send(cfg.local.clone());
                theirs.await.map_err(|_| Error::ConnectionClosed)?
            };
            let addr = format!("inproc://{name}");
            Ok(Connection {
                tx: Box::pin(InprocSink {
                    q: out,
                    key: WaitKey::default(),
                    pending: VecDeque::new(),
                }),
                rx: Box::pin(InprocStream {
                    q: inn,
                    key: WaitKey::default(),
                    max: cfg.recv_max_size,
                    taken: VecDeque::new(),
                }),
                info: cfg.pipe_info("inproc", addr.clone(), addr, peer, dialer),
            })
        })
    }
}

struct InprocSink {
    q: Arc<Queue<Message>>,
    key: WaitKey,
    /// Fed, not yet in the queue: pushed in one go on flush.
    pending: VecDeque<Message>,
}

impl InprocSink {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.pending.is_empty() {
            return Poll::Ready(Ok(()));
        }
        match self.q.poll_push_batch(cx, &mut self.key, &mut self.pending) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(())) => Poll::Ready(Err(Error::ConnectionClosed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Sink<Message> for InprocSink {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        if this.pending.len() < DEPTH {
            return Poll::Ready(Ok(()));
        }
        this.poll_pending(cx)
    }
    fn start_send(self: Pin<&mut Self>, mut m: Message) -> Result<()> {
        // what a stream transport would deliver: one flat frame
        if m.frame_len() != m.len() {
            m.flatten_frame();
        }
        m.header_to_body();
        m.set_pipe(None);
        self.get_mut().pending.push_back(m);
        Ok(())
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_pending(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        let r = this.poll_pending(cx);
        if r.is_ready() {
            this.q.close_input();
        }
        r
    }
}

impl Drop for InprocSink {
    fn drop(&mut self) {
        self.q.cancel_push(&mut self.key);
        self.q.close_input();
    }
}

struct InprocStream {
    q: Arc<Queue<Message>>,
    key: WaitKey,
    max: usize,
    /// Taken off the queue, not yet handed out.
    taken: VecDeque<Message>,
}

impl Stream for InprocStream {
    type Item = Result<Message>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        let this = self.get_mut();
        if this.taken.is_empty() {
            match this
                .q
                .poll_pop_into(cx, &mut this.key, &mut this.taken, TAKE)
            {
                Poll::Ready(0) => return Poll::Ready(None),
                Poll::Ready(_) => {}
                Poll::Pending => return Poll::Pending,
            }
        }
        match this.taken.pop_front() {
            Some(m) if m.len() > this.max => Poll::Ready(Some(Err(Error::TooLarge {
                size: m.len() as u64,
                limit: this.max,
            }))),
            m => Poll::Ready(m.map(Ok)),
        }
    }
}

impl Drop for InprocStream {
    fn drop(&mut self) {
        self.q.cancel_pop(&mut self.key);
        self.q.close();
    }
}
