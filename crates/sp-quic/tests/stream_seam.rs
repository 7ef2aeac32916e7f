//! QUIC as a plain byte-stream transport (`QuicStreams`): any framing runs
//! over it, and SP's own framing over it (`sp_transports::Framed`) is the
//! wire of `quic://`.
//!
//! Proves: a socket dialing through `Framed<QuicStreams>` talks to a
//! `quic://` listener byte-exact (so the QUIC transport is the stream seam
//! plus SP framing, nothing else on the wire), with the verified server
//! certificate as its peer identity.

mod common;

use std::sync::Arc;

use common::*;
use sp_quic::{QuicConfig, QuicStreams};
use sp_transports::Framed;

#[tokio::test]
async fn sp_framing_over_quic_streams_talks_to_quic() {
    let pki = pki("ca-seam");
    let rep = over(spstack::rep0(), &quic(both(&pki)));
    let url = listen(&rep, "127.0.0.1").await;
    let framed = Framed::new(QuicStreams::new(QuicConfig::new(both(&pki))), &["quic"]);
    let req = spstack::req0()
        .transport(Arc::new(framed))
        .options(opts())
        .build();
    dial(&req, &url).await;
    for (i, size) in [0, 17, 100_000].into_iter().enumerate() {
        req.send(payload(size, i)).await.expect("send");
        let m = within("request", rep.recv()).await.expect("request");
        assert_eq!(m.body(), &payload(size, i)[..]);
        rep.send(m.body().to_vec()).await.expect("reply");
        assert_eq!(
            within("reply", req.recv()).await.expect("reply").body(),
            &payload(size, i)[..]
        );
    }
    let info = req.pipe_info(req.pipes()[0]).expect("info");
    assert_eq!(info.peer_identity.as_deref(), Some(pki.server.der.as_ref()));
}
