//! Typed sockets: one handle per protocol, exposing only what the protocol
//! does, over the untyped [`Socket`].
//!
//! Each handle is its own type (`Push`, `Pull`, `Req`...), not a generic
//! `Handle<P>`: its rustdoc page lists exactly what it can do, a mistake
//! reads "no method named `send` found for struct `Pull`", and nothing
//! needs importing to call a method. The operations every socket shares
//! (listen, dial, stats...) come from one macro, so they are written once
//! and documented the same on every page.

use std::sync::Arc;
use std::task::{Context as TaskCx, Poll};
use std::time::Duration;

use sp_core::describe::Description;
use sp_core::layer::{ComponentInfo, Overhead};
use sp_core::queue::WaitKey;
use sp_core::transport::Listener;
use sp_core::{
    BoxFuture, Endpoint, Error, Message, Options, PipeEvent, PipeId, PipeInfo, RawSocket, Result,
    Socket, SocketContext, Stats,
};
use sp_protocols::{SubControl, SurveyorControl};
use tokio_util::sync::PollSemaphore;

pub(crate) mod sealed {
    /// Only this crate makes typed handles: a handle's protocol is known
    /// from the builder that made it.
    pub trait Sealed {
        fn from_socket(socket: sp_core::Socket) -> Self;
    }
}

/// What every typed handle is: a cooked socket of one protocol, convertible
/// to the untyped [`Socket`] (`.socket()`, `as_ref()`, `Socket::from`) for
/// devices and generic code. [`Builder::build`](crate::Builder::build)
/// returns one.
pub trait TypedSocket:
    sealed::Sealed + AsRef<Socket> + Into<Socket> + Clone + std::fmt::Debug + Send + Sync + 'static
{
    /// The protocol this handle speaks.
    const PROTOCOL: crate::Protocol;
}

