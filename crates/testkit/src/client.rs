//! A small typed HTTP client for one node's API. Every call returns the
//! whole [`Response`] (status, headers, body) so callers decide what a status
//! means; typed views of bodies (`wire`: [`WriteAck`], [`TxnAck`],
//! [`ApiError`], ...) decode it. Only transport failures (refused, reset,
//! timeout) are `Err`.

use std::time::Duration;

use bytes::Bytes;
use quorumkv_proto::ConsistencyLevel;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

use crate::wire::{ApiError, ClusterInfo, ErrorBody, Listing, Txn, TxnAck, WriteAck};
use crate::{Error, NodeId};

/// `If-Match` / `If-None-Match` on a PUT or DELETE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// `If-Match: "<index>"`: the key is at this modification index.
    Match(u64),
    /// `If-Match: *`: the key exists.
    Exists,
    /// `If-None-Match: *`: the key is absent.
    Absent,
}

/// Request headers, built up: `Opts::new().if_none_match().idempotency_key("k")`.
#[derive(Debug, Clone, Default)]
pub struct Opts {
    pub consistency: Option<ConsistencyLevel>,
    pub precondition: Option<Precondition>,
    pub idempotency_key: Option<String>,
    pub min_index: Option<u64>,
    /// Any other header, sent as given.
    pub headers: Vec<(String, String)>,
    /// Overrides the client's request timeout.
    pub timeout: Option<Duration>,
}

impl Opts {
    pub fn new() -> Opts {
        Opts::default()
    }
    pub fn consistency(mut self, c: ConsistencyLevel) -> Opts {
        self.consistency = Some(c);
        self
    }
    pub fn strong() -> Opts {
        Opts::new().consistency(ConsistencyLevel::Strong)
    }
    pub fn eventual() -> Opts {
        Opts::new().consistency(ConsistencyLevel::Eventual)
    }
    pub fn if_match(mut self, index: u64) -> Opts {
        self.precondition = Some(Precondition::Match(index));
        self
    }
    pub fn if_match_any(mut self) -> Opts {
        self.precondition = Some(Precondition::Exists);
        self
    }
    pub fn if_none_match(mut self) -> Opts {
        self.precondition = Some(Precondition::Absent);
        self
    }
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Opts {
        self.idempotency_key = Some(key.into());
        self
    }
    pub fn min_index(mut self, index: u64) -> Opts {
        self.min_index = Some(index);
        self
    }
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Opts {
        self.headers.push((name.into(), value.into()));
        self
    }
    pub fn timeout(mut self, t: Duration) -> Opts {
        self.timeout = Some(t);
        self
    }
}

/// A whole answer, read to the end.
#[derive(Clone)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    /// Reads `resp` to the end.
    pub async fn read(resp: reqwest::Response) -> reqwest::Result<Response> {
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn header_u64(&self, name: &str) -> Option<u64> {
        self.header(name).and_then(|v| v.parse().ok())
    }

    /// `X-Raft-Index`: a write's index, or the applied index a read saw.
    pub fn raft_index(&self) -> Option<u64> {
        self.header_u64("x-raft-index")
    }

    pub fn served_by(&self) -> Option<NodeId> {
        self.header_u64("x-served-by")
    }

    /// The modification index in `ETag: "<index>"`.
    pub fn etag(&self) -> Option<u64> {
        self.header("etag")?.trim_matches('"').parse().ok()
    }

    /// `Idempotent-Replayed: true`: an earlier request with this key answered.
    pub fn replayed(&self) -> bool {
        self.header("idempotent-replayed") == Some("true")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::Unexpected(format!("{e} in {self:?}")))
    }

    /// The body decoded as `T` if the status is 2xx, else `Error::Status`.
    pub fn ok_json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        if !self.status.is_success() {
            return Err(Error::Status {
                status: self.status.as_u16(),
                body: self.text(),
            });
        }
        self.json()
    }

    pub fn write_ack(&self) -> Result<WriteAck, Error> {
        self.ok_json()
    }

    pub fn txn_ack(&self) -> Result<TxnAck, Error> {
        self.ok_json()
    }

    pub fn listing(&self) -> Result<Listing, Error> {
        self.ok_json()
    }

    /// The JSON error body, if this is one.
    pub fn api_error(&self) -> Option<ApiError> {
        serde_json::from_slice::<ErrorBody>(&self.body)
            .ok()
            .map(|b| b.error)
    }

    /// A write answered like this may or may not have been applied: a 5xx
    /// (the leader was lost mid-write, or the answer timed out).
    pub fn outcome_unknown(&self) -> bool {
        self.status.is_server_error()
    }
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = &self.body[..self.body.len().min(400)];
        let mut text = String::from_utf8_lossy(shown).into_owned();
        if shown.len() < self.body.len() {
            text = format!("{text}… ({} bytes)", self.body.len());
        }
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("<bin>")))
            .collect();
        write!(f, "{} [{}] {text:?}", self.status, headers.join(", "))
    }
}

/// Percent-encodes a key for `/v1/kv/{key}`; `/` stays, as the server allows it.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// One node's API. Cheap to clone: clones share the connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    /// Sent as `Authorization: Bearer` with every request.
    token: Option<String>,
}

/// What a TLS client trusts and presents: PEM bytes.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// The CA that signed the server's certificate.
    pub ca_pem: Vec<u8>,
    /// The client's certificate followed by its private key.
    pub identity_pem: Vec<u8>,
}

