//! `ipc:///path` (alias `unix://`): the SP IPC mapping over Unix sockets,
//! with the 0x01 type byte before each length.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

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
            Ok(Box::new(IpcUnannounced::new(s, url)) as Box<dyn Unannounced>)
        })
    }
    fn listen(&self, url: &str) -> BoxFuture<'static, Result<Box<dyn Listener>>> {
        let url = url.to_string();
        Box::pin(async move {
            let p = path_of(&url)?;
            remove_if_stale(&url, &p).await?;
            let l = UnixListener::bind(&p)?;
            let ours = std::fs::symlink_metadata(&p)
                .ok()
                .map(|m| (m.dev(), m.ino()));
            Ok(Box::new(IpcListen {
                l,
                url,
                path: p,
                ours,
            }) as Box<dyn Listener>)
        })
    }
}

/// Makes room for a listener at `p`. Only a socket nobody answers on (left
/// by a dead process, the IPC RFC's rule) is removed; a regular file, a
/// directory or a symlink at the path is somebody's data, and a socket that
/// answers is somebody's listener: both are refused, untouched.
async fn remove_if_stale(url: &str, p: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if !meta.file_type().is_socket() {
        return Err(Error::Address {
            url: url.into(),
            reason: "the path exists and is not a socket; it was left untouched (choose another path or remove it yourself)".into(),
        });
    }
    if UnixStream::connect(p).await.is_ok() {
        return Err(Error::Address {
            url: url.into(),
            reason: "another listener answers on this socket".into(),
        });
    }
    match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

struct IpcListen {
    l: UnixListener,
    url: String,
    path: PathBuf,
    /// Device and inode of the socket this listener bound: on drop only
    /// that socket is removed, not whatever took its path since.
    ours: Option<(u64, u64)>,
}

impl Drop for IpcListen {
    fn drop(&mut self) {
        let still_ours = std::fs::symlink_metadata(&self.path)
            .ok()
            .filter(|m| m.file_type().is_socket())
            .map(|m| (m.dev(), m.ino()));
        if still_ours.is_some() && still_ours == self.ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Listener for IpcListen {
    fn url(&self) -> String {
        self.url.clone()
    }
    fn accept(&self) -> BoxFuture<'_, Result<Box<dyn Unannounced>>> {
        Box::pin(async move {
            let (s, _) = self.l.accept().await?;
            Ok(Box::new(IpcUnannounced::new(s, self.url.clone())) as Box<dyn Unannounced>)
        })
    }
}

struct IpcUnannounced {
    s: UnixStream,
    addr: String,
    /// The peer process's user id, from the kernel (`SO_PEERCRED`).
    uid: Option<u32>,
}

impl IpcUnannounced {
    fn new(s: UnixStream, addr: String) -> Self {
        let uid = s.peer_cred().ok().map(|c| c.uid());
        IpcUnannounced { s, addr, uid }
    }
}

/// The half-open cap's source of an IPC peer: its user id, which the
/// kernel vouches for (a path or a pid says nothing about who floods);
/// every peer whose credentials cannot be read shares one source.
fn ipc_source(uid: Option<u32>) -> String {
    match uid {
        Some(uid) => format!("ipc uid {uid}"),
        None => "ipc".into(),
    }
}

impl Unannounced for IpcUnannounced {
    fn peer_addr(&self) -> String {
        self.addr.clone()
    }
    fn source(&self) -> String {
        ipc_source(self.uid)
    }
    fn announce(
        self: Box<Self>,
        cfg: PipeConfig,
        dialer: bool,
    ) -> BoxFuture<'static, Result<Connection>> {
        let IpcUnannounced { s, addr, .. } = *self;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("sp-ipc-{}-{name}", std::process::id()))
    }

    #[tokio::test]
    async fn ipc_source_is_the_peers_user_id() {
        let p = tmp("cred");
        let _ = std::fs::remove_file(&p);
        let url = format!("ipc://{}", p.display());
        let l = Ipc.listen(&url).await.expect("listen");
        let dialed = Ipc.dial(&url).await.expect("dial");
        let accepted = l.accept().await.expect("accept");
        // the socket file is ours: its owner is this process's user
        let me = std::fs::metadata(&p).expect("socket file").uid();
        assert_eq!(accepted.source(), format!("ipc uid {me}"));
        assert_eq!(dialed.source(), format!("ipc uid {me}"));
        assert_eq!(ipc_source(None), "ipc");
        drop(l);
    }

    #[tokio::test]
    async fn ipc_listen_never_deletes_a_regular_file_at_its_path() {
        let p = tmp("file");
        std::fs::write(&p, b"precious").unwrap();
        let url = format!("ipc://{}", p.display());
        let err = Ipc.listen(&url).await.err().expect("refused");
        assert!(matches!(err, Error::Address { .. }), "{err}");
        assert_eq!(
            std::fs::read(&p).unwrap(),
            b"precious",
            "the file is intact"
        );
        std::fs::remove_file(&p).unwrap();
    }

    #[tokio::test]
    async fn ipc_listen_replaces_a_stale_socket_but_not_a_live_one() {
        let p = tmp("sock");
        let _ = std::fs::remove_file(&p);
        let url = format!("ipc://{}", p.display());
        // a stale socket: bound, then its listener gone without unlinking
        drop(std::os::unix::net::UnixListener::bind(&p).unwrap());
        assert!(p.exists());
        let live = Ipc.listen(&url).await.expect("a stale socket is replaced");
        let err = Ipc.listen(&url).await.err().expect("a live one is not");
        assert!(matches!(err, Error::Address { .. }), "{err}");
        drop(live);
        assert!(!p.exists(), "the listener removes its own socket");
    }

    #[tokio::test]
    async fn ipc_listener_drop_leaves_a_socket_that_replaced_its_own() {
        let p = tmp("replaced");
        let _ = std::fs::remove_file(&p);
        let url = format!("ipc://{}", p.display());
        let first = Ipc.listen(&url).await.unwrap();
        std::fs::remove_file(&p).unwrap();
        let second = std::os::unix::net::UnixListener::bind(&p).unwrap();
        drop(first);
        assert!(p.exists(), "someone else's socket stays");
        drop(second);
        std::fs::remove_file(&p).unwrap();
    }
}