/// The operations every socket has, delegated to the untyped socket.
macro_rules! common {
    ($name:ident, $protocol:expr) => {
        impl $name {
            /// Listens on `url` (`tcp://127.0.0.1:0` picks a port; see
            /// [`Endpoint::url`]).
            pub async fn listen(&self, url: &str) -> Result<Endpoint> {
                self.socket.listen(url).await
            }

            /// Accepts pipes from a listener made elsewhere (e.g. WebSockets
            /// an axum route upgraded), under the socket's handshake
            /// deadline and half-open cap.
            pub fn listen_on(&self, listener: Box<dyn Listener>) -> Endpoint {
                self.socket.listen_on(listener)
            }

            /// Dials `url`: returns once the first pipe is open (or with the
            /// error), then redials with backoff whenever it closes.
            pub async fn dial(&self, url: &str) -> Result<Endpoint> {
                self.socket.dial(url).await
            }

            /// Dials in the background, retrying with backoff until it connects.
            pub fn dial_background(&self, url: &str) -> Result<Endpoint> {
                self.socket.dial_background(url)
            }

            /// Closes the socket now: sends and receives on every handle and
            /// context fail with `Error::Closed`; pipes linger (see
            /// `Options::linger`).
            pub fn close(&self) {
                self.socket.close()
            }

            /// Closes the socket and waits until its pipes have written what
            /// was queued and their peers hung up, or the linger passed.
            /// Returns the final counters.
            pub async fn shutdown(&self) -> Stats {
                self.socket.shutdown().await
            }

            /// Socket counters: messages and bytes in and out, drops by
            /// reason, refused pipes.
            pub fn stats(&self) -> Stats {
                self.socket.stats()
            }

            /// Counters of one pipe.
            pub fn pipe_stats(&self, id: PipeId) -> Option<Stats> {
                self.socket.pipe_stats(id)
            }

            /// Open pipes.
            pub fn pipes(&self) -> Vec<PipeId> {
                self.socket.pipes()
            }

            /// What is known about a pipe (addresses, announcements, identity).
            pub fn pipe_info(&self, id: PipeId) -> Option<Arc<PipeInfo>> {
                self.socket.pipe_info(id)
            }

            /// A stream of pipe events (joined, left, refused) to await.
            pub fn pipe_events(&self) -> tokio::sync::broadcast::Receiver<PipeEvent> {
                self.socket.pipe_events()
            }

            /// Calls `hook` on every pipe event; returning `false` on
            /// [`PipeEvent::AddPre`] rejects the pipe.
            pub fn on_pipe_event(&self, hook: impl Fn(&PipeEvent) -> bool + Send + Sync + 'static) {
                self.socket.on_pipe_event(hook)
            }

            /// The options in force.
            pub fn options(&self) -> &Options {
                self.socket.options()
            }

            /// The components of this stack, transport side first: pipe
            /// layers, the protocol, message layers.
            pub fn components(&self) -> Vec<ComponentInfo> {
                self.socket.components()
            }

            /// Summed overhead of every component of the stack.
            pub fn overhead(&self) -> Overhead {
                self.socket.overhead()
            }

            /// Decodes a frame captured on a `scheme` connection of this
            /// stack, field by field.
            pub fn describe(&self, scheme: &str, frame: &[u8]) -> Result<Description> {
                self.socket.describe(scheme, frame)
            }

            /// The framing of the transport that serves `scheme`.
            pub fn transport_info(&self, scheme: &str) -> Option<ComponentInfo> {
                self.socket.transport_info(scheme)
            }

            /// Exports this socket's counters and pipe events through the
            /// `metrics` facade under `name` (see [`crate::metrics`]).
            #[cfg(feature = "metrics")]
            pub fn export_metrics(&self, name: &str) -> sp_core::metrics::Exported {
                self.socket.export_metrics(name)
            }

            /// The untyped socket, for devices and code generic over
            /// protocols (and `raw()`, the seam below the protocol).
            pub fn socket(&self) -> &Socket {
                &self.socket
            }

            /// The raw socket underneath (e.g. `raw().close_pipe(id)` to hang
            /// up on one peer), as [`Socket::raw`].
            pub fn raw(&self) -> &RawSocket {
                self.socket.raw()
            }

            /// The default context's protocol settings as the protocol's own
            /// type, as [`Socket::control`] (code written for the untyped
            /// socket; the handles' own methods, e.g. `Sub::subscribe`, say
            /// the same without the downcast).
            pub fn control<T: std::any::Any + Send + Sync>(&self) -> Option<Arc<T>> {
                self.socket.control::<T>()
            }
        }

        impl From<$name> for Socket {
            fn from(h: $name) -> Socket {
                h.socket
            }
        }

        impl AsRef<Socket> for $name {
            fn as_ref(&self) -> &Socket {
                &self.socket
            }
        }

        impl TypedSocket for $name {
            const PROTOCOL: crate::Protocol = $protocol;
        }
    };
}

/// `send` (with its protocol's words) and `new_message`.
macro_rules! sends {
    ($name:ident, $doc:literal) => {
        impl $name {
            #[doc = $doc]
            pub async fn send(&self, msg: impl Into<Message>) -> Result<()> {
                self.socket.send(msg).await
            }

            /// A message with a `body_len`-byte body and exactly the
            /// headroom and tailroom this stack needs (one allocation for
            /// its whole trip).
            pub fn new_message(&self, body_len: usize) -> Message {
                self.socket.new_message(body_len)
            }
        }
    };
}

/// `recv` (with its protocol's words).
macro_rules! receives {
    ($name:ident, $doc:literal) => {
        impl $name {
            #[doc = $doc]
            pub async fn recv(&self) -> Result<Message> {
                self.socket.recv().await
            }
        }
    };
}

/// A plain handle: its socket and nothing else.
macro_rules! plain {
    ($name:ident) => {
        impl sealed::Sealed for $name {
            fn from_socket(socket: Socket) -> Self {
                $name { socket }
            }
        }
    };
}

