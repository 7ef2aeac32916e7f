//! Application error codes of CONNECTION_CLOSE (`docs/quic-mapping.md` §6)
//! and how a closed or failed connection reads as an error.

use quinn::{ConnectionError, VarInt};
use sp_core::Error;

use crate::quic_err;

/// The pipe ended normally.
pub const NO_ERROR: u32 = 0x0;
/// The peer sent a malformed SP header or frame.
pub const PROTOCOL_ERROR: u32 = 0x1;
/// The peer's SP protocol or stack of pipe layers does not fit ours.
pub const MISMATCH: u32 = 0x2;
/// The peer sent a message larger than our receive limit.
pub const TOO_LARGE: u32 = 0x3;
/// The SP handshake did not complete: our deadline passed or the
/// listener's half-open cap evicted it.
pub const HANDSHAKE_TIMEOUT: u32 = 0x4;

/// The name of an application code, for logs and errors.
pub fn name(code: u64) -> &'static str {
    match code {
        0x0 => "SP_NO_ERROR",
        0x1 => "SP_PROTOCOL_ERROR",
        0x2 => "SP_MISMATCH",
        0x3 => "SP_TOO_LARGE",
        0x4 => "SP_HANDSHAKE_TIMEOUT",
        _ => "an unknown SP code",
    }
}

pub(crate) fn varint(code: u32) -> VarInt {
    VarInt::from_u32(code)
}

/// Reason phrases are for people; keep them short (they ride in one packet).
pub(crate) fn reason_bytes(text: &str) -> Vec<u8> {
    let mut b = text.as_bytes().to_vec();
    b.truncate(200);
    b
}

/// What a TLS alert means for whoever has to fix it.
fn alert_hint(alert: u8, we_sent: bool, dialer: bool) -> &'static str {
    match (alert, we_sent, dialer) {
        (120, _, _) => {
            "no application protocol in common: the peer does not speak SP over QUIC \
             (ALPN \"sp/1\"); is it another QUIC service, or another version of this mapping?"
        }
        (48, true, true) | (42, true, true) => {
            "server certificate not issued by a trusted CA; add its CA with \
             TlsConfig::roots (spcat: --cacert)"
        }
        (48, true, false) | (42, true, false) => {
            "client certificate not issued by a CA given to TlsConfig::require_client_cert"
        }
        (48 | 42 | 46, false, _) => {
            "the peer does not trust our certificate; use one issued by a CA it trusts"
        }
        (116, true, _) => {
            "the dialer presented no client certificate and this listener requires one \
             (dialer: TlsConfig::client_identity, spcat --cert)"
        }
        (116, false, _) => {
            "the listener requires a client certificate; set TlsConfig::client_identity \
             (spcat: --cert/--key)"
        }
        (45, _, _) => "a certificate is outside its validity period",
        (40 | 70, _, _) => "no TLS 1.3 cipher suite or key exchange in common",
        _ => "see the peer's log",
    }
}

/// A failed QUIC connection (handshake or later) as an error that says
/// what to change. `dialer`: which end we are.
pub fn connection_error(e: &ConnectionError, dialer: bool) -> Error {
    match e {
        ConnectionError::TransportError(t) => {
            let code = u64::from(t.code);
            if (0x100..0x200).contains(&code) {
                let alert = (code - 0x100) as u8;
                let hint = alert_hint(alert, true, dialer);
                // rustls's own words say more than the alert it sent
                let r = &t.reason;
                let what = if r.contains("not valid for name") || r.contains("NotValidForName") {
                    "server certificate not valid for the name dialed; set \
                     TlsConfig::server_name to a name the certificate holds"
                } else if r.contains("Expired") || r.contains("NotValidYet") {
                    "a certificate is outside its validity period"
                } else {
                    hint
                };
                quic_err(format!("TLS handshake failed ({}): {what}", t.reason))
            } else {
                quic_err(format!("QUIC protocol error: {t}"))
            }
        }
        ConnectionError::ConnectionClosed(c) => {
            let code = u64::from(c.error_code);
            if (0x100..0x200).contains(&code) {
                let alert = (code - 0x100) as u8;
                quic_err(format!(
                    "peer refused the TLS handshake (alert {alert}): {}",
                    alert_hint(alert, false, dialer)
                ))
            } else {
                quic_err(format!("peer's QUIC stack closed the connection: {c}"))
            }
        }
        ConnectionError::ApplicationClosed(a) => app_closed(u64::from(a.error_code), &a.reason),
        ConnectionError::TimedOut => quic_err(
            "no answer from the QUIC peer within the idle timeout (nothing listening on that \
             UDP port, or the path is gone)",
        ),
        ConnectionError::Reset => quic_err("peer reset the connection (did it restart?)"),
        ConnectionError::VersionMismatch => quic_err("no QUIC version in common with the peer"),
        ConnectionError::LocallyClosed => Error::ConnectionClosed,
        ConnectionError::CidsExhausted => quic_err("no connection ID left to dial with"),
    }
}

/// The peer closed with one of our codes.
pub(crate) fn app_closed(code: u64, reason: &[u8]) -> Error {
    let reason = String::from_utf8_lossy(reason);
    // a 62-bit code: compared whole, never truncated into a known one
    let what = match u32::try_from(code) {
        Ok(NO_ERROR) => return Error::ConnectionClosed,
        Ok(PROTOCOL_ERROR) => "it received a malformed SP header or frame from us",
        Ok(MISMATCH) => "our SP protocol or pipe layers do not fit its own",
        Ok(TOO_LARGE) => "we sent a message larger than its receive limit",
        Ok(HANDSHAKE_TIMEOUT) => {
            "our SP handshake did not complete in time (or its half-open cap evicted it)"
        }
        _ => "unknown code",
    };
    quic_err(format!(
        "peer closed the connection with {} ({code:#x}): {what}{}{reason}",
        name(code),
        if reason.is_empty() { "" } else { ": " },
    ))
}

/// As an I/O error, for the byte-stream side (its text survives into the
/// pipe's error).
pub(crate) fn io_error(e: &ConnectionError, dialer: bool) -> std::io::Error {
    use std::io::ErrorKind as K;
    let kind = match e {
        ConnectionError::TimedOut => K::TimedOut,
        ConnectionError::Reset => K::ConnectionReset,
        _ => K::ConnectionAborted,
    };
    std::io::Error::new(kind, connection_error(e, dialer).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_names_and_texts() {
        assert_eq!(name(TOO_LARGE as u64), "SP_TOO_LARGE");
        assert!(matches!(app_closed(0, b""), Error::ConnectionClosed));
        let e = app_closed(TOO_LARGE as u64, b"2000000 > 1048576").to_string();
        assert!(e.contains("SP_TOO_LARGE") && e.contains("2000000"), "{e}");
        let e = app_closed(0x99, b"").to_string();
        assert!(e.contains("unknown"), "{e}");
        let e = app_closed((1 << 32) | 3, b"").to_string();
        assert!(e.contains("unknown"), "not taken for SP_TOO_LARGE: {e}");
    }

    #[test]
    fn alpn_alert_is_explained() {
        assert!(alert_hint(120, false, true).contains("sp/1"));
    }
}
