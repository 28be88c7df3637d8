//! The cluster secret. Every peer request carries it (`Authorization: Bearer
//! <token>`), and the `/raft/*` routes refuse a request without it, `401`,
//! before the body is read, so nothing of it reaches openraft. The comparison
//! takes the same time however much of the token is right.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::error::Error;
use crate::peer::messages::path;

/// Shortest token accepted: a guessable secret protects nothing.
const MIN_LEN: usize = 16;

/// The shared secret of one cluster.
#[derive(Clone)]
pub struct ClusterToken(Arc<str>);

impl std::fmt::Debug for ClusterToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterToken(..)")
    }
}

impl ClusterToken {
    /// At least 16 visible ASCII characters, surrounding white space ignored.
    pub fn parse(s: &str) -> Result<ClusterToken, String> {
        let t = s.trim();
        if t.len() < MIN_LEN {
            return Err(format!("{} characters; at least {MIN_LEN} needed", t.len()));
        }
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("only visible ASCII characters (no spaces) are allowed".into());
        }
        Ok(ClusterToken(t.into()))
    }

    /// Whether `presented` is this token, in time independent of where they differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(presented).into()
    }

    /// The secret itself (to derive the cluster id from).
    pub fn secret(&self) -> &str {
        &self.0
    }

    /// HMAC-SHA256 of `message` keyed with the token: proves holding it
    /// without sending it.
    pub fn mac(&self, message: &[u8]) -> Vec<u8> {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.0.as_bytes());
        ring::hmac::sign(&key, message).as_ref().to_vec()
    }

    /// Whether `mac` is [`ClusterToken::mac`] of `message` (constant time).
    pub fn verify(&self, message: &[u8], mac: &[u8]) -> bool {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.0.as_bytes());
        ring::hmac::verify(&key, message, mac).is_ok()
    }

    /// The `Authorization` header peers send.
    pub fn header_value(&self) -> HeaderValue {
        let mut v = HeaderValue::from_str(&format!("Bearer {}", self.0))
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer"));
        v.set_sensitive(true);
        v
    }
}

/// Middleware of the peer routes: the request must carry the cluster token.
/// Without a configured token (a node on a loopback address) every request passes.
pub async fn require_token(
    State(token): State<Option<ClusterToken>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(token) = token else {
        return next.run(req).await;
    };
    // A node being added proves it holds the token without sending it.
    if path::is(req.uri().path(), path::PROVE) {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    if presented.is_some_and(|p| token.matches(p)) {
        return next.run(req).await;
    }
    let from = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or("unknown".into(), |c| c.0.to_string());
    let what = match presented {
        None => "no cluster token",
        Some(_) => "a wrong cluster token",
    };
    tracing::warn!(%from, path = %req.uri().path(), "refused a peer request with {what}");
    Error::Unauthorized(format!("peer request with {what}")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_whole() {
        let t = ClusterToken::parse(" 0123456789abcdef\n").unwrap();
        assert!(t.matches(b"0123456789abcdef"));
        assert!(!t.matches(b"0123456789abcdeF"));
        assert!(!t.matches(b"0123456789abcde"));
        assert!(!t.matches(b"0123456789abcdef0"));
        assert!(!t.matches(b""));
        assert!(ClusterToken::parse("too short").is_err());
        assert!(ClusterToken::parse("has a space in the middle").is_err());
        assert_eq!(format!("{t:?}"), "ClusterToken(..)");
        assert!(t.verify(b"challenge", &t.mac(b"challenge")));
        assert!(!t.verify(b"challenge", &t.mac(b"another")));
        let other = ClusterToken::parse("fedcba9876543210").unwrap();
        assert!(!t.verify(b"challenge", &other.mac(b"challenge")));
    }
}