/// A PUSH socket (`spstack::typed::push0()`): sends jobs, each to one puller.
///
/// ```
/// # async fn f(push: spstack::Push) -> spstack::Result<()> {
/// push.send("job").await?;
/// # Ok(()) }
/// ```
///
/// It never receives, and it is no `tower::Service` (only [`Req`] is):
///
/// ```compile_fail,E0599
/// # async fn f(push: spstack::Push) {
/// push.recv().await;
/// # }
/// ```
///
/// ```compile_fail,E0599
/// use tower::ServiceExt;
/// let push = spstack::typed::push0().build();
/// let _ = push.oneshot(spstack::Message::from("job"));
/// ```
#[derive(Clone, Debug)]
pub struct Push {
    socket: Socket,
}
common!(Push, crate::Protocol::Push0);
plain!(Push);
sends!(
    Push,
    "Sends to one puller, round robin among those with room; waits while none has any (no puller connected included)."
);

/// A PULL socket (`spstack::typed::pull0()`): receives what pushers send, fair-queued.
///
/// ```
/// # async fn f(pull: spstack::Pull) -> spstack::Result<()> {
/// let job = pull.recv().await?;
/// # Ok(()) }
/// ```
///
/// It never sends:
///
/// ```compile_fail,E0599
/// # async fn f(pull: spstack::Pull) {
/// pull.send("job").await;
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Pull {
    socket: Socket,
}
common!(Pull, crate::Protocol::Pull0);
plain!(Pull);
receives!(Pull, "Receives the next message any pusher sent.");

/// A PUB socket (`spstack::typed::pub0()`): sends to every subscriber.
///
/// ```
/// # async fn f(publisher: spstack::Pub) -> spstack::Result<()> {
/// publisher.send("weather/paris sunny").await?;
/// # Ok(()) }
/// ```
///
/// It never receives:
///
/// ```compile_fail,E0599
/// # async fn f(publisher: spstack::Pub) {
/// publisher.recv().await;
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Pub {
    socket: Socket,
}
common!(Pub, crate::Protocol::Pub0);
plain!(Pub);
sends!(
    Pub,
    "Sends to every subscriber; never waits: a subscriber too slow to keep up loses messages, counted per pipe (`pipe_stats`)."
);

/// A SUB socket (`spstack::typed::sub0()`): receives what publishers send on the
/// topics (body prefixes) it subscribed to; it starts with none.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> spstack::Result<()> {
/// let sub = spstack::typed::sub0().build();
/// sub.subscribe("weather/")?;
/// assert!(sub.is_subscribed("weather/"));
/// # Ok(()) }
/// ```
///
/// It never sends:
///
/// ```compile_fail,E0599
/// # async fn f(sub: spstack::Sub) {
/// sub.send("hello").await;
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Sub {
    socket: Socket,
    control: Arc<SubControl>,
}
common!(Sub, crate::Protocol::Sub0);
receives!(
    Sub,
    "Receives the next message on a subscribed topic (the default context's subscriptions); when the receive queue is full the oldest is dropped, counted."
);
impl sealed::Sealed for Sub {
    fn from_socket(socket: Socket) -> Self {
        let control = socket
            .control::<SubControl>()
            .expect("a cooked SUB0 socket has SubControl");
        Sub { socket, control }
    }
}
impl Sub {
    /// Subscribes the socket's default context to `topic`, a prefix of the
    /// bodies it wants (empty: everything).
    pub fn subscribe(&self, topic: impl AsRef<[u8]>) -> Result<()> {
        self.control.subscribe(topic)
    }
    /// Removes a subscription; an error if there was none.
    pub fn unsubscribe(&self, topic: impl AsRef<[u8]>) -> Result<()> {
        self.control.unsubscribe(topic)
    }
    /// True when subscribed to exactly `topic`.
    pub fn is_subscribed(&self, topic: impl AsRef<[u8]>) -> bool {
        self.control.is_subscribed(topic)
    }
    /// A new context: its own subscriptions (none to start with), the same pipes.
    pub fn context(&self) -> SubContext {
        let ctx = self.socket.context();
        let control = control_of(&ctx, "SUB");
        SubContext { ctx, control }
    }
}

