//! `ipc:///path` (alias `unix://`): the SP IPC mapping over Unix sockets,
//! with the 0x01 type byte before each length.

use std::path::PathBuf;

use sp_core::layer::{ComponentInfo, Field, Overhead};
use sp_core::transport::{Listener, PipeConfig, Transport, Unannounced};
use sp_core::{split_url, BoxFuture, Connection, Error, Result};
use tokio::net::{UnixListener, UnixStream};

use crate::stream::{open, Framing};

/// The IPC transport.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ipc;

fn path_of(url: &str) -> Result<PathBuf> {
    let (_, rest) = split_url(url).ok_or_else(|| Error::Address {
        url: url.into(),
        reason: "expected ipc:///path".into(),
    })?;
    if rest.is_empty() {
        return Err(Error::Address {
            url: url.into(),
            reason: "empty path".into(),
        });
    }
    Ok(PathBuf::from(rest))
}

impl Transport for Ipc {
    fn schemes(&self) -> &'static [&'static str] {
        &["ipc", "unix"]
    }
    fn info(&self) -> ComponentInfo {
        ComponentInfo::new("ipc", Overhead::header(9))
            .with_header(vec![Field::be("type", 1), Field::be("length", 8)])
    }
    fn dial(&self, url: &str) -> BoxFuture<'static, Result<Box<dyn Unannounced>>> {
        let url = url.to_string();
        Box::pin(async move {
            let p = path_of(&url)?;
            let s = UnixStream::connect(&p).await?;
            Ok(Box::new(IpcUnannounced { s, addr: url }) as Box<dyn Unannounced>)
        })
    }
    fn listen(&self, url: &str) -> BoxFuture<'static, Result<Box<dyn Listener>>> {
        let url = url.to_string();
        Box::pin(async move {
            let p = path_of(&url)?;
            // a stale socket file from a dead process: remove it only when
            // nobody answers on it (the IPC RFC's rule)
            if p.exists() && UnixStream::connect(&p).await.is_err() {
                let _ = std::fs::remove_file(&p);
            }
            let l = UnixListener::bind(&p)?;
            Ok(Box::new(IpcListen { l, url, path: p }) as Box<dyn Listener>)
        })
    }
}

struct IpcListen {
    l: UnixListener,
    url: String,
    path: PathBuf,
}

impl Drop for IpcListen {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Listener for IpcListen {
    fn url(&self) -> String {
        self.url.clone()
    }
    fn accept(&self) -> BoxFuture<'_, Result<Box<dyn Unannounced>>> {
        Box::pin(async move {
            let (s, _) = self.l.accept().await?;
            Ok(Box::new(IpcUnannounced {
                s,
                addr: self.url.clone(),
            }) as Box<dyn Unannounced>)
        })
    }
}

struct IpcUnannounced {
    s: UnixStream,
    addr: String,
}

impl Unannounced for IpcUnannounced {
    fn peer_addr(&self) -> String {
        self.addr.clone()
    }
    fn announce(
        self: Box<Self>,
        cfg: PipeConfig,
        dialer: bool,
    ) -> BoxFuture<'static, Result<Connection>> {
        let IpcUnannounced { s, addr } = *self;
        Box::pin(open(
            s,
            UnixStream::into_split,
            Framing::Ipc,
            cfg,
            dialer,
            ("ipc", addr.clone(), addr),
        ))
    }
}
