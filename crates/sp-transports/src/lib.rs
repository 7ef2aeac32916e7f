//! # sp-transports: tcp, ipc, inproc and tls+tcp for spstack
//!
//! Each transport connects, exchanges the SP announcement (the 8-byte header
//! of nng and nanomsg for a plain stack) and carries frames. None of them
//! knows which protocol or layers run above it.
//!
//! ```
//! use sp_core::transport::Transport;
//! assert_eq!(sp_transports::Tcp.schemes(), &["tcp", "tcp4", "tcp6"]);
//! ```
//!
//! Features (all on by default): `tcp`, `ipc`, `inproc`, and `tls`
//! (`tls+tcp://` and [`Tls`] over any stream transport; brings rustls).
#![deny(missing_docs)]

pub mod framed;
#[cfg(feature = "inproc")]
mod inproc;
#[cfg(feature = "ipc")]
mod ipc;
pub mod stream;
#[cfg(feature = "tcp")]
mod tcp;
#[cfg(feature = "tls")]
pub mod tls;

pub use framed::Framed;
#[cfg(feature = "inproc")]
pub use inproc::Inproc;
#[cfg(feature = "ipc")]
pub use ipc::Ipc;
pub use stream::STAGED_BELOW;
#[cfg(feature = "tcp")]
pub use tcp::Tcp;
#[cfg(feature = "tls")]
pub use tls::{tls_tcp, Identity, Roots, Tls, TlsConfig, TlsVersion};

use std::sync::Arc;

/// The transports every socket gets by default: tcp, ipc and inproc, those
/// of them this build has (features `tcp`, `ipc`, `inproc`).
pub fn defaults() -> Vec<Arc<dyn sp_core::transport::Transport>> {
    vec![
        #[cfg(feature = "tcp")]
        Arc::new(Tcp),
        #[cfg(feature = "ipc")]
        Arc::new(Ipc),
        #[cfg(feature = "inproc")]
        Arc::new(Inproc),
    ]
}