/// A REQ socket (`spstack::typed::req0()`): sends requests, receives their replies.
///
/// [`request`](Req::request) runs one exchange on a fresh context, so many
/// run at once; `send` then `recv` use the default context (one request
/// outstanding: a second `send` replaces the first). A `Req` is a
/// `tower::Service<Message>` (each call a `request`) whose `poll_ready`
/// waits until a pipe can take a request: with no peer connected or every
/// queue full it is not ready, so `load_shed` sheds and `buffer` and
/// `concurrency_limit` hold calls back.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> spstack::Result<()> {
/// use tower::ServiceExt;
/// let rep = spstack::typed::rep0().build();
/// let ep = rep.listen("inproc://req-doc").await?;
/// tokio::spawn(spstack::rep::serve(rep, tower::service_fn(|m: spstack::Message| async move {
///     Ok::<_, spstack::Error>(m)
/// }), 4));
///
/// let req = spstack::typed::req0().build();
/// req.dial(ep.url()).await?;
/// assert_eq!(req.request("ping").await?.body(), b"ping");
/// let reply = req.clone().oneshot("pong".into()).await?; // as a tower::Service
/// assert_eq!(reply.body(), b"pong");
/// # Ok(()) }
/// ```
pub struct Req {
    socket: Socket,
    ready: SendReady,
}
common!(Req, crate::Protocol::Req0);
sends!(
    Req,
    "Sends a request on the default context (replacing one still outstanding there); waits until a pipe can take it. The reply comes from [`recv`](Req::recv)."
);
receives!(
    Req,
    "Receives the reply to the default context's request; the request is sent again every `req_resend` and at once when its pipe dies."
);
impl sealed::Sealed for Req {
    fn from_socket(socket: Socket) -> Self {
        Req {
            socket,
            ready: SendReady::default(),
        }
    }
}
impl Clone for Req {
    fn clone(&self) -> Self {
        // each clone waits for readiness on its own registration
        Req {
            socket: self.socket.clone(),
            ready: SendReady::default(),
        }
    }
}
impl std::fmt::Debug for Req {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Req").field("socket", &self.socket).finish()
    }
}
impl Req {
    /// Sends `request` on a fresh context and returns its reply: many
    /// requests run at once, each matched to its own reply.
    pub async fn request(&self, request: impl Into<Message>) -> Result<Message> {
        let ctx = self.socket.context();
        ctx.send(request).await?;
        ctx.recv().await
    }
    /// A new context: its own outstanding request, the same pipes.
    pub fn context(&self) -> ReqContext {
        ReqContext {
            ctx: self.socket.context(),
            raw: self.socket.raw().clone(),
        }
    }
}

/// Each call is a [`Req::request`] on a fresh context, so calls run
/// concurrently. `poll_ready` is ready when a pipe can take a request now
/// (a connected REP with room in its queue); it is a signal, not a
/// reservation: a call made after another sender took the room waits for
/// room inside its future.
impl tower::Service<Message> for Req {
    type Response = Message;
    type Error = Error;
    type Future = BoxFuture<'static, Result<Message>>;
    fn poll_ready(&mut self, cx: &mut TaskCx<'_>) -> Poll<Result<()>> {
        self.ready.poll(self.socket.raw(), cx)
    }
    fn call(&mut self, request: Message) -> Self::Future {
        let ctx = self.socket.context();
        Box::pin(async move {
            ctx.send(request).await?;
            ctx.recv().await
        })
    }
}

/// A registration to be woken when the raw socket can take a message,
/// released when its handle goes.
#[derive(Default)]
struct SendReady {
    key: WaitKey,
    raw: Option<RawSocket>,
}

