//! `tcp://host:port` (also `tcp4://`, `tcp6://`): the SP TCP mapping.

use std::net::SocketAddr;

use sp_core::layer::{ComponentInfo, Field, Overhead};
use sp_core::transport::{
    Listener, PipeConfig, StreamConn, StreamListener, StreamTransport, StreamUpgrade, Transport,
    Unannounced,
};
use sp_core::{split_url, BoxFuture, Connection, Error, Result};
use tokio::net::{TcpListener, TcpStream};

use crate::stream::{open, Framing};

/// The TCP transport.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tcp;

fn bad(url: &str, reason: impl Into<String>) -> Error {
    Error::Address {
        url: url.into(),
        reason: reason.into(),
    }
}

/// Resolves `host:port` (`*` or an empty host means every address) for a scheme.
async fn resolve(url: &str, listen: bool) -> Result<Vec<SocketAddr>> {
    let (scheme, rest) = split_url(url).ok_or_else(|| bad(url, "expected tcp://host:port"))?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| bad(url, "missing :port"))?;
    let port: u16 = port.parse().map_err(|_| bad(url, "port is not a number"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = if host.is_empty() || host == "*" {
        if !listen {
            return Err(bad(url, "a dialer needs a host"));
        }
        if scheme == "tcp6" {
            "::"
        } else {
            "0.0.0.0"
        }
    } else {
        host
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| bad(url, format!("cannot resolve: {e}")))?
        .filter(|a| match scheme {
            "tcp4" => a.is_ipv4(),
            "tcp6" => a.is_ipv6(),
            _ => true,
        })
        .collect();
    if addrs.is_empty() {
        return Err(bad(url, "no address of the requested family"));
    }
    Ok(addrs)
}

fn url_of(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(v) => format!("tcp://{v}"),
        SocketAddr::V6(v) => format!("tcp://[{}]:{}", v.ip(), v.port()),
    }
}

impl Transport for Tcp {
    fn schemes(&self) -> &'static [&'static str] {
        &["tcp", "tcp4", "tcp6"]
    }
    fn info(&self) -> ComponentInfo {
        ComponentInfo::new("tcp", Overhead::header(8)).with_header(vec![Field::be("length", 8)])
    }
    fn dial(&self, url: &str) -> BoxFuture<'static, Result<Box<dyn Unannounced>>> {
        let url = url.to_string();
        Box::pin(async move {
            let mut last = None;
            for a in resolve(&url, false).await? {
                match TcpStream::connect(a).await {
                    Ok(s) => return Ok(Box::new(TcpUnannounced::new(s)?) as Box<dyn Unannounced>),
                    Err(e) => last = Some(e),
                }
            }
            Err(last
                .map(Error::from)
                .unwrap_or_else(|| bad(&url, "no address")))
        })
    }
    fn listen(&self, url: &str) -> BoxFuture<'static, Result<Box<dyn Listener>>> {
        let url = url.to_string();
        Box::pin(async move {
            let addrs = resolve(&url, true).await?;
            let l = TcpListener::bind(&addrs[..]).await?;
            Ok(Box::new(TcpListen {
                url: url_of(l.local_addr()?),
                l,
            }) as Box<dyn Listener>)
        })
    }
}

struct TcpListen {
    l: TcpListener,
    url: String,
}

impl Listener for TcpListen {
    fn url(&self) -> String {
        self.url.clone()
    }
    fn accept(&self) -> BoxFuture<'_, Result<Box<dyn Unannounced>>> {
        Box::pin(async move {
            let (s, _) = self.l.accept().await?;
            Ok(Box::new(TcpUnannounced::new(s)?) as Box<dyn Unannounced>)
        })
    }
}

struct TcpUnannounced {
    s: TcpStream,
    local: String,
    peer: String,
}

impl TcpUnannounced {
    fn new(s: TcpStream) -> Result<Self> {
        // SP traffic is message-sized: never wait for Nagle
        s.set_nodelay(true)?;
        let local = s.local_addr().map(url_of).unwrap_or_default();
        let peer = s.peer_addr().map(url_of).unwrap_or_default();
        Ok(TcpUnannounced { s, local, peer })
    }
}

impl Unannounced for TcpUnannounced {
    fn peer_addr(&self) -> String {
        self.peer.clone()
    }
    fn announce(
        self: Box<Self>,
        cfg: PipeConfig,
        dialer: bool,
    ) -> BoxFuture<'static, Result<Connection>> {
        let TcpUnannounced { s, local, peer } = *self;
        Box::pin(open(
            s,
            TcpStream::into_split,
            Framing::Tcp,
            cfg,
            dialer,
            ("tcp", local, peer),
        ))
    }
}

/// TCP as a plain byte stream, for framings other than SP's own (WebSocket)
/// and for stream layers (TLS) to run over.
impl StreamTransport for Tcp {
    fn name(&self) -> &'static str {
        "tcp"
    }
    fn connect(&self, addr: &str) -> BoxFuture<'static, Result<StreamUpgrade>> {
        let url = format!("tcp://{addr}");
        Box::pin(async move {
            let mut last = None;
            for a in resolve(&url, false).await? {
                match TcpStream::connect(a).await {
                    Ok(s) => return Ok(StreamUpgrade::ready(stream_conn(s)?)),
                    Err(e) => last = Some(e),
                }
            }
            Err(last
                .map(Error::from)
                .unwrap_or_else(|| bad(&url, "no address")))
        })
    }
    fn bind(&self, addr: &str) -> BoxFuture<'static, Result<Box<dyn StreamListener>>> {
        let url = format!("tcp://{addr}");
        Box::pin(async move {
            let addrs = resolve(&url, true).await?;
            let l = TcpListener::bind(&addrs[..]).await?;
            Ok(Box::new(TcpStreamListen(l)) as Box<dyn StreamListener>)
        })
    }
}

fn stream_conn(s: TcpStream) -> Result<StreamConn> {
    let TcpUnannounced { s, local, peer } = TcpUnannounced::new(s)?;
    let strip = |u: String| u.trim_start_matches("tcp://").to_string();
    Ok(StreamConn {
        io: Box::new(s),
        local_addr: strip(local),
        peer_addr: strip(peer),
        peer_identity: None,
    })
}

struct TcpStreamListen(TcpListener);

impl StreamListener for TcpStreamListen {
    fn local_addr(&self) -> String {
        self.0
            .local_addr()
            .map(|a| url_of(a).trim_start_matches("tcp://").to_string())
            .unwrap_or_default()
    }
    fn accept(&self) -> BoxFuture<'_, Result<StreamUpgrade>> {
        Box::pin(async move {
            let (s, _) = self.0.accept().await?;
            Ok(StreamUpgrade::ready(stream_conn(s)?))
        })
    }
}