impl Client {
    /// A `reqwest::Client` suited to the kit: no proxy, this request timeout.
    pub fn http(timeout: Duration) -> Result<reqwest::Client, Error> {
        Self::http_tls(timeout, None)
    }

    /// [`Client::http`] that trusts only `tls`'s CA and presents its
    /// client certificate, when given.
    pub fn http_tls(timeout: Duration, tls: Option<&ClientTls>) -> Result<reqwest::Client, Error> {
        let mut builder = reqwest::Client::builder();
        if let Some(tls) = tls {
            let ca = reqwest::Certificate::from_pem(&tls.ca_pem)?;
            builder = builder
                .tls_built_in_root_certs(false)
                .add_root_certificate(ca)
                .identity(reqwest::Identity::from_pem(&tls.identity_pem)?);
        }
        Ok(builder
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .no_proxy()
            .build()?)
    }

    /// A client for `base` (`http://127.0.0.1:7001`) with a 10 s timeout.
    pub fn new(base: impl Into<String>) -> Result<Client, Error> {
        Ok(Client::with_http(
            Client::http(Duration::from_secs(10))?,
            base,
        ))
    }

    pub fn with_http(http: reqwest::Client, base: impl Into<String>) -> Client {
        let base = base.into().trim_end_matches('/').to_string();
        Client {
            http,
            base,
            token: None,
        }
    }

    /// This client with a bearer token on every request (`--auth-file`).
    pub fn with_token(mut self, token: Option<&str>) -> Client {
        self.token = token.map(str::to_owned);
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub(crate) fn http_client(&self) -> &reqwest::Client {
        &self.http
    }

    pub(crate) fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// `Opts` with `X-Lease`.
    pub fn lease_opts(opts: &Opts, lease: u64) -> Opts {
        opts.clone().header("x-lease", lease.to_string())
    }

    /// Any request; `path` starts with `/`.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        opts: &Opts,
        body: impl Into<Bytes>,
    ) -> Result<Response, Error> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(c) = opts.consistency {
            req = req.header("x-consistency", c.as_str());
        }
        req = match opts.precondition {
            Some(Precondition::Match(i)) => req.header("if-match", format!("\"{i}\"")),
            Some(Precondition::Exists) => req.header("if-match", "*"),
            Some(Precondition::Absent) => req.header("if-none-match", "*"),
            None => req,
        };
        if let Some(k) = &opts.idempotency_key {
            req = req.header("idempotency-key", k.as_str());
        }
        if let Some(i) = opts.min_index {
            req = req.header("x-min-index", i.to_string());
        }
        for (name, value) in &opts.headers {
            req = req.header(name.as_str(), value.as_str());
        }
        if let Some(t) = opts.timeout {
            req = req.timeout(t);
        }
        Ok(Response::read(req.body(body.into()).send().await?).await?)
    }

    pub async fn put(
        &self,
        key: &str,
        value: impl Into<Bytes>,
        opts: &Opts,
    ) -> Result<Response, Error> {
        let path = format!("/v1/kv/{}", encode_key(key));
        self.request(Method::PUT, &path, opts, value).await
    }

    pub async fn get(&self, key: &str, opts: &Opts) -> Result<Response, Error> {
        let path = format!("/v1/kv/{}", encode_key(key));
        self.request(Method::GET, &path, opts, Bytes::new()).await
    }

    pub async fn delete(&self, key: &str, opts: &Opts) -> Result<Response, Error> {
        let path = format!("/v1/kv/{}", encode_key(key));
        self.request(Method::DELETE, &path, opts, Bytes::new())
            .await
    }

    /// `GET /v1/kv?prefix=&limit=`; decode with [`Response::listing`].
    pub async fn list(&self, prefix: &str, limit: usize, opts: &Opts) -> Result<Response, Error> {
        let path = format!("/v1/kv?prefix={}&limit={limit}", encode_key(prefix));
        self.request(Method::GET, &path, opts, Bytes::new()).await
    }

    pub async fn txn(&self, txn: &Txn, opts: &Opts) -> Result<Response, Error> {
        let body = serde_json::to_vec(txn).map_err(|e| Error::Unexpected(e.to_string()))?;
        self.txn_raw(body, opts).await
    }

    /// `POST /v1/txn` with any body, e.g. a malformed one.
    pub async fn txn_raw(&self, body: impl Into<Bytes>, opts: &Opts) -> Result<Response, Error> {
        let opts = opts.clone().header("content-type", "application/json");
        self.request(Method::POST, "/v1/txn", &opts, body).await
    }

    /// `GET /v1/cluster`, which must answer 2xx.
    pub async fn cluster_info(&self) -> Result<ClusterInfo, Error> {
        let opts = Opts::new();
        self.request(Method::GET, "/v1/cluster", &opts, Bytes::new())
            .await?
            .ok_json()
    }

    /// The node id `/health` reports, if it answers 200.
    pub async fn health(&self, timeout: Duration) -> Result<NodeId, Error> {
        let opts = Opts::new().timeout(timeout);
        let resp = self
            .request(Method::GET, "/health", &opts, Bytes::new())
            .await?;
        let body: serde_json::Value = resp.ok_json()?;
        body["id"]
            .as_u64()
            .ok_or_else(|| Error::Unexpected(format!("/health without id: {resp:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_slashes_and_escape_the_rest() {
        assert_eq!(encode_key("bank/acct/1"), "bank/acct/1");
        assert_eq!(encode_key("a b?c#"), "a%20b%3Fc%23");
        assert_eq!(encode_key("é"), "%C3%A9");
    }
}