impl SendReady {
    fn poll(&mut self, raw: &RawSocket, cx: &mut TaskCx<'_>) -> Poll<Result<()>> {
        let r = raw.poll_send_ready(cx, &mut self.key);
        if r.is_pending() {
            self.raw.get_or_insert_with(|| raw.clone());
        }
        r
    }
}

impl Drop for SendReady {
    fn drop(&mut self) {
        if let Some(raw) = &self.raw {
            raw.cancel_send(&mut self.key);
        }
    }
}

/// A REP socket (`spstack::typed::rep0()`): receives requests and answers each on
/// the pipe it came from. [`rep::serve`](crate::rep::serve) answers them
/// with a `tower::Service`, many at once.
///
/// A REP is served, it is no `tower::Service` itself:
///
/// ```compile_fail,E0599
/// # fn f(rep: spstack::Rep) {
/// use tower::ServiceExt;
/// let _ = rep.oneshot(spstack::Message::from("ping"));
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Rep {
    socket: Socket,
}
common!(Rep, crate::Protocol::Rep0);
plain!(Rep);
receives!(
    Rep,
    "Receives the next request on the default context (one left unanswered there is forgotten)."
);
sends!(
    Rep,
    "Answers the request the default context received last; an error if there is none."
);
impl Rep {
    /// A new context: its own request being answered, the same pipes.
    pub fn context(&self) -> RepContext {
        RepContext {
            ctx: self.socket.context(),
        }
    }
}

/// A SURVEYOR socket (`spstack::typed::surveyor0()`): sends a survey to every
/// respondent and receives their responses until the deadline (1 s by
/// default), after which `recv` fails with `Error::TimedOut`.
///
/// ```
/// # fn main() {
/// let surveyor = spstack::typed::surveyor0().build();
/// surveyor.set_deadline(std::time::Duration::from_millis(500));
/// assert_eq!(surveyor.deadline(), std::time::Duration::from_millis(500));
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Surveyor {
    socket: Socket,
    control: Arc<SurveyorControl>,
}
common!(Surveyor, crate::Protocol::Surveyor0);
sends!(
    Surveyor,
    "Sends a survey to every respondent on the default context, starting its deadline (a survey still open there ends)."
);
receives!(
    Surveyor,
    "Receives the next response to the default context's survey; `Error::TimedOut` once its deadline passed."
);
impl sealed::Sealed for Surveyor {
    fn from_socket(socket: Socket) -> Self {
        let control = socket
            .control::<SurveyorControl>()
            .expect("a cooked SURVEYOR0 socket has SurveyorControl");
        Surveyor { socket, control }
    }
}
impl Surveyor {
    /// How long the default context collects responses to a survey.
    pub fn deadline(&self) -> Duration {
        self.control.deadline()
    }
    /// Sets it, for the surveys sent after.
    pub fn set_deadline(&self, d: Duration) {
        self.control.set_deadline(d)
    }
    /// A new context: its own survey and deadline, the same pipes.
    pub fn context(&self) -> SurveyorContext {
        let ctx = self.socket.context();
        let control = control_of(&ctx, "SURVEYOR");
        SurveyorContext { ctx, control }
    }
}

/// A RESPONDENT socket (`spstack::typed::respondent0()`): receives surveys and
/// answers each.
#[derive(Clone, Debug)]
pub struct Respondent {
    socket: Socket,
}
common!(Respondent, crate::Protocol::Respondent0);
plain!(Respondent);
receives!(
    Respondent,
    "Receives the next survey on the default context."
);
sends!(
    Respondent,
    "Answers the survey the default context received last; an error if there is none."
);
impl Respondent {
    /// A new context: its own survey being answered, the same pipes.
    pub fn context(&self) -> RespondentContext {
        RespondentContext {
            ctx: self.socket.context(),
        }
    }
}

