//! # sp-transports: tcp, ipc and inproc for spstack
//!
//! Each transport connects, exchanges the SP announcement (the 8-byte header
//! of nng and nanomsg for a plain stack) and carries frames. None of them
//! knows which protocol or layers run above it.
//!
//! ```
//! use sp_core::transport::Transport;
//! assert_eq!(sp_transports::Tcp.schemes(), &["tcp", "tcp4", "tcp6"]);
//! ```

pub mod framed;
mod inproc;
mod ipc;
pub mod stream;
mod tcp;
pub mod tls;

pub use framed::Framed;
pub use inproc::Inproc;
pub use ipc::Ipc;
pub use stream::STAGED_BELOW;
pub use tcp::Tcp;
pub use tls::{tls_tcp, Identity, Roots, Tls, TlsConfig, TlsVersion};

use std::sync::Arc;

/// The transports every socket gets by default: tcp, ipc, inproc.
pub fn defaults() -> Vec<Arc<dyn sp_core::transport::Transport>> {
    vec![Arc::new(Tcp), Arc::new(Ipc), Arc::new(Inproc)]
}
