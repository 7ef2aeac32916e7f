//! Devices: two raw sockets joined, each with its own pipe layers; what one
//! receives the other sends. Message layers' headers pass through untouched.

use super::Socket;
use crate::layer::{Field, FieldKind};
use crate::raw::RawSocket;
use crate::{Error, Result};

/// Joins two raw sockets: what one receives the other sends, both ways.
/// They must be each other's peers (e.g. raw REP facing clients, raw REQ
/// facing servers). Runs until either socket closes.
pub async fn device(a: &Socket, b: &Socket) -> Result<()> {
    let (ra, rb) = (a.raw().clone(), b.raw().clone());
    let (pa, pb) = (ra.protocol(), rb.protocol());
    if pa.peer != pb.id || pb.peer != pa.id {
        return Err(Error::protocol_mismatch(
            format!("{:?}", pa.peer),
            format!("{:?}", pb.id),
        ));
    }
    let fwd = |from: RawSocket, to: RawSocket| async move {
        loop {
            let mut m = from.recv().await?;
            // the pipe it came in on means nothing on the other socket
            m.set_pipe(None);
            to.send(m).await?;
        }
        #[allow(unreachable_code)]
        Ok::<(), Error>(())
    };
    let r = tokio::select! {
        r = fwd(ra.clone(), rb.clone()) => r,
        r = fwd(rb, ra) => r,
    };
    match r {
        Err(Error::Closed) => Ok(()),
        other => other,
    }
}

/// Re-exported for layer authors writing the header of a protocol.
pub fn backtrace_field(name: &'static str) -> Field {
    Field {
        name,
        kind: FieldKind::Backtrace,
    }
}