/// A BUS socket (`spstack::typed::bus0()`): every message goes to every directly
/// connected peer.
#[derive(Clone, Debug)]
pub struct Bus {
    socket: Socket,
}
common!(Bus, crate::Protocol::Bus0);
plain!(Bus);
sends!(
    Bus,
    "Sends to every connected peer; never waits (a peer with a full queue misses it, counted)."
);
receives!(Bus, "Receives the next message any peer sent.");

/// A PAIR v0 socket (`spstack::typed::pair0()`): one peer, both ways.
#[derive(Clone, Debug)]
pub struct Pair {
    socket: Socket,
}
common!(Pair, crate::Protocol::Pair0);
plain!(Pair);
sends!(
    Pair,
    "Sends to the peer; waits while there is none or its queue is full."
);
receives!(Pair, "Receives the next message from the peer.");

/// A PAIR v1 socket: one peer (`spstack::typed::pair1()`), or many
/// (`spstack::typed::pair1_poly()`, where sending a received message answers its
/// peer).
#[derive(Clone, Debug)]
pub struct Pair1 {
    socket: Socket,
}
common!(Pair1, crate::Protocol::Pair1);
plain!(Pair1);
sends!(
    Pair1,
    "Sends to the peer (polyamorous: to the pipe the message names, `Message::set_pipe`, else round robin); waits while none can take it."
);
receives!(
    Pair1,
    "Receives the next message; it names the pipe it came from (`Message::pipe`)."
);

/// What every context has: its untyped form.
macro_rules! context {
    ($name:ident) => {
        impl $name {
            /// The untyped context: a `Sink<Message>` and a
            /// `Stream<Item = Result<Message>>`.
            pub fn into_inner(self) -> SocketContext {
                self.ctx
            }
        }
        impl AsRef<SocketContext> for $name {
            fn as_ref(&self) -> &SocketContext {
                &self.ctx
            }
        }
    };
}

/// A REQ context ([`Req::context`]): one request outstanding at a time.
/// A `tower::Service<Message>` too ([`ReqContext::into_service`]).
pub struct ReqContext {
    ctx: SocketContext,
    raw: RawSocket,
}
context!(ReqContext);
impl ReqContext {
    /// Sends a request (replacing one still outstanding on this context).
    pub async fn send(&self, msg: impl Into<Message>) -> Result<()> {
        self.ctx.send(msg).await
    }
    /// Receives the reply to this context's request.
    pub async fn recv(&self) -> Result<Message> {
        self.ctx.recv().await
    }
    /// Sends `request` and returns its reply.
    pub async fn request(&self, request: impl Into<Message>) -> Result<Message> {
        self.ctx.send(request).await?;
        self.ctx.recv().await
    }
    /// This context as a `tower::Service`: calls run one at a time, in the
    /// order they became ready (a context has one request outstanding).
    pub fn into_service(self) -> ReqContextService {
        ReqContextService {
            ctx: Arc::new(self.ctx),
            raw: self.raw,
            turn: PollSemaphore::new(Arc::new(tokio::sync::Semaphore::new(1))),
            permit: None,
            ready: SendReady::default(),
        }
    }
}

/// One REQ context as a `tower::Service<Message>` ([`ReqContext::into_service`]).
///
/// `poll_ready` is ready when no call of this context is in flight and a
/// pipe can take a request: clones share the context and take turns.
pub struct ReqContextService {
    ctx: Arc<SocketContext>,
    raw: RawSocket,
    turn: PollSemaphore,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ready: SendReady,
}

impl Clone for ReqContextService {
    fn clone(&self) -> Self {
        // the turn is shared; a permit and a readiness wait are per clone
        ReqContextService {
            ctx: self.ctx.clone(),
            raw: self.raw.clone(),
            turn: self.turn.clone(),
            permit: None,
            ready: SendReady::default(),
        }
    }
}

