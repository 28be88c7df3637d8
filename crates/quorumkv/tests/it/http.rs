//! Requests to one node of a `Cluster`, and `Resp`, a fully read response;
//! assertions on the answers of the typed testkit client (`Response`).

use std::fmt;
use std::time::Instant;

use quorumkv_testkit::ApiError;
use quorumkv_testkit::Response;
use reqwest::Method;
use serde_json::Value;

use crate::harness::{secs, Cluster, NodeId};

/// A whole answer ([`Response`]) with assertions that panic with the answer
/// shown.
pub struct Resp(Response);

impl std::ops::Deref for Resp {
    type Target = Response;

    fn deref(&self) -> &Response {
        &self.0
    }
}

impl Resp {
    /// Sends a request and reads the whole answer.
    pub async fn fetch(req: reqwest::RequestBuilder) -> reqwest::Result<Resp> {
        Ok(Resp(Response::read(req.send().await?).await?))
    }

    /// Asserts the status, showing the whole response if it differs.
    pub fn expect(self, status: u16) -> Resp {
        assert_eq!(self.status, status, "unexpected status: {self:?}");
        self
    }

    pub fn header_u64(&self, name: &str) -> u64 {
        let value = self.header(name);
        value
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("header {name} = {value:?}, want a u64: {self:?}"))
    }

    /// X-Raft-Index: a write's index, or the applied index a read saw.
    pub fn raft_index(&self) -> u64 {
        self.header_u64("x-raft-index")
    }

    pub fn served_by(&self) -> NodeId {
        self.header_u64("x-served-by")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }

    /// `index` of a write's JSON body.
    pub fn index(&self) -> u64 {
        let json = self.json();
        json["index"]
            .as_u64()
            .unwrap_or_else(|| panic!("no index in write body: {self:?}"))
    }

    /// `error.code`, after checking the body is `{"error":{"code","message"}}`.
    pub fn error_code(&self) -> String {
        let json = self.json();
        let code = json["error"]["code"].as_str().unwrap_or_default();
        let message = json["error"]["message"].as_str().unwrap_or_default();
        assert!(
            !code.is_empty() && !message.is_empty(),
            "not a JSON error: {self:?}"
        );
        code.to_string()
    }
}

impl fmt::Debug for Resp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl Cluster {
    /// One request to node `id`; `path` starts with `/`. The cluster's client
    /// token goes with it unless `headers` has an `authorization` of its own.
    pub async fn send(
        &self,
        id: NodeId,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> reqwest::Result<Resp> {
        let mut req = self.http.request(method, format!("{}{path}", self.url(id)));
        let own = headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("authorization"));
        if let (Some(token), false) = (self.kit().client_token(), own) {
            req = req.bearer_auth(token);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        Resp::fetch(req.body(body)).await
    }

    /// Like `send`, but a transport error (refused, timeout) panics.
    pub async fn call(
        &self,
        id: NodeId,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Resp {
        let sent = self.send(id, method.clone(), path, headers, body).await;
        sent.unwrap_or_else(|e| panic!("{method} {path} on node {id}: {e}"))
    }

    pub async fn try_put(
        &self,
        id: NodeId,
        key: &str,
        value: impl Into<Vec<u8>>,
        consistency: &str,
    ) -> reqwest::Result<Resp> {
        let path = format!("/v1/kv/{key}");
        let headers = [("x-consistency", consistency)];
        self.send(id, Method::PUT, &path, &headers, value.into())
            .await
    }

    pub async fn put(&self, id: NodeId, key: &str, value: impl Into<Vec<u8>>, level: &str) -> Resp {
        let sent = self.try_put(id, key, value, level).await;
        sent.unwrap_or_else(|e| panic!("PUT {key} on node {id}: {e}"))
    }

    /// A strong PUT that must answer 200; returns the write's index.
    pub async fn put_ok(&self, id: NodeId, key: &str, value: impl Into<Vec<u8>>) -> u64 {
        self.put(id, key, value, "strong").await.expect(200).index()
    }

    pub async fn get(&self, id: NodeId, key: &str, level: &str) -> Resp {
        self.get_with(id, key, &[("x-consistency", level)]).await
    }

    pub async fn get_with(&self, id: NodeId, key: &str, headers: &[(&str, &str)]) -> Resp {
        let path = format!("/v1/kv/{key}");
        self.call(id, Method::GET, &path, headers, Vec::new()).await
    }

    pub async fn delete(&self, id: NodeId, key: &str, level: &str) -> Resp {
        let path = format!("/v1/kv/{key}");
        let headers = [("x-consistency", level)];
        self.call(id, Method::DELETE, &path, &headers, Vec::new())
            .await
    }

    /// `GET /v1/cluster`, which must answer 200.
    pub async fn info(&self, id: NodeId) -> Value {
        let resp = self.call(id, Method::GET, "/v1/cluster", &[], Vec::new());
        resp.await.expect(200).json()
    }

    pub async fn applied_index(&self, id: NodeId) -> Option<u64> {
        self.info(id).await["applied_index"].as_u64()
    }

    /// Eventual read with `X-Min-Index: index`, retried (deadline) while the
    /// node answers 504 min_index_timeout; returns the first other answer.
    pub async fn read_at_least(&self, id: NodeId, key: &str, index: u64) -> Resp {
        let index = index.to_string();
        let headers = [("x-consistency", "eventual"), ("x-min-index", &index)];
        let deadline = Instant::now() + secs(30);
        loop {
            let resp = self.get_with(id, key, &headers).await;
            if resp.status != 504 || Instant::now() > deadline {
                return resp;
            }
            assert_eq!(resp.error_code(), "min_index_timeout", "{resp:?}");
        }
    }
}

/// Asserts a typed client's answer has `status`, showing it if not.
#[track_caller]
pub fn status(r: &Response, status: u16) -> &Response {
    assert_eq!(r.status, status, "unexpected status: {r:?}");
    r
}

/// Asserts `r` is the error `status` with a JSON body whose code is `code`
/// and whose message is not empty; returns the error.
#[track_caller]
pub fn api_error(r: &Response, status: u16, code: &str) -> ApiError {
    assert_eq!(r.status, status, "unexpected status: {r:?}");
    let e = r
        .api_error()
        .unwrap_or_else(|| panic!("not a JSON error: {r:?}"));
    assert_eq!(e.code, code, "{r:?}");
    assert!(!e.message.is_empty(), "empty message: {r:?}");
    e
}

/// Unwraps a typed client's transport result.
#[track_caller]
pub fn sent(r: Result<Response, quorumkv_testkit::Error>) -> Response {
    r.unwrap_or_else(|e| panic!("request failed: {e}"))
}
