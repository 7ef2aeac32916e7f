//! `quic://host:port` addresses: a name, an IPv4 address or a bracketed
//! IPv6 literal; `*` or an empty host listens on every IPv4 address.

use std::net::SocketAddr;

use sp_core::{split_url, Error, Result};

pub(crate) fn bad(url: &str, reason: impl Into<String>) -> Error {
    Error::Address {
        url: url.into(),
        reason: reason.into(),
    }
}

/// The addresses of `quic://host:port`, in the resolver's order.
pub(crate) async fn resolve(url: &str, listen: bool) -> Result<Vec<SocketAddr>> {
    let (_, rest) = split_url(url).ok_or_else(|| bad(url, "expected quic://host:port"))?;
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
        "0.0.0.0"
    } else {
        host
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| bad(url, format!("cannot resolve: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(bad(url, "the name has no address"));
    }
    Ok(addrs)
}

/// `quic://a:p`, brackets around an IPv6 address.
pub(crate) fn url_of(a: SocketAddr) -> String {
    format!("quic://{a}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literals_and_refusals() {
        let v6 = resolve("quic://[::1]:5", false).await.expect("v6");
        assert_eq!(v6, vec!["[::1]:5".parse::<SocketAddr>().expect("addr")]);
        let any = resolve("quic://*:7", true).await.expect("any");
        assert_eq!(any[0].port(), 7);
        assert!(resolve("quic://*:7", false).await.is_err());
        assert!(resolve("quic://host", false).await.is_err());
        assert!(resolve("quic://h:port", false).await.is_err());
        assert_eq!(url_of("[::1]:9".parse().expect("addr")), "quic://[::1]:9");
    }
}