impl tower::Service<Message> for ReqContextService {
    type Response = Message;
    type Error = Error;
    type Future = BoxFuture<'static, Result<Message>>;
    fn poll_ready(&mut self, cx: &mut TaskCx<'_>) -> Poll<Result<()>> {
        if self.permit.is_none() {
            match self.turn.poll_acquire(cx) {
                Poll::Ready(Some(p)) => self.permit = Some(p),
                // the semaphore is never closed
                Poll::Ready(None) => return Poll::Ready(Err(Error::Closed)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.ready.poll(&self.raw, cx)
    }
    fn call(&mut self, request: Message) -> Self::Future {
        let ctx = self.ctx.clone();
        // the next call's turn comes when this one has its reply
        let permit = self.permit.take();
        Box::pin(async move {
            ctx.send(request).await?;
            let reply = ctx.recv().await;
            drop(permit);
            reply
        })
    }
}

/// A REP context ([`Rep::context`]): its own request being answered.
pub struct RepContext {
    ctx: SocketContext,
}
context!(RepContext);
impl RepContext {
    /// Receives the next request.
    pub async fn recv(&self) -> Result<Message> {
        self.ctx.recv().await
    }
    /// Answers the request this context received last.
    pub async fn send(&self, msg: impl Into<Message>) -> Result<()> {
        self.ctx.send(msg).await
    }
}

/// A SUB context ([`Sub::context`]): its own subscriptions, none to start with.
pub struct SubContext {
    ctx: SocketContext,
    control: Arc<SubControl>,
}
context!(SubContext);
impl SubContext {
    /// Receives the next message on one of this context's topics.
    pub async fn recv(&self) -> Result<Message> {
        self.ctx.recv().await
    }
    /// Subscribes this context to `topic` (a body prefix).
    pub fn subscribe(&self, topic: impl AsRef<[u8]>) -> Result<()> {
        self.control.subscribe(topic)
    }
    /// Removes one of this context's subscriptions.
    pub fn unsubscribe(&self, topic: impl AsRef<[u8]>) -> Result<()> {
        self.control.unsubscribe(topic)
    }
    /// True when this context is subscribed to exactly `topic`.
    pub fn is_subscribed(&self, topic: impl AsRef<[u8]>) -> bool {
        self.control.is_subscribed(topic)
    }
}

/// A SURVEYOR context ([`Surveyor::context`]): its own survey and deadline.
pub struct SurveyorContext {
    ctx: SocketContext,
    control: Arc<SurveyorControl>,
}
context!(SurveyorContext);
impl SurveyorContext {
    /// Sends a survey, starting its deadline.
    pub async fn send(&self, msg: impl Into<Message>) -> Result<()> {
        self.ctx.send(msg).await
    }
    /// Receives the next response; `Error::TimedOut` once the deadline passed.
    pub async fn recv(&self) -> Result<Message> {
        self.ctx.recv().await
    }
    /// How long this context collects responses.
    pub fn deadline(&self) -> Duration {
        self.control.deadline()
    }
    /// Sets it, for the surveys sent after.
    pub fn set_deadline(&self, d: Duration) {
        self.control.set_deadline(d)
    }
}

/// A RESPONDENT context ([`Respondent::context`]): its own survey being answered.
pub struct RespondentContext {
    ctx: SocketContext,
}
context!(RespondentContext);
impl RespondentContext {
    /// Receives the next survey.
    pub async fn recv(&self) -> Result<Message> {
        self.ctx.recv().await
    }
    /// Answers the survey this context received last.
    pub async fn send(&self, msg: impl Into<Message>) -> Result<()> {
        self.ctx.send(msg).await
    }
}

/// The control a cooked protocol's context always has.
fn control_of<T: std::any::Any + Send + Sync>(ctx: &SocketContext, what: &str) -> Arc<T> {
    match ctx.control::<T>() {
        Some(c) => c,
        None => unreachable!("a cooked {what} context has its control"),
    }
}
